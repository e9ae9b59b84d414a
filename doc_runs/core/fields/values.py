"""One normalized value per type, whatever wrote it (an offline reader or a model): ISO 8601
dates, durations as amount and unit, money as amount and currency, names without role words,
enum values spelled as their choice."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict

from doc_runs.core.fields.dates import parse_date
from doc_runs.core.fields.durations import UNITS, find_durations
from doc_runs.core.fields.money import find_money
from doc_runs.core.fields.names import clean_name
from doc_runs.core.fields.numbers import parse_number, plain
from doc_runs.core.fields.places import clean_place
from doc_runs.core.fields.spec import FieldSpec


class Duration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: float
    unit: str  # days, weeks, months or years

    def __str__(self) -> str:
        amount = plain(self.amount)
        return f"{amount} {self.unit[:-1] if amount == 1 else self.unit}"


class Money(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: float
    currency: str  # ISO 4217

    def __str__(self) -> str:
        return f"{plain(self.amount):,} {self.currency}"


NormalizedValue = Duration | Money | float | str


MAX_TEXT_CHARS = 2000


class ValueInvalid(ValueError):
    """A value that cannot be read as its field's type."""


def json_value(value: NormalizedValue) -> str | float | dict[str, Any]:
    """The value as JSON shows it: a duration or money as its object."""
    return value.model_dump() if isinstance(value, BaseModel) else value


def display(value: NormalizedValue) -> str:
    return str(plain(value)) if isinstance(value, float) else str(value)


def _structured(value: Any, keys: tuple[str, str]) -> tuple[Any, Any] | None:
    if isinstance(value, dict) and set(value) == set(keys):
        return value[keys[0]], value[keys[1]]
    return None


def _amount(value: Any, what: str) -> float:
    """A finite number from a number or a numeric string; ValueInvalid for anything else
    (NaN, infinities and numbers past 10^15 included: they cannot be stored and read back)."""
    number = (parse_number(value, whole=True) if isinstance(value, str | int | float)
              else None)
    if number is None:
        raise ValueInvalid(f"{what} {_short(value)} is not a finite number")
    return number


def _whole(found: list[Any], value: str) -> Any | None:
    """The one value found if it is all the text says ("2 years", not "-2 years" or "12
    pounds of flour")."""
    text = value.strip()
    if len(found) == 1 and found[0].start == value.find(text) and (
            found[0].end == value.find(text) + len(text)):
        return found[0]
    return None


# What a model writes when it has no name to give, and labels that are not names.
_NOT_NAMES = {"n/a", "na", "null", "none", "nil", "unknown", "tbd", "not stated",
              "not specified", "company", "the company", "name", "title", "by", "signature",
              "ceo", "cfo", "coo", "president", "director", "secretary", "party", "parties"}


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def normalize_value(spec: FieldSpec, value: Any) -> NormalizedValue:
    """The normalized form of `value` for `spec`'s type; ValueInvalid when there is none."""
    kind = spec.type
    if kind == "duration":
        pair = _structured(value, ("amount", "unit"))
        if pair is not None:
            amount, unit = _amount(pair[0], "duration amount"), str(pair[1]).lower()
            unit = unit if unit.endswith("s") else unit + "s"
            if not 0 < amount <= 10_000:
                raise ValueInvalid(f"duration amount {pair[0]!r} is not between 0 and 10,000")
            if unit not in UNITS:
                raise ValueInvalid(f"duration unit {pair[1]!r} is not one of {', '.join(UNITS)}")
            return Duration(amount=amount, unit=unit)
        found = _whole(find_durations(value), value) if isinstance(value, str) else None
        if found is None:
            raise ValueInvalid(f"{_short(value)} is not a duration (a number and a unit)")
        return Duration(amount=found.amount, unit=found.unit)
    if kind == "money":
        pair = _structured(value, ("amount", "currency"))
        if pair is not None:
            amount, currency = _amount(pair[0], "money amount"), pair[1]
            if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()
                    and currency.isascii()):
                raise ValueInvalid(f"currency {currency!r} is not an ISO 4217 code")
            return Money(amount=amount, currency=currency.upper())
        money = _whole(find_money(value), value) if isinstance(value, str) else None
        if money is None:
            raise ValueInvalid(f"{_short(value)} is not an amount of money with its currency")
        return Money(amount=money.amount, currency=money.currency)
    if kind == "number":
        return _amount(value, "number")
    if kind == "date" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # 20210506
    if not isinstance(value, str):
        raise ValueInvalid(f"{_short(value)} is not text")
    if kind == "date":
        date = parse_date(value)
        if date is None:
            raise ValueInvalid(f"{_short(value)} is not a date with day, month and year")
        return date.isoformat()
    if kind == "enum":
        for choice in spec.choices:
            if value.strip().lower() == choice.lower():
                return choice
        raise ValueInvalid(f"{_short(value)} is not one of {', '.join(spec.choices)}")
    if kind in ("organization", "person", "party"):
        # A model's answer is tidied, not second-guessed: one-word names ("IBM") and names
        # in any script are names; what the offline readers reject as unlikely is theirs.
        label = re.sub(r"^\s*(?:name|title|by|signature|party)\s*:\s*", "", value,
                       flags=re.IGNORECASE)
        name = clean_name(label, strict=False)
        if name is None or name.lower() in _NOT_NAMES or sum(c.isalpha() for c in name) < 2:
            raise ValueInvalid(f"{_short(value)} is not a name")
        return name
    if kind == "place":
        place = clean_place(value, strict=False)
        if place is None:
            raise ValueInvalid(f"{_short(value)} is not a place")
        return place
    # Control and zero-width characters are not text a reader can see.
    text = " ".join("".join(c for c in value if unicodedata.category(c)[0] != "C").split())
    if not text:
        raise ValueInvalid("empty text")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueInvalid(f"text longer than {MAX_TEXT_CHARS} characters; quote less")
    return text
