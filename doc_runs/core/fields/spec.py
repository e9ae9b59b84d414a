"""A findings field: its name, what it means, its type, and cue phrases that point at it."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

FieldType = Literal["text", "date", "organization", "person", "party", "place", "duration",
                    "money", "number", "enum"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
MAX_DESCRIPTION = 500


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=FIELD_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION)
    type: FieldType = "text"
    many: StrictBool = False  # a list of values rather than one
    choices: tuple[str, ...] = Field((), max_length=50)  # the allowed values of an enum
    hint: tuple[str, ...] = Field((), max_length=20)  # cue phrases near the value

    @model_validator(mode="after")
    def _choices_for_enums_only(self) -> FieldSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum field needs its choices")
        if self.type != "enum" and self.choices:
            raise ValueError("choices are for enum fields only")
        if any(not c.strip() for c in (*self.choices, *self.hint)):
            raise ValueError("choices and hint phrases must not be empty")
        if len({c.strip().lower() for c in self.choices}) != len(self.choices):
            raise ValueError("choices must differ (ignoring case)")
        if not self.description.strip():
            raise ValueError("description must not be blank")
        return self


class FieldSpecInvalid(ValueError):
    """A configured or requested field that cannot be answered as written."""


def field_spec(name: str, raw: str | dict[str, Any]) -> FieldSpec:
    """A field from configuration: a description (a `text` field), or an object with
    `description` and optionally `type`, `many`, `choices` and `hint`."""
    fields = {"description": raw} if isinstance(raw, str) else raw
    if not isinstance(fields, dict):
        raise FieldSpecInvalid(f"field {name!r}: give a description or an object with "
                               f"description and type, not {type(raw).__name__}")
    if "name" in fields:
        raise FieldSpecInvalid(f"field {name!r}: its name is the key, not a `name` entry")
    for listed in ("choices", "hint"):
        if listed in fields and not isinstance(fields[listed], list):
            raise FieldSpecInvalid(f"field {name!r}: {listed} must be a list of phrases")
    try:
        return FieldSpec.model_validate({"name": name, **fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["loc"][:1] == ("type",):
            message = (f"unknown type {fields.get('type')!r}; types: "
                       f"{', '.join(FIELD_TYPES)}")
        else:
            reason = first["msg"].removeprefix("Value error, ")
            message = f"{where + ': ' if where else ''}{reason}"
        raise FieldSpecInvalid(f"field {name!r}: {message}") from None


def field_spec_value(raw: Any) -> FieldSpec:
    """A field's spec whatever its name: for checks whose error names the field itself."""
    try:
        return field_spec("x", raw)
    except FieldSpecInvalid as exc:
        raise FieldSpecInvalid(str(exc).removeprefix("field 'x': ")) from None


def field_specs(raw: dict[str, Any]) -> list[FieldSpec]:
    if not isinstance(raw, dict):
        raise FieldSpecInvalid("fields must be a JSON object of field name to description "
                               "or to an object with description and type")
    return [field_spec(name, value) for name, value in raw.items()]
