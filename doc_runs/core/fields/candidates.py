"""Candidate values of a typed field in one document, ranked by the cue phrases around them:
the offline backend's answers, and a tool any model can call. Generic readers per type; a
field's hint phrases and description words weigh in beside each type's own cues."""

from __future__ import annotations

import itertools
import math
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
from doc_runs.core.fields.numbers import DIGITS, MAX_FOUND, parse_number, plain
from doc_runs.core.fields.places import KNOWN_PLACES, clean_place, find_places
from doc_runs.core.fields.spec import FieldSpec
from doc_runs.core.fields.values import Duration, Money, NormalizedValue
from doc_runs.core.sentences import sentence_spans
from doc_runs.core.summarize import terms

_SECTION_NUMBER = re.compile(r"\.\s")
_KNOWN_PLACE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in sorted(
    KNOWN_PLACES, key=len, reverse=True)) + r")\b")
# Below this a single-valued field is left null rather than guessed.
MIN_SCORE = 1.0
# A sentence qualifies for a text field by its own measure (best_sentences).
MIN_SCORE_TEXT = 0.4
# A duration is read as an agreement's term only when a strong cue stands by it: documents
# state notice periods, covenants and deadlines more often than a term.
MIN_SCORE_TERM = 5.0


@dataclass(frozen=True)
class Candidate:
    value: NormalizedValue
    text: str  # the words in the document
    start: int
    end: int
    score: float


# What a field is about, told by its own words (name, description, hint): the cue phrases
# that stand near such a value in documents of any kind. A field about something else is
# read by its own words only.
_MEANINGS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "date": (
        (("effect", "commence", "start", "begin", "dated", "signed", "execut", "made",
          "entered"),
         ("effective as of", "effective date", "dated as of", "dated", "made as of",
          "entered into as of", "entered into on", "made and entered", "is made on", "as of",
          "this agreement", "day of")),
        (("expir", "end", "terminat", "until", "due", "deadline", "close"),
         ("expires on", "expire on", "expiration", "expiry", "until", "through",
          "terminate on", "terminates on", "ending on", "due on", "due", "no later than")),
    ),
    "duration": (
        (("term", "last", "long", "length", "duration"),
         ("term of this agreement", "term of", "period of", "for a period",
          "remain in effect", "remain in full force", "shall expire", "shall terminate",
          "shall survive", "continue in effect", "in effect for", "the term", "terminate",
          "expire", "survive", "following the", "after the")),
        (("notice",), ("notice", "prior written notice", "notify", "written notice")),
    ),
    "place": (
        (("law", "govern", "jurisdiction", "legal"), ()),  # find_places' own cues
        (("venue", "court", "forum", "arbitrat", "seat", "dispute"),
         ("venue", "courts of", "courts in", "arbitration in", "seat of", "forum")),
    ),
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


def _field_text(spec: FieldSpec) -> str:
    return " ".join((spec.name.replace("_", " "), spec.description, *spec.hint)).lower()


def _meaning(spec: FieldSpec) -> int | None:
    """Which of its type's meanings the field has (an index into _MEANINGS), if any."""
    words = _field_text(spec)
    for index, (stems, _) in enumerate(_MEANINGS.get(spec.type, ())):
        if any(re.search(rf"\b{stem}", words) for stem in stems):
            return index
    return None


def _cue_scores(text: str, start: int, end: int, cues: Iterable[str], before: int = 120,
                after: int = 40) -> list[float]:
    """Each cue phrase's weight by the value: the closer the more, before it twice as much
    as after it ("a fee of $5" and "$5 as the fee")."""
    window_before = text[max(0, start - before):start].lower()
    window_after = text[end:end + after].lower()
    scores = []
    for cue in cues:
        cue = cue.lower()
        at = window_before.rfind(cue)
        score = 0.0
        if at >= 0:
            score = 2.0 / (1 + (len(window_before) - at - len(cue)) / 25)
        at = window_after.find(cue)
        if at >= 0:
            score = max(score, 1.0 / (1 + at / 25))
        scores.append(score)
    return scores


def _cue_score(text: str, start: int, end: int, cues: Iterable[str], before: int = 120,
               after: int = 40) -> float:
    """The strongest cue phrase by the value."""
    return max(_cue_scores(text, start, end, cues, before, after), default=0.0)


# Words that say what a document is, not what a field is: "the date the agreement takes
# effect" is about taking effect.
_DOCUMENT_WORDS = {"agreement", "document", "contract", "date", "dates", "value", "values",
                   "field", "amount", "amounts", "number", "numbers", "name", "names", "type",
                   "kind", "letter", "hereof", "herein", "clause"}
# Words that ask for names in general: such a field wants every party, not one role.
_ANY_NAME_WORDS = {"party", "parties", "people", "person", "persons", "organisation",
                   "organisations", "organization", "organizations", "named", "who", "sign",
                   "signs", "signed", "signatory", "signatories", "signer", "signers",
                   "company", "companies", "entity", "entities", "individual", "individuals",
                   "involved", "mentioned"}


def _own_words(spec: FieldSpec) -> tuple[str, ...]:
    return tuple(dict.fromkeys(
        t for t in terms(f"{spec.name.replace('_', ' ')} {spec.description}")
        if len(t) > 2 and t not in _DOCUMENT_WORDS))


def _own_score(spec: FieldSpec, text: str, start: int, end: int, before: int = 120) -> float:
    """The field's own words by the value: its strongest hint phrase, and half of what its
    name's and description's words add up to (two of them near the value beat one)."""
    words = _own_words(spec)
    return (_cue_score(text, start, end, spec.hint, before)
            + 0.5 * sum(_cue_scores(text, start, end, words, before)))


def _position_bonus(text: str, start: int) -> float:
    """Facts that define a document sit near its start."""
    return 0.5 * (1 - start / max(len(text), 4000))  # a short document is all opening


def _dates(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    meaning = _meaning(spec)
    cues = _MEANINGS["date"][meaning][1] if meaning is not None else ()
    for date in find_dates(text):
        score = (_cue_score(text, date.start, date.end, cues)
                 + _own_score(spec, text, date.start, date.end))
        if score > 0:
            score += _position_bonus(text, date.start)
        if meaning == 0:
            if "effective date" in text[date.end:date.end + 40].lower():
                score += 2.0
            if _END_DATE.search(text[max(0, date.start - 60):date.start]):
                score -= 2.0
        found.append(Candidate(date.value.isoformat(), date.text, date.start, date.end, score))
    return found


def _durations(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    meaning = _meaning(spec)
    cues = _MEANINGS["duration"][meaning][1] if meaning is not None else ()
    for duration in find_durations(text):
        score = (_cue_score(text, duration.start, duration.end, cues, before=160)
                 + _own_score(spec, text, duration.start, duration.end, before=160))
        if meaning == 0:  # the agreement's term
            if _DURATION_NOT_TERM.search(text[max(0, duration.start - 40):duration.start]):
                score -= 2.0
            if duration.unit in ("days", "weeks"):
                score -= 1.0
            if _FROM_START.match(text, duration.end):
                score += 3.0
            if _TERM_CLAUSE.search(text[max(0, duration.start - 250):duration.end + 80]):
                score += 2.5
            if _TERM_NAMED.search(text[max(0, duration.start - 150):duration.end + 30]):
                score += 3.0
            if _COVENANT.search(text[max(0, duration.start - 200):duration.end + 60]):
                score -= 2.5
        found.append(Candidate(Duration(amount=duration.amount, unit=duration.unit),
                               duration.text, duration.start, duration.end, score))
    return found


def _places(spec: FieldSpec, text: str) -> list[Candidate]:
    meaning = _meaning(spec)
    found = []
    if meaning == 0:  # governing law: the clauses find_places reads
        found = [Candidate(place.place, place.text, place.start, place.end,
                           place.weight + _own_score(spec, text, place.start, place.end))
                 for place in find_places(text)]
    cues = _MEANINGS["place"][meaning][1] if meaning is not None else ()
    for match in itertools.islice(_KNOWN_PLACE.finditer(text), MAX_FOUND):
        score = (_cue_score(text, match.start(), match.end(), cues)
                 + _own_score(spec, text, match.start(), match.end()))
        if score > 0:
            found.append(Candidate(clean_place(match.group()) or match.group(), match.group(),
                                   match.start(), match.end(), score))
    return found


def _money(spec: FieldSpec, text: str) -> list[Candidate]:
    return [Candidate(Money(amount=m.amount, currency=m.currency), m.text, m.start, m.end,
                      _own_score(spec, text, m.start, m.end))
            for m in find_money(text)]


def _numbers(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    # Atomic: a number followed by a full stop is that number, not its first digits.
    numbers = re.finditer(rf"(?<![\w.,-])-?(?>{DIGITS})(?![\w.,]\d)", text)
    for match in itertools.islice(numbers, MAX_FOUND):
        number = parse_number(match.group())
        if number is None or (_SECTION_NUMBER.match(text, match.end()) and (
                match.start() == 0 or text[match.start() - 1] == "\n")):
            continue  # "2. Fees": a section's number at the start of a line
        score = _own_score(spec, text, match.start(), match.end(), before=60)
        found.append(Candidate(float(plain(number)), match.group(), match.start(), match.end(),
                               score))
    return found


def _choices(spec: FieldSpec, text: str) -> list[Candidate]:
    found = []
    for choice in spec.choices:
        mentions = re.finditer(rf"\b{re.escape(choice)}\b", text, re.IGNORECASE)
        for match in itertools.islice(mentions, MAX_FOUND):
            score = _own_score(spec, text, match.start(), match.end())
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
        # Of persons, those who sign are what a person field most often asks for.
        found.append((name, max(name.weight, 2.0) if spec.type == "person" else name.weight))
    wanted = {"organization": {"organization"}, "person": {"person"}}.get(
        spec.type, {"organization", "person"})
    # A field about one role ("the lender") wants the name its words stand by; the defined
    # term follows a name: `Acme Bank (the "Lender")`.
    role = [*spec.hint, *(w for w in _own_words(spec) if w not in _ANY_NAME_WORDS)]
    candidates = []
    for name, score in found:
        if name.kind not in wanted:
            continue
        if role:
            own = max(_cue_score(text, name.start, name.end, role, before=0, after=60) * 2,
                      _cue_score(text, name.start, name.end, role, before=60, after=0) / 4)
            if own == 0:
                continue
            score += own
        candidates.append(Candidate(name.name, name.text, name.start, name.end, score))
    return candidates


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
    For a `text` field, the sentences that say most of what it is about."""
    if spec.type == "text":
        return best_sentences(spec, text, limit)
    reader = _READERS[spec.type]
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


def _stems(text: str) -> set[str]:
    """Words cut to five letters: 'termination' and 'terminate' meet; no stemmer needed."""
    return {t[:5] for t in terms(text)}


def best_sentences(spec: FieldSpec, text: str, limit: int = 3) -> list[Candidate]:
    """The sentences that say most of what the field is about, best first. Its words count
    by how rare they are in this document (a party's name in every sentence says little; a
    word the document never uses, half as much as one it uses once); a hint phrase written
    out adds half. A sentence qualifies with two of the words (or the only one), 40% of their
    weight and more than a commonplace's worth: a `text` field is never answered with an
    unrelated sentence."""
    wanted = _stems(_field_text(spec))
    if not wanted:
        return []
    spans = sentence_spans(text)
    stems_of = [_stems(text[s:e]) for s, e in spans]
    frequency: dict[str, int] = {}
    for stems in stems_of:
        for stem in stems & wanted:
            frequency[stem] = frequency.get(stem, 0) + 1
    count = len(spans)
    weight = {w: math.log((count + 1) / (frequency[w] + 0.5)) if w in frequency
              else 0.5 * math.log((count + 1) / 1.5) for w in wanted}
    total = sum(weight.values()) or 1.0
    scored = []
    for (start, end), stems in zip(spans, stems_of, strict=True):
        shared = wanted & stems
        if not shared or (len(wanted) > 1 and len(shared) < 2):
            continue
        evidence = sum(weight[w] for w in shared)
        sentence = text[start:end].lower()
        share = evidence / total + sum(0.5 for hint in spec.hint if hint.lower() in sentence)
        if share >= 0.4 and evidence >= 1.0:
            scored.append((share, start, end))
    scored.sort(key=lambda s: (-s[0], s[1]))
    found = []
    for share, start, end in scored[:limit]:
        sentence = " ".join(text[start:end].split())[:300]
        found.append(Candidate(sentence, sentence, start, end, round(share, 3)))
    return found


def min_score(spec: FieldSpec) -> float:
    """The score below which the field is left null rather than answered with a guess."""
    if spec.type == "text":
        return MIN_SCORE_TEXT
    if spec.type == "duration" and _meaning(spec) == 0:
        return MIN_SCORE_TERM
    return MIN_SCORE


def pick_one(ranked: list[Candidate], spec: FieldSpec) -> list[Candidate]:
    return ranked[:1] if ranked and ranked[0].score >= min_score(spec) else []


def pick_many(spec: FieldSpec, ranked: list[Candidate]) -> list[Candidate]:
    """The values a list field is answered with: every date or amount found; of other types
    the candidates the cues support; for names, those introduced as parties, filled up to
    two (what most agreements have) by weaker ones."""
    if spec.type in ("date", "money"):
        return ranked  # each one a date or an amount the document states, best first
    if spec.type not in ("organization", "person", "party"):
        return [c for c in ranked if c.score >= min_score(spec)]
    strong = [c for c in ranked if c.score >= 3.0][:3]
    weaker = [c for c in ranked if 1.4 <= c.score < 3.0]
    return strong + weaker[:max(0, 2 - len(strong))]
