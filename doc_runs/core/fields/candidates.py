"""Candidate values of a typed field in one document, ranked by the cue phrases around them:
the offline backend's answers, and a tool any model can call. Generic readers per type; a
field's hint phrases and description words weigh in beside each type's own cues."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from doc_runs.core.fields.dates import find_dates
from doc_runs.core.fields.durations import find_durations
from doc_runs.core.fields.money import find_money
from doc_runs.core.fields.names import (
    find_defined_parties,
    find_organizations,
    find_signatories,
)
from doc_runs.core.fields.numbers import DIGITS, parse_number, plain
from doc_runs.core.fields.places import find_places
from doc_runs.core.fields.spec import FieldSpec
from doc_runs.core.fields.values import Duration, Money, NormalizedValue
from doc_runs.core.sentences import sentence_spans
from doc_runs.core.summarize import terms

# Below this a single-valued field is left null rather than guessed.
MIN_SCORE = 1.0
# A duration is read as a field's only when a strong cue stands by it: documents state
# notice periods and deadlines more often than a term.
MIN_SCORE_BY_TYPE = {"duration": 5.0}


@dataclass(frozen=True)
class Candidate:
    value: NormalizedValue
    text: str  # the words in the document
    start: int
    end: int
    score: float


_DEFAULT_CUES: dict[str, tuple[str, ...]] = {
    "date": ("effective as of", "effective date", "dated as of", "dated", "made as of",
             "entered into as of", "entered into on", "made and entered", "is made on",
             "as of", "date:", "this agreement", "day of"),
    "duration": ("term of this agreement", "term of", "period of", "for a period",
                 "remain in effect", "remain in full force", "shall expire", "shall terminate",
                 "shall survive", "continue in effect", "in effect for", "the term",
                 "terminate", "expire", "survive", "following the", "after the"),
    "place": ("governed by", "laws of", "governing law", "courts of", "jurisdiction"),
    "money": ("amount", "fee", "price", "sum of", "payment", "total"),
    "number": ("number of", "total"),
}
# Durations that are notices or deadlines, not what a term clause states.
_DURATION_NOT_TERM = re.compile(r"(?:within|notice|prior|days'|advance|upon)\W+(?:\w+\W+){0,2}$",
                                re.IGNORECASE)
# "two years from the date hereof": a span counted from the document's own start.
_FROM_START = re.compile(r"\W+(?:\w+\W+){0,2}?(?:from|after|following|of)\s+(?:the\s+)?"
                         r"(?:date\s+(?:hereof|first|of\s+(?:this|the))|effective\s+date|"
                         r"execution|signing|date\s+on\s+which)", re.IGNORECASE)
# A term clause speaks of the agreement or its obligations ending; a restrictive covenant of
# what someone may not do for a while (compete, solicit, hire) states a duration too.
_TERM_CLAUSE = re.compile(r"(?:this\s+(?:agreement|letter|undertaking)|hereunder|obligations"
                          r"|confidentiality)[^.;]{0,200}?\b(?:expire|terminat|remain\s+in|"
                          r"continue|surviv|term\b|in\s+effect|in\s+force|binding)"
                          r"|\b(?:term|duration)\b[^.;]{0,60}?(?:agreement|hereof)",
                          re.IGNORECASE)
_TERM_NAMED = re.compile(r"\b(?:Term|Duration)\b\s*[.:]|\bterm\s+of\s+this\s+(?:\w+\s+)?"
                         r"agreement|\(\s*the\s+[“\"]term\b", re.IGNORECASE)
_COVENANT = re.compile(r"employ|compet|solicit|recruit|\bhire|separation|standstill|"
                       r"acquire|purchase|thereafter", re.IGNORECASE)
_END_DATE = re.compile(r"(?:until|through|expire\w*|terminat\w*|ending|end\s+of|before|"
                       r"prior\s+to|after)\W+(?:\w+\W+){0,3}$", re.IGNORECASE)


def _cue_score(text: str, start: int, end: int, cues: Iterable[str], before: int = 120,
               after: int = 40) -> float:
    """Closer cue phrases count more; a phrase just before the value counts most."""
    window_before = text[max(0, start - before):start].lower()
    window_after = text[end:end + after].lower()
    score = 0.0
    for cue in cues:
        cue = cue.lower()
        at = window_before.rfind(cue)
        if at >= 0:
            distance = len(window_before) - (at + len(cue))
            score += 2.0 / (1 + distance / 25)
        elif cue in window_after:
            score += 0.5
    return score


def _position_bonus(text: str, start: int) -> float:
    """Facts that define a document sit near its start."""
    return 0.5 * (1 - start / max(len(text), 4000))  # a short document is all opening


def _cues(spec: FieldSpec) -> tuple[str, ...]:
    own = tuple(spec.hint)
    return own + _DEFAULT_CUES.get(spec.type, ())


def _description_cues(spec: FieldSpec) -> tuple[str, ...]:
    return tuple(t for t in terms(spec.description) if len(t) > 3)


def _dates(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    cues, words = _cues(spec), _description_cues(spec)
    for date in find_dates(text):
        score = (_cue_score(text, date.start, date.end, cues)
                 + 0.3 * _cue_score(text, date.start, date.end, words)
                 + _position_bonus(text, date.start))
        if "effective date" in text[date.end:date.end + 40].lower():
            score += 2.0
        if _END_DATE.search(text[max(0, date.start - 60):date.start]):
            score -= 2.0
        found.append(Candidate(date.value.isoformat(), date.text, date.start, date.end, score))
    return found


def _durations(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    cues, words = _cues(spec), _description_cues(spec)
    for duration in find_durations(text):
        score = (_cue_score(text, duration.start, duration.end, cues, before=160)
                 + 0.3 * _cue_score(text, duration.start, duration.end, words, before=160))
        if _DURATION_NOT_TERM.search(text[max(0, duration.start - 40):duration.start]):
            score -= 2.0
        if duration.unit in ("days", "weeks"):
            score -= 1.0
        if _FROM_START.match(text, duration.end):
            score += 3.0
        around = text[max(0, duration.start - 250):duration.end + 80]
        if _TERM_CLAUSE.search(around):
            score += 2.5
        if _TERM_NAMED.search(text[max(0, duration.start - 150):duration.end + 30]):
            score += 3.0
        if _COVENANT.search(text[max(0, duration.start - 200):duration.end + 60]):
            score -= 2.5
        found.append(Candidate(Duration(amount=duration.amount, unit=duration.unit),
                               duration.text, duration.start, duration.end, score))
    return found


def _places(spec: FieldSpec, text: str) -> list[Candidate]:
    return [Candidate(place.place, place.text, place.start, place.end,
                      place.weight + _cue_score(text, place.start, place.end, spec.hint))
            for place in find_places(text)]


def _money(spec: FieldSpec, text: str) -> list[Candidate]:
    return [Candidate(Money(amount=m.amount, currency=m.currency), m.text, m.start, m.end,
                      1.0 + _cue_score(text, m.start, m.end, _cues(spec)))
            for m in find_money(text)]


def _numbers(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    cues = (*spec.hint, *_description_cues(spec))
    for match in re.finditer(rf"(?<![\w.,]){DIGITS}(?![\w.,]\d)", text):
        number = parse_number(match.group())
        if number is None:
            continue
        score = _cue_score(text, match.start(), match.end(), cues, before=60)
        found.append(Candidate(float(plain(number)), match.group(), match.start(), match.end(),
                               score))
    return found


def _choices(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    cues = (*spec.hint, *_description_cues(spec))
    for choice in spec.choices:
        for match in re.finditer(rf"\b{re.escape(choice)}\b", text, re.IGNORECASE):
            score = 1.0 + _cue_score(text, match.start(), match.end(), cues)
            found.append(Candidate(choice, match.group(), match.start(), match.end(), score))
    return found


def _names(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    head = text[:6000]  # parties are introduced at the start
    for name in find_defined_parties(head):
        found.append((name, name.weight + _position_bonus(text, name.start)))
    for name in find_organizations(head):
        found.append((name, name.weight + _position_bonus(text, name.start)))
    for name in find_signatories(text):
        found.append((name, name.weight))
    wanted = {"organization": {"organization"}, "person": {"person"}}.get(
        spec.type, {"organization", "person"})
    return [Candidate(n.name, n.text, n.start, n.end,
                      score + _cue_score(text, n.start, n.end, spec.hint))
            for n, score in found if n.kind in wanted]


def _name_key(value: str) -> str:
    words = re.sub(r"[^\w\s]", " ", value.upper()).split()
    forms = {"INC", "INCORPORATED", "CORP", "CORPORATION", "CO", "COMPANY", "LLC", "L", "P",
             "LP", "LTD", "LIMITED", "PLC", "THE", "AND"}
    return " ".join(w for w in words if w not in forms) or value.upper()


_READERS: dict[str, Callable[[FieldSpec, str], list[Candidate]]] = {
    "date": _dates, "duration": _durations, "place": _places, "money": _money,
    "number": _numbers, "enum": _choices, "organization": _names, "person": _names,
    "party": _names,
}


def find_candidates(spec: FieldSpec, text: str, limit: int = 10) -> list[Candidate]:
    """The field's candidate values in `text`, best first, one per value. Mentions of one
    value add up: a name introduced as a party and signing at the end beats one named once.
    Empty for a `text` field (see best_sentence)."""
    reader = _READERS.get(spec.type)
    if reader is None:
        return []
    best: dict[str, Candidate] = {}
    totals: dict[str, float] = {}
    for candidate in reader(spec, text):
        key = (_name_key(candidate.value) if spec.type in ("organization", "person", "party")
               else repr(candidate.value))
        totals[key] = totals.get(key, 0.0) + max(candidate.score, 0.0) * (
            1.0 if key not in totals else 0.25)
        if key not in best or candidate.score > best[key].score:
            best[key] = candidate
    ranked = sorted(best, key=lambda k: (-totals[k], best[k].start))
    return [Candidate(best[k].value, best[k].text, best[k].start, best[k].end,
                      round(totals[k], 3)) for k in ranked[:limit]]


def best_sentence(spec: FieldSpec, text: str) -> Candidate | None:
    """The sentence sharing most words with the field's description and hints, or None when
    none shares enough: a `text` field is never answered with an unrelated sentence."""
    wanted = set(terms(" ".join((spec.description, *spec.hint))))
    if not wanted:
        return None
    best: tuple[float, int, int] | None = None
    for start, end in sentence_spans(text):
        words = set(terms(text[start:end]))
        if not words:
            continue
        share = len(wanted & words) / len(wanted)
        if best is None or share > best[0]:
            best = (share, start, end)
    # Half of what the field is about, and at least two words of it (or its only word).
    if best is None or best[0] < 0.5 or (len(wanted) > 1 and best[0] * len(wanted) < 2):
        return None
    _, start, end = best
    sentence = " ".join(text[start:end].split())[:300]
    return Candidate(sentence, sentence, start, end, round(best[0], 3))


def pick_many(spec: FieldSpec, ranked: list[Candidate]) -> list[Candidate]:
    """The values a list field is answered with: every date or amount found; of other types
    the candidates the cues support; for names, those introduced as parties, filled up to
    two (what most agreements have) by weaker ones."""
    if spec.type in ("date", "money"):
        return ranked  # each one a date or an amount the document states, best first
    if spec.type not in ("organization", "person", "party"):
        return [c for c in ranked if c.score >= MIN_SCORE_BY_TYPE.get(spec.type, MIN_SCORE)]
    strong = [c for c in ranked if c.score >= 3.0][:3]
    weaker = [c for c in ranked if 1.4 <= c.score < 3.0]
    return strong + weaker[:max(0, 2 - len(strong))]
