"""Sentence boundaries as character spans, for chunking and extractive summaries."""

from __future__ import annotations

import re

# Words that end with a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al fig figs eq eqs no nos vol pp p ed eds "
    "inc ltd co corp dept univ jan feb mar apr jun jul aug sep sept oct nov dec approx ca "
    "resp sec u.s u.k".split()
)
# Each alternative starts with the character that ends a sentence (no lookbehind), so the
# regex engine can skip to candidates instead of trying every position; the group is the gap
# between two sentences.
_BOUNDARY = re.compile(
    r"""[.!?](["'\u201d\u2019)\]]*\s+)(?=["'\u201c\u2018(\[]?[^\sa-z])"""
    r"""|[\u3002\uff01\uff1f](\s*)"""  # CJK full stops need no space after them
    r"""|(\n[ \t]*\n\s*)""",  # a blank line ends a paragraph and so a sentence
)
_WORD_BEFORE = re.compile(r"([\w.]+)[.!?][\"'\u201d\u2019)\]]*$")


def _is_abbreviation(text_before: str) -> bool:
    match = _WORD_BEFORE.search(text_before[-40:])
    if match is None:
        return False
    word = match.group(1).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of text[start:end], whitespace trimmed, in order."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        gap = match.lastindex or 0
        gap_start, gap_end = match.span(gap)
        if gap == 1 and "\n" not in match.group(1) and match.group(1).strip() == "" \
                and _is_abbreviation(text[cursor:gap_start]):
            continue
        spans.append((cursor, gap_start))
        cursor = gap_end
    spans.append((cursor, end))
    trimmed = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e))
    return trimmed
