"""Places named by governing-law and venue clauses ("the laws of the State of New York",
"courts located in Cook County, Illinois"), cut to the place itself."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from doc_runs.core.fields.numbers import MAX_FOUND

# Names a cut can stop at: a capitalized run after "laws of" often goes on ("New York
# Without Regard To ..." in a document set in capitals).
KNOWN_PLACES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
    "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa",
    "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan",
    "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Tennessee", "Texas", "Utah", "Vermont", "Virginia",
    "Washington", "Wisconsin", "Wyoming", "New Hampshire", "New Jersey", "New Mexico",
    "New York", "North Carolina", "North Dakota", "Rhode Island", "South Carolina",
    "South Dakota", "West Virginia", "District of Columbia", "Ontario", "Quebec", "Alberta",
    "British Columbia", "England", "Scotland", "Ireland", "Wales", "England and Wales",
    "United Kingdom", "United States", "Germany", "France", "Switzerland", "Netherlands",
    "Luxembourg", "Singapore", "Israel", "Japan", "China", "Hong Kong", "India", "Canada",
    "Australia", "New South Wales", "Sweden", "Norway", "Denmark", "Finland", "Spain", "Italy",
    "Belgium", "Austria", "Bermuda", "Cayman Islands", "British Virgin Islands",
)
_KNOWN = sorted(KNOWN_PLACES, key=len, reverse=True)
_STOP = {"without", "applicable", "and", "as", "in", "to", "that", "which", "excluding",
         "except", "other", "including", "shall", "will", "the", "with", "for", "by", "any",
         "irrespective", "regardless", "notwithstanding", "governing", "applied", "relating",
         "agreement", "contracts", "made", "entered", "each", "all", "this", "such", "its",
         "or", "conflicts", "conflict", "choice", "principles", "rules", "law", "laws"}
_PREFIX = re.compile(r"^(?:the\s+)?(?:(?:state|commonwealth|province|republic|kingdom|"
                     r"country|federal\s+republic|people's\s+republic)\s+of\s+)?(?:the\s+)?",
                     re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_][\w.'’-]*")
# (cue, weight): governing law says most, a venue less, a mere address least.
CUES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"govern\w*[^.;]{0,120}?\blaws?\s+(?:of|in)\s+", re.IGNORECASE), 3.0),
    (re.compile(r"\bgoverning\s+law\s*[:.\u2013\u2014-]\s*", re.IGNORECASE), 3.0),
    (re.compile(r"\b(?:construed|interpreted|enforced)\s+[^.;]{0,80}?\blaws?\s+(?:of|in)\s+",
                re.IGNORECASE), 3.0),
    (re.compile(r"\b(?:internal\s+|substantive\s+)?laws?\s+of\s+", re.IGNORECASE), 1.5),
    (re.compile(r"\b(?:courts?|venue|jurisdiction|forum)\s+(?:\w+\s+){0,4}?(?:of|in|within)\s+"
                r"(?:\w+\s+){0,3}?(?:County,?\s+)?", re.IGNORECASE), 1.0),
)


@dataclass(frozen=True)
class FoundPlace:
    start: int
    end: int
    text: str
    place: str
    weight: float


def clean_place(text: str, strict: bool = True) -> str | None:
    """'the State of NEW YORK,' -> 'New York'; None when nothing place-like is left. `strict`
    (the offline readers) also turns away a run of more than four words."""
    text = " ".join(text.replace("’", "'").split()).strip(" ,.;:()\"'“”")
    text = _PREFIX.sub("", text)
    for known in _KNOWN:
        # A known name, unless the next word goes on with it ("Kansas City", "Virginia Beach").
        if re.match(rf"{re.escape(known)}(?![\w-])(?!\s+[^\W\d_]*[A-Z][a-z])", text,
                    re.IGNORECASE) or (re.fullmatch(re.escape(known), text, re.IGNORECASE)):
            return known
    words = []
    for word in text.split():
        bare = word.strip(",.")
        if bare.lower() in _STOP or not bare[:1].isupper() or not _WORD.fullmatch(bare):
            break
        words.append(bare)
        if word.endswith(","):
            break
    if not words or (strict and len(words) > 4):
        return None
    place = " ".join(words)
    return place.title() if place.isupper() else place


def find_places(text: str) -> list[FoundPlace]:
    found = []
    for cue, weight in CUES:
        for match in itertools.islice(cue.finditer(text), MAX_FOUND):
            tail = text[match.end():match.end() + 80]
            place = clean_place(tail)
            if place is None:
                continue
            # The words as written run to where the place's name ends in the document.
            written = re.search(r"\s+".join(map(re.escape, place.split())), tail, re.IGNORECASE)
            end = match.end() + (written.end() if written else 0)
            found.append(FoundPlace(match.start(), end,
                                    " ".join(text[match.start():end].split()), place, weight))
    return found
