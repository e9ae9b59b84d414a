"""What the agent must answer: configurable fields, each a value with citations that exist."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError


class FieldSpec(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    description: str
    many: bool = False  # a list of values rather than one


DEFAULT_FIELDS = [
    FieldSpec(name="title", description="the document's title"),
    FieldSpec(name="document_type",
              description="what kind of document it is (contract, invoice, report, minutes, "
              "letter, paper, form, ...)"),
    FieldSpec(name="parties", description="parties, people or organisations named",
              many=True),
    FieldSpec(name="dates", description="dates that matter in the document", many=True),
    FieldSpec(name="amounts", description="money amounts or quantities that matter",
              many=True),
    FieldSpec(name="key_points", description="the main points, one sentence each",
              many=True),
]


class FieldAnswer(BaseModel):
    value: str | list[str] | None
    citations: list[str] = Field(default_factory=list)


class Findings(BaseModel):
    fields: dict[str, FieldAnswer]


def submit_schema(fields: list[FieldSpec]) -> dict[str, Any]:
    """JSON Schema of the submit_findings tool's arguments."""
    properties = {}
    for spec in fields:
        value = ({"type": "array", "items": {"type": "string"}} if spec.many
                 else {"type": ["string", "null"]})
        properties[spec.name] = {
            "type": "object",
            "description": spec.description,
            "properties": {
                "value": value,
                "citations": {"type": "array", "items": {"type": "string"},
                              "description": "chunk ids (or p<N> for page N) supporting it"},
            },
            "required": ["value", "citations"],
        }
    return {"type": "object", "properties": properties,
            "required": [s.name for s in fields], "additionalProperties": False}


class FindingsInvalid(ValueError):
    """The submitted findings break the schema or cite what does not exist."""


def validate_findings(arguments: str, fields: list[FieldSpec], chunk_ids: set[str],
                      pages: set[int]) -> Findings:
    try:
        raw = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise FindingsInvalid(f"arguments are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise FindingsInvalid("arguments must be a JSON object")
    names = [s.name for s in fields]
    missing = [n for n in names if n not in raw]
    extra = [n for n in raw if n not in names]
    if missing or extra:
        raise FindingsInvalid(f"missing fields {missing}, unknown fields {extra}")
    try:
        findings = Findings(fields={n: FieldAnswer.model_validate(raw[n]) for n in names})
    except ValidationError as exc:
        raise FindingsInvalid(f"schema: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
                              ) from None
    for spec in fields:
        answer = findings.fields[spec.name]
        if spec.many and not isinstance(answer.value, list):
            raise FindingsInvalid(f"{spec.name}.value must be a list")
        if not spec.many and isinstance(answer.value, list):
            raise FindingsInvalid(f"{spec.name}.value must be a string or null")
        for citation in answer.citations:
            if citation in chunk_ids:
                continue
            if citation.startswith("p") and citation[1:].isdigit() and int(citation[1:]) in pages:
                continue
            raise FindingsInvalid(f"{spec.name} cites {citation!r}, which does not exist")
    return findings
