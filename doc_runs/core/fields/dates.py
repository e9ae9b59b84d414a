"""Dates as documents write them ("May 6, 2021", "the 6th day of May, 2021", "05/06/2021",
"2021-05-06"), found by pattern and read by dateutil's parser into ISO 8601."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass

from dateutil import parser as date_parser

from doc_runs.core.fields.numbers import MAX_FOUND

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
    .split())} | {"thirtieth": 30}
_ORDINAL_WORD = (r"(?:(?:twenty|thirty)[\s-])?(?:" + "|".join(
    sorted(_ORDINALS, key=len, reverse=True)) + r")")
_DAY = rf"(?:[0-3]?\d(?:st|nd|rd|th)?|{_ORDINAL_WORD})"
_YEAR_DIGITS = r"(?:1[89]\d\d|2[01]\d\d)"
_YEAR = rf"{_YEAR_DIGITS}(?!\d)"
_DATE = re.compile(
    rf"\b(?:"
    rf"{_YEAR_DIGITS}[-/][01]?\d[-/][0-3]?\d(?!\d)"  # ISO, 2021/05/06
    rf"|[0-3]?\d\.[01]?\d\.{_YEAR}"  # 06.05.2021: day first, a four-digit year
    rf"|[0-3]?\d[/-][0-3]?\d[/-](?:{_YEAR}|\d\d(?!\d))"  # 05/06/2021: month first if it can
    rf"|{_DAY}\s+day\s+of\s+{_MONTH},?\s*(?:in\s+the\s+year\s+)?{_YEAR}"  # 6th day of May
    rf"|{_DAY}[\s-]+(?:of\s+)?{_MONTH}[\s,-]*{_YEAR}"  # 6 May 2021, 6-May-2021
    rf"|{_MONTH}\s+(?:the\s+)?{_DAY},?\s*{_YEAR}"  # May 6, 2021; May the 6th, 2021
    rf")",
    re.IGNORECASE,
)
_ORDINAL = re.compile(r"(\d)(?:st|nd|rd|th)\b", re.IGNORECASE)
_FILLER = re.compile(r"\b(?:day\s+of|of|in\s+the\s+year|the|this|on)\b", re.IGNORECASE)


def _ordinal_words(text: str) -> str:
    """'twenty-first' -> '21', 'sixth' -> '6'."""
    def number(match: re.Match[str]) -> str:
        words = re.split(r"[\s-]+", match.group().lower())
        tens = {"twenty": 20, "thirty": 30}.get(words[0], 0) if len(words) == 2 else 0
        return str(tens + _ORDINALS[words[-1]])
    return re.sub(_ORDINAL_WORD, number, text, flags=re.IGNORECASE)


@dataclass(frozen=True)
class FoundDate:
    start: int
    end: int
    text: str
    value: dt.date


def parse_date(text: str | int, day_first: bool = False) -> dt.date | None:
    """The date a piece of text names, or None. Numeric dates with slashes or dashes are
    read month first (as US filings write them) unless `day_first` or the first number
    cannot be a month; with dots, day first (as most of Europe writes them)."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)  # 20210506
    if not isinstance(text, str):
        return None
    cleaned = _FILLER.sub(" ", _ORDINAL.sub(r"\1", _ordinal_words(text)))
    cleaned = " ".join(cleaned.replace(",", " ").split())
    if not cleaned or not re.search(r"\d", cleaned):
        return None
    numeric = re.fullmatch(r"(\d{1,2})([/.-])(\d{1,2})[/.-](\d{2,4})", cleaned)
    if numeric and (int(numeric.group(1)) > 12 or numeric.group(2) == "."):
        day_first = True  # the first number cannot be a month, or dots: written day first
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
    for match in itertools.islice(_DATE.finditer(text), MAX_FOUND):
        value = parse_date(match.group())
        if value is not None:
            found.append(FoundDate(match.start(), match.end(), " ".join(match.group().split()),
                                   value))
    return found
