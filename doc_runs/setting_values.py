"""The kinds of value a setting may take, each checked with a message saying what it accepts
(doc_runs.settings words pydantic's own). Plain Python."""

from __future__ import annotations

import logging
import math
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Json, ValidationError


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError("expected a level such as DEBUG, INFO or WARNING")
    return level


_CRON_ALIASES = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually",
                  "@midnight"}
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
# Per field: lowest, highest, names (numbered from the lowest).
_CRON_RANGES = ((0, 59, []), (0, 23, []), (1, 31, []), (1, 12, _MONTHS), (0, 7, _DAYS))
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _cron_values(field: str, low: int, high: int, names: list[str]) -> set[int]:
    """The values a cron field selects; ValueError where it is malformed or out of range."""
    def number(word: str) -> int:
        if word.lower() in names:
            return names.index(word.lower()) + low
        if not word.isdigit() or not low <= int(word) <= high:
            raise ValueError(word)
        return int(word)

    selected: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise ValueError(item)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = number(start), number(end)
        else:
            first = last = number(span)
            if step:
                last = high
        if first > last:
            raise ValueError(item)
        selected.update(range(first, last + 1, int(step or 1)))
    return selected


def _cron(value: str) -> str:
    """Five fields in range, on a day that exists (Dagster refuses '0 0 31 2 *', too)."""
    if value.strip().lower() in _CRON_ALIASES:
        return value.strip().lower()
    fields = value.split()
    problem = "expected a cron string of five fields in range, e.g. '0 2 * * *'"
    if len(fields) != 5:
        raise ValueError(problem)
    try:
        chosen = [_cron_values(field, low, high, names)
                  for field, (low, high, names) in zip(fields, _CRON_RANGES, strict=True)]
    except ValueError:
        raise ValueError(problem) from None
    days, months = chosen[2], chosen[3]
    if fields[4] == "*" and min(days) > max(_DAYS_IN_MONTH[m - 1] for m in months):
        raise ValueError(f"{problem}, on a day that exists")
    return " ".join(fields)


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as 'UTC' or 'Europe/Berlin'") from None
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _field_specs(value: dict[str, Any]) -> dict[str, Any]:
    from doc_runs.core.agent.findings import extra_field_specs
    from doc_runs.core.fields.spec import FieldSpecInvalid

    try:
        extra_field_specs(value)
    except FieldSpecInvalid as exc:
        raise ValueError(f"a wrong field: {exc}") from None
    return value


def _allowed_roots(value: dict[str, Any]) -> dict[str, Any]:
    from doc_runs.queue.roots import parse_allowed_roots

    return parse_allowed_roots(value)


def _tenant(value: str) -> str:
    from doc_runs.auth import valid_tenant

    if not valid_tenant(value):
        raise ValueError("expected a tenant name (letters, digits, '-', '_')")
    return value


Seconds = Annotated[float, AfterValidator(_finite)]
Cron = Annotated[str, AfterValidator(_cron)]
FieldSpecs = Annotated[Json[dict[str, Any]], AfterValidator(_field_specs)]
AllowedRoots = Annotated[Json[dict[str, Any]], AfterValidator(_allowed_roots)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Tenant = Annotated[str, AfterValidator(_tenant)]
LogLevel = Annotated[str, AfterValidator(_log_level)]
PdfEngine = Annotated[Literal["pypdf", "pdfium"], BeforeValidator(_lower)]
ModelBackend = Annotated[Literal["offline", "openai"], BeforeValidator(_lower)]
LogFormat = Annotated[Literal["off", "json", "text"], BeforeValidator(
    lambda v: "off" if _lower(v) in ("", "none") else _lower(v))]


def describe_problems(exc: ValidationError, given: Mapping[str, Any],
                      sources: Mapping[str, str], secret: Callable[[str], bool]) -> str:
    """One message for every value pydantic refused, each naming its variable and what it
    accepts; a secret's value is never repeated."""
    problems = []
    for error in exc.errors():
        variable = str(error["loc"][0]) if error["loc"] else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if variable in given and not secret(variable):
            shown = f"{variable}={str(given[variable])[:200]!r}"
        else:
            shown = variable
        where = " (in the settings file)" if sources.get(variable) == "file" else ""
        problems.append(f"{shown}{where}: {_accepts(message)}")
    return "invalid setting: " + "; ".join(problems)


def _accepts(message: str) -> str:
    # pydantic's words for the common cases, said as what the variable accepts.
    for pydantic_words, ours in (
            ("Input should be a valid integer", "a whole number"),
            ("Input should be a valid number", "a number"),
            ("Input should be a valid boolean", "a yes/no value: 1/true or 0/false"),
            ("Invalid JSON", "JSON")):
        if message.startswith(pydantic_words):
            return f"expected {ours} ({message})"
    if message.startswith("Input should be "):
        return "expected " + message.removeprefix("Input should be ")
    return message or "invalid"
