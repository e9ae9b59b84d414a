"""What the agent must answer: typed fields, each answered with normalized values, the words
they were read from, and citations that exist."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from doc_runs.core.fields.spec import FieldSpec, FieldSpecInvalid, FieldType, field_specs
from doc_runs.core.fields.values import (
    NormalizedValue,
    ValueInvalid,
    display,
    json_value,
    normalize_value,
)

__all__ = ["DEFAULT_FIELDS", "DefaultFieldTaken", "FieldAnswer", "FieldSpec", "Findings",
           "FindingsInvalid", "FoundValue", "extra_field_specs", "submit_schema",
           "validate_findings"]

DEFAULT_FIELDS = [
    FieldSpec(name="title", description="the document's title"),
    FieldSpec(name="document_type",
              description="what kind of document it is (contract, invoice, report, minutes, "
              "letter, paper, form, ...)"),
    FieldSpec(name="parties", description="parties, people or organisations named",
              type="party", many=True),
    FieldSpec(name="dates", description="dates that matter in the document", type="date",
              many=True),
    FieldSpec(name="amounts", description="money amounts that matter", type="money",
              many=True),
    FieldSpec(name="key_points", description="the main points, one sentence each",
              many=True),
]


class DefaultFieldTaken(FieldSpecInvalid):
    """An extra field named like a default one, whose meaning it cannot change."""


def extra_field_specs(raw: dict[str, Any]) -> list[FieldSpec]:
    """Fields a user adds (configuration, a queue message, an upload): FieldSpecInvalid
    names the one that cannot be answered as written."""
    defaults = {f.name for f in DEFAULT_FIELDS}
    taken = [name for name in raw if name in defaults] if isinstance(raw, dict) else []
    if taken:
        raise DefaultFieldTaken(f"field {taken[0]!r} is a default field (defaults: "
                                f"{', '.join(sorted(defaults))}); give yours another name")
    return field_specs(raw)


class FoundValue(BaseModel):
    value: NormalizedValue
    text: str  # the words in the document the value was read from
    citations: list[str] = Field(default_factory=list)

    @property
    def cited(self) -> bool:
        return bool(self.citations)


class FieldAnswer(BaseModel):
    type: FieldType = "text"
    many: bool = False
    values: list[FoundValue] = Field(default_factory=list)  # empty: the document does not say

    @property
    def answered(self) -> bool:
        return bool(self.values)

    @property
    def citations(self) -> list[str]:
        return list(dict.fromkeys(c for v in self.values for c in v.citations))

    @property
    def cited(self) -> bool:
        """Every value has a citation."""
        return self.answered and all(v.cited for v in self.values)

    def display(self) -> str:
        return "; ".join(display(v.value) for v in self.values)

    def view(self) -> dict[str, Any]:
        """What a reader is shown (status API, `doc-runs process --json`): each normalized
        value, as read, with its words, its citations and whether it has any."""
        return {"type": self.type, "cited": self.cited, "values": [
            {"value": json_value(v.value), "display": display(v.value), "text": v.text,
             "citations": v.citations, "cited": v.cited} for v in self.values]}


class Findings(BaseModel):
    fields: dict[str, FieldAnswer]


_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "date": {"type": "string", "format": "date", "description": "ISO 8601: YYYY-MM-DD"},
    "duration": {"type": "object", "additionalProperties": False,
                 "properties": {"amount": {"type": "number", "exclusiveMinimum": 0},
                                "unit": {"enum": ["days", "weeks", "months", "years"]}},
                 "required": ["amount", "unit"]},
    "money": {"type": "object", "additionalProperties": False,
              "properties": {"amount": {"type": "number"},
                             "currency": {"type": "string", "pattern": "^[A-Z]{3}$",
                                          "description": "ISO 4217 code"}},
              "required": ["amount", "currency"]},
    "number": {"type": "number"},
    "organization": {"type": "string", "description": "the organization's name as written, "
                     "legal form included, without role or description"},
    "person": {"type": "string", "description": "the person's full name, without title or "
               "role"},
    "party": {"type": "string", "description": "a party's name (an organization with its "
              "legal form, or a person), without role or description"},
    "place": {"type": "string", "description": "the place's name (e.g. a state or country)"},
    "text": {"type": "string"},
}


def _value_schema(spec: FieldSpec) -> dict[str, Any]:
    """The value's JSON Schema; its `title` names the field's type."""
    if spec.type == "enum":
        return {"title": "enum", "enum": list(spec.choices)}
    return {"title": spec.type, **_VALUE_SCHEMAS[spec.type]}


CUES_INTRO = "Cue phrases near the value: "


def field_description(spec: FieldSpec) -> str:
    if not spec.hint:
        return spec.description
    return f"{spec.description}. {CUES_INTRO}{json.dumps(list(spec.hint), ensure_ascii=False)}"


def submit_schema(fields: list[FieldSpec]) -> dict[str, Any]:
    """JSON Schema of the submit_findings tool's arguments: per field a list of values (at
    most one for a single-valued field), each typed, with the words it was read from and
    its citations."""
    properties = {}
    for spec in fields:
        item = {
            "type": "object",
            "properties": {
                "value": _value_schema(spec),
                "text": {"type": "string",
                         "description": "the words in the document the value was read from"},
                "citations": {"type": "array", "items": {"type": "string"},
                              "description": "chunk ids (or p<N> for page N) supporting it"},
            },
            "required": ["value", "citations"],
        }
        properties[spec.name] = {
            "type": "array", "items": item, "description": field_description(spec),
            **({} if spec.many else {"maxItems": 1}),
        }
    return {"type": "object", "properties": properties,
            "required": [s.name for s in fields], "additionalProperties": False}


class FindingsInvalid(ValueError):
    """The submitted findings break the schema or cite what does not exist."""


# A value or its quoted words longer than this is a passage, not a finding.
MAX_VALUE_CHARS = 2000


def _citation_exists(citation: Any, chunk_ids: set[str], pages: set[int]) -> bool:
    if not isinstance(citation, str):
        return False
    if citation in chunk_ids:
        return True
    # p3, as written: not p03, not p³ or other digits int() would not read.
    return (re.fullmatch(r"p[1-9][0-9]{0,6}", citation) is not None
            and int(citation[1:]) in pages)


def _answer(spec: FieldSpec, raw: Any, chunk_ids: set[str], pages: set[int]) -> FieldAnswer:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise FindingsInvalid(f"{spec.name} must be a list of values ([] when the document "
                              "does not say)")
    if not spec.many and len(raw) > 1:
        raise FindingsInvalid(f"{spec.name} takes one value, got {len(raw)}")
    values: list[FoundValue] = []
    for item in raw:
        if not isinstance(item, dict) or "value" not in item:
            raise FindingsInvalid(f"{spec.name}: each value is an object with value, text "
                                  "and citations")
        citations = item.get("citations", [])
        if not isinstance(citations, list):
            raise FindingsInvalid(f"{spec.name}.citations must be a list")
        for citation in citations:
            if not _citation_exists(citation, chunk_ids, pages):
                raise FindingsInvalid(f"{spec.name} cites {citation!r}, which does not exist")
        if item["value"] is None:
            continue
        try:
            value = normalize_value(spec, item["value"])
        except ValueInvalid as exc:
            raise FindingsInvalid(f"{spec.name} ({spec.type}): {exc}") from None
        text = item.get("text")
        words = " ".join(text.split()) if isinstance(text, str) and text.strip() else None
        if words is not None and len(words) > MAX_VALUE_CHARS:
            raise FindingsInvalid(f"{spec.name}: the words read are longer than "
                                  f"{MAX_VALUE_CHARS} characters; quote less")
        values.append(FoundValue(value=value, text=words or display(value),
                                 citations=list(dict.fromkeys(citations))))
    return FieldAnswer(type=spec.type, many=spec.many, values=values)


def validate_findings(arguments: str, fields: list[FieldSpec], chunk_ids: set[str],
                      pages: set[int]) -> Findings:
    """The submitted answers, each value normalized for its field's type; FindingsInvalid
    (which the loop sends back to the model) when one cannot be."""
    try:
        raw = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise FindingsInvalid(f"arguments are not valid JSON: {exc}") from None
    except RecursionError:
        raise FindingsInvalid("arguments are nested too deeply") from None
    if not isinstance(raw, dict):
        raise FindingsInvalid("arguments must be a JSON object")
    names = [s.name for s in fields]
    missing = [n for n in names if n not in raw]
    extra = [n for n in raw if n not in names]
    if missing or extra:
        raise FindingsInvalid(f"missing fields {missing}, unknown fields {extra}")
    answers, problems = {}, []
    for spec in fields:
        try:
            answers[spec.name] = _answer(spec, raw[spec.name], chunk_ids, pages)
        except FindingsInvalid as exc:
            problems.append(str(exc))
    if problems:
        # Every field that is wrong, so that one re-prompt can fix them all.
        raise FindingsInvalid("; ".join(problems))
    return Findings(fields=answers)
