"""Dates as documents write them ("May 6, 2021", "the 6th day of May, 2021", "05/06/2021",
"2021-05-06"), found by pattern and read by dateutil's parser into ISO 8601."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dateutil import parser as date_parser

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d\d|2[01]\d\d)"
_DATE = re.compile(
    rf"\b(?:"
    rf"{_YEAR}-[01]\d-[0-3]\d"  # ISO
    rf"|[01]?\d[/.-][0-3]?\d[/.-](?:{_YEAR}|\d\d)(?!\d)"  # 05/06/2021, 5-6-21
    rf"|{_DAY}\s+day\s+of\s+{_MONTH},?\s*(?:in\s+the\s+year\s+)?{_YEAR}"  # 6th day of May, 2021
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH},?\s*{_YEAR}"  # 6 May 2021, 6th of May, 2021
    rf"|{_MONTH}\s+{_DAY},?\s*{_YEAR}"  # May 6, 2021
    rf")",
    re.IGNORECASE,
)
_ORDINAL = re.compile(r"(\d)(?:st|nd|rd|th)\b", re.IGNORECASE)
_FILLER = re.compile(r"\b(?:day\s+of|of|in\s+the\s+year|the|this|on)\b", re.IGNORECASE)


@dataclass(frozen=True)
class FoundDate:
    start: int
    end: int
    text: str
    value: dt.date


def parse_date(text: str, day_first: bool = False) -> dt.date | None:
    """The date a piece of text names, or None. Numeric dates are read month first (as US
    filings write them) unless `day_first` or the first number cannot be a month."""
    cleaned = _FILLER.sub(" ", _ORDINAL.sub(r"\1", text))
    cleaned = " ".join(cleaned.replace(",", " ").split())
    if not cleaned or not re.search(r"\d", cleaned):
        return None
    numeric = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})", cleaned)
    if numeric and int(numeric.group(1)) > 12:
        day_first = True
    try:
        # Read twice with different defaults: a part the text lacks shows as a difference.
        first, second = (date_parser.parse(cleaned, dayfirst=day_first, default=default)
                         for default in (dt.datetime(1, 1, 1), dt.datetime(2, 2, 2)))
    except (ValueError, OverflowError, TypeError):
        return None
    if first.date() != second.date():
        return None  # no day, month or year written: not a date we can stand behind
    parsed = first
    return parsed.date()


def find_dates(text: str) -> list[FoundDate]:
    found = []
    for match in _DATE.finditer(text):
        value = parse_date(match.group())
        if value is not None:
            found.append(FoundDate(match.start(), match.end(), " ".join(match.group().split()),
                                   value))
    return found
