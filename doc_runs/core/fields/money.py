"""Money with its currency: "$1,250,000", "USD 2.5 million", "10,000 euros"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from doc_runs.core.fields.numbers import DIGITS, parse_number, plain

_SYMBOLS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "CHF": "CHF"}
_WORDS = {"dollar": "USD", "dollars": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP",
          "pounds": "GBP", "yen": "JPY", "francs": "CHF"}
_CODES = ("USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "CNY", "INR", "SEK", "NOK", "DKK")
_SCALE = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9}
_SCALE_RE = r"(?:\s?(?P<scale>thousand|million|billion|bn|k|m)\b)?"
_MONEY = re.compile(
    rf"(?P<before>US\$|[$€£¥]|\b(?:{'|'.join(_CODES)})\s?)(?P<amount>{DIGITS}){_SCALE_RE}"
    rf"|\b(?P<amount2>{DIGITS}){_SCALE_RE.replace('scale', 'scale2')}\s?"
    rf"(?P<after>{'|'.join(_CODES)}|dollars?|euros?|pounds?|yen|francs)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FoundMoney:
    start: int
    end: int
    text: str
    amount: float | int
    currency: str


def _currency(mark: str) -> str:
    mark = mark.strip()
    return _SYMBOLS.get(mark) or _WORDS.get(mark.lower()) or mark.upper()


def find_money(text: str) -> list[FoundMoney]:
    found = []
    for match in _MONEY.finditer(text):
        amount = parse_number(match.group("amount") or match.group("amount2"))
        if amount is None:
            continue
        scale = (match.group("scale") or match.group("scale2") or "").lower()
        amount *= _SCALE.get(scale, 1)
        currency = _currency(match.group("before") or match.group("after"))
        found.append(FoundMoney(match.start(), match.end(), " ".join(match.group().split()),
                                plain(round(amount, 2)), currency))
    return found


def parse_money(text: str) -> tuple[float | int, str] | None:
    found = find_money(text)
    return (found[0].amount, found[0].currency) if found else None
