"""Money with its currency: "$1,250,000", "USD 2.5 million", "EUR 3.500,00", "A$100",
"10 000 euros", "£ 3m"."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from doc_runs.core.fields.numbers import DIGITS, MAX_FOUND, parse_number, plain

_SYMBOLS = {"R$": "BRL", "US$": "USD", "A$": "AUD", "AU$": "AUD", "C$": "CAD", "CA$": "CAD",
            "HK$": "HKD", "S$": "SGD", "NZ$": "NZD", "$": "USD", "€": "EUR", "£": "GBP",
            "¥": "JPY", "₹": "INR", "₩": "KRW", "Fr.": "CHF"}
_WORDS = {"dollar": "USD", "dollars": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP",
          "pounds": "GBP", "yen": "JPY", "francs": "CHF", "rupees": "INR"}
_CODES = ("USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "CNY", "RMB", "HKD", "SGD",
          "INR", "SEK", "NOK", "DKK", "PLN", "CZK", "BRL", "MXN", "ZAR", "KRW")
_SCALE = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mm": 1e6, "billion": 1e9,
          "bn": 1e9}
_SYMBOL = "|".join(re.escape(s) for s in sorted(_SYMBOLS, key=len, reverse=True))
_SCALE_RE = r"(?:\s?(?P<{0}>thousand|million|billion|bn|mm|k|m)\b)?"
_MONEY = re.compile(
    rf"(?P<before>{_SYMBOL}|\b(?:{'|'.join(_CODES)})\b)\s?(?P<amount>{DIGITS})"
    + _SCALE_RE.format("scale")
    + rf"|(?<![\w.,])(?P<amount2>{DIGITS})" + _SCALE_RE.format("scale2")
    + rf"\s?(?P<after>(?:{'|'.join(_CODES)}|dollars?|euros?|pounds?|yen|francs|rupees)\b|[€£])",
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
    code = _SYMBOLS.get(mark) or _SYMBOLS.get(mark.upper()) or _WORDS.get(mark.lower())
    code = code or mark.upper()
    return "CNY" if code == "RMB" else code


def find_money(text: str) -> list[FoundMoney]:
    found = []
    for match in itertools.islice(_MONEY.finditer(text), MAX_FOUND):
        amount = parse_number(match.group("amount") or match.group("amount2"))
        if amount is None:
            continue
        scale = (match.group("scale") or match.group("scale2") or "").lower()
        amount *= _SCALE.get(scale, 1)
        currency = _currency(match.group("before") or match.group("after"))
        found.append(FoundMoney(match.start(), match.end(), " ".join(match.group().split()),
                                plain(round(amount, 2)), currency))
    return found
