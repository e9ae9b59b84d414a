"""Numbers as documents write them: "1,250.5", "twelve", "twenty-four (24)"."""

from __future__ import annotations

import re

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
NUMBER_WORDS = sorted([*_UNITS, *_TENS, *_SCALES, "a", "an", "and", "half"], key=len,
                      reverse=True)
# One number written in words, e.g. "twenty-four", "one hundred and five".
WORD_NUMBER = (r"(?:(?:" + "|".join(w for w in NUMBER_WORDS if w not in ("a", "an", "and"))
               + r")(?:[\s-]+(?:and[\s-]+)?(?:" + "|".join(
                   w for w in NUMBER_WORDS if w not in ("a", "an", "and")) + r"))*)")
DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


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


def parse_number(text: str | float | int) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return float(text)
    cleaned = text.strip().rstrip(".")
    digits = re.search(rf"\(?({DIGITS})\)?", cleaned)
    if digits:
        return float(digits.group(1).replace(",", ""))
    return words_to_number(cleaned)


def plain(number: float) -> float | int:
    """2.0 as 2: what a reader expects to see."""
    return int(number) if float(number).is_integer() else number
