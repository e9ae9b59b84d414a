"""Numbers as documents write them: "1,250.5", "3.500,00", "10 000", "CHF 1'000",
"twelve", "twenty-four (24)", "two and a half", "-3.5"."""

from __future__ import annotations

import math
import re

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_WORDS = sorted([*_UNITS, *_TENS, *_SCALES, "half"], key=len, reverse=True)
_WORD = "(?:" + "|".join(_WORDS) + r")\b"
# One number written in words: "twenty-four", "one hundred and five", "two and a half". At
# most seven words: unbounded, a long run of number words costs quadratic time.
_PART = rf"(?:(?:a|one)[\s-]+half\b|{_WORD})"  # one way to read each word: no backtracking
WORD_NUMBER = rf"(?:{_WORD}(?:[\s-]+(?:and[\s-]+)?{_PART}){{0,6}})"
# Digits with thousands separators (, . ' or a space before three digits; groups of two as
# in India's 1,00,000) and a decimal part. At most six groups: unbounded, a table of numbers
# that fails to match as a whole costs quadratic time.
DIGITS = (r"\d{1,2}(?:,\d{2}){1,5},\d{3}(?:\.\d{1,2})?(?!\d)"
          r"|\d{1,3}(?:(?:[,.'’\u00a0]|\s(?=\d{3}(?!\d)))\d{3}){1,5}(?:[.,]\d{1,2})?(?!\d)"
          r"|\d+(?:[.,]\d+)?")
# The most values of one kind a reader keeps from one document: a document that states more
# is a table, and ranking a million of them is work without an answer.
MAX_FOUND = 5000
# Larger than any amount a document means; keeps floats exact enough to print.
LARGEST = 1e15


def words_to_number(text: str) -> float | None:
    # "one half" and "a half" are one fraction, not a one and then a half.
    text = re.sub(r"\b(?:one|a)[\s-]+half\b", "half", text.lower())
    words = re.split(r"[\s-]+", text.strip())
    if words == ["half"]:
        return 0.5
    total = current = 0.0
    seen = False
    for word in words:
        if word == "and":
            continue
        if word in ("a", "an") and not seen:
            current, seen = 1, True
        elif word in _UNITS:
            current += _UNITS[word]
            seen = True
        elif word in _TENS:
            current += _TENS[word]
            seen = True
        elif word == "half" and seen:
            current += 0.5
        elif word in _SCALES:
            current = (current or 1) * _SCALES[word]
            if _SCALES[word] > 100:
                total, current = total + current, 0
            seen = True
        else:
            return None
    return total + current if seen else None


def _separated(digits: str) -> float:
    """'3.500,00' -> 3500.0, '1,00,000' -> 100000.0, '1.5' -> 1.5: the last , or . is the
    decimal mark unless three digits follow it (then every mark groups thousands)."""
    digits = re.sub(r"[\s\u00a0'’]", "", digits)
    marks = [i for i, c in enumerate(digits) if c in ",."]
    if not marks:
        return float(digits)
    last = marks[-1]
    decimals = len(digits) - last - 1
    if decimals != 3 or (len(marks) == 1 and digits[last] == "." and digits[:last] == "0"):
        whole = re.sub(r"[,.]", "", digits[:last])
        return float(f"{whole or 0}.{digits[last + 1:]}")
    return float(re.sub(r"[,.]", "", digits))


def finite(number: float) -> float | None:
    return number if math.isfinite(number) and abs(number) <= LARGEST else None


def parse_number(text: str | float | int, whole: bool = False) -> float | None:
    """A number from digits (any common separators, a sign, an exponent) or words; None for
    anything else, for NaN and infinities, and beyond 10^15. `whole`: the text must be the
    number and nothing else (a model's answer; "Section 12" is not 12)."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        try:
            return finite(float(text))
        except OverflowError:
            return None
    cleaned = text.strip().rstrip(".").replace("−", "-")
    scientific = re.fullmatch(r"[-+]?\d+(?:\.\d+)?e[-+]?\d{1,3}", cleaned, re.IGNORECASE)
    if scientific:
        return finite(float(cleaned))
    search = re.fullmatch if whole else re.search
    match = search(rf"(?P<sign>-\s?)?\(?(?P<digits>{DIGITS})\)?", cleaned)
    if match:
        value = _separated(match.group("digits"))
        return finite(-value if match.group("sign") else value)
    return words_to_number(cleaned)


def plain(number: float) -> float | int:
    """2.0 as 2: what a reader expects to see."""
    return int(number) if float(number).is_integer() else number
