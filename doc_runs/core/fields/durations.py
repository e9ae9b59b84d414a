"""Durations ("two (2) years", "18 months", "a period of one year"): number and unit."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from doc_runs.core.fields.numbers import DIGITS, MAX_FOUND, WORD_NUMBER, parse_number, plain

UNITS = ("days", "weeks", "months", "years")
_UNIT_NAMES = {"da": "days", "we": "weeks", "wk": "weeks", "mo": "months", "ye": "years",
               "yr": "years"}
_DURATION = re.compile(
    rf"(?<![\w$])(?:(?P<words>{WORD_NUMBER})\s*\(\s*(?P<paren>{DIGITS})\s*\)"
    rf"|(?P<digits>{DIGITS})|(?P<alone>{WORD_NUMBER}|an?))"
    r"[\s-]*(?:\(\s*\d+\s*\)\s*)?(?:full\s+|calendar\s+|business\s+)?"
    r"(?P<unit>days?|weeks?|wks?\.?|months?|mos?\.?|years?|yrs?\.?)(?!\w)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FoundDuration:
    start: int
    end: int
    text: str
    amount: float | int
    unit: str


def _amount(match: re.Match[str]) -> float | None:
    if match.group("paren"):
        return parse_number(match.group("paren"))
    if match.group("digits"):
        return parse_number(match.group("digits"))
    return parse_number(match.group("words") or match.group("alone"))


def find_durations(text: str) -> list[FoundDuration]:
    found = []
    for match in itertools.islice(_DURATION.finditer(text), MAX_FOUND):
        amount = _amount(match)
        if amount is None or amount <= 0 or amount > 10_000:
            continue
        found.append(FoundDuration(match.start(), match.end(), " ".join(match.group().split()),
                                   plain(amount), _UNIT_NAMES[match.group("unit")[:2].lower()]))
    return found
