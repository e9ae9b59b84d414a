"""Extractive summaries: offline, deterministic, every sentence cited to its chunk.

Sentences are scored by their similarity to the document's centroid (term frequency weighted by
inverse sentence frequency), times a lead bonus that decays with the number of words before the
sentence (introductions carry the gist), and down-weighted when they lack closing punctuation
(headings, list fragments). Code-like sentences (indented continuation lines, dense in symbols)
are left out. Sentences are then picked by maximal marginal relevance so the summary does not
repeat itself, within a sentence, character and optional word budget, and put back in document
order.

Settings were chosen on bench/summary_quality.py (ROUGE against the human-written Abstracts of
Python Enhancement Proposals, tuned on even PEP numbers, checked on the odd ones).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter

from pydantic import BaseModel, Field

from doc_runs.core.chunking import Chunk, PagedText

METHOD = "extractive-centroid-mmr"
_WORD = re.compile(r"\w+")
_SYMBOL = re.compile(r"[=(){}\[\]<>;:_#/\\|@$%^&*+~`\"']")
_CLOSING = (".", "!", "?", "\u3002", "\uff01", "\uff1f")  # sentence-final punctuation
_CLOSERS = "\"'\u201d\u2019)]"  # may follow it
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can could did do does doing down during each few for "
    "from further had has have having he her here hers herself him himself his how i if in "
    "into is it its itself just me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the their "
    "theirs them themselves then there these they this those through to too under until up "
    "very was we were what when where which while who whom why will with would you your "
    "yours yourself yourselves also may might must shall upon per via".split()
)


class SummaryConfig(BaseModel):
    max_sentences: int = Field(5, gt=0)
    max_chars: int = Field(900, gt=0)
    redundancy_weight: float = Field(0.3, ge=0.0, le=1.0)
    max_words: int | None = Field(
        None, gt=0, description="Most words (whitespace-separated) in the summary, if set."
    )
    lead_weight: float = Field(
        1.5, ge=0.0, description="How much more a sentence at the very start counts."
    )
    lead_words: float = Field(
        300.0, gt=0.0, description="Words into the text at which the lead bonus falls to 1/e."
    )
    fragment_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Score factor for a sentence without closing punctuation (heading, item).",
    )


class SummarySentence(BaseModel):
    text: str
    start: int
    end: int
    chunk_id: str


class Summary(BaseModel):
    method: str
    text: str
    sentences: list[SummarySentence]

    @property
    def citations(self) -> list[str]:
        return list(dict.fromkeys(s.chunk_id for s in self.sentences))


def terms(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            # No spaces between CJK words: character bigrams stand in for words.
            out.extend(word[i : i + 2] for i in range(max(len(word) - 1, 1)))
        elif word not in _STOPWORDS and not word.isdigit() and len(word) > 1:
            out.append(word)
    return out


def _norm(vector: dict[str, float]) -> float:
    return math.sqrt(sum(w * w for w in vector.values()))


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def looks_like_code(sentence: str) -> bool:
    """Source code or data rather than prose: most continuation lines indented, or one in ten
    visible characters a programming symbol (URLs and paths count too)."""
    lines = sentence.split("\n")
    if len(lines) > 1:
        indented = sum(1 for line in lines[1:] if line.startswith(("  ", "\t")))
        if 2 * indented >= len(lines) - 1:
            return True
    visible = sum(1 for c in sentence if not c.isspace())
    return len(_SYMBOL.findall(sentence)) * 10 > visible


def _cut_to_words(text: str, start: int, end: int, words: int) -> int:
    """End offset of the first `words` words of text[start:end]."""
    for count, match in enumerate(re.finditer(r"\S+", text[start:end]), start=1):
        if count == words:
            return start + match.end()
    return end


def extractive_summary(paged: PagedText, chunks: list[Chunk], config: SummaryConfig) -> Summary:
    text = paged.text
    every = paged.sentence_spans()
    budget = config.max_words
    # Table rows and figure labels run together into "sentences" hundreds of characters long;
    # a summary sentence must be short enough to leave room for others.
    longest = config.max_chars // 2
    words_before: list[int] = []
    seen = 0
    for s, e in every:
        words_before.append(seen)
        seen += len(text[s:e].split())
    usable = [
        i
        for i, (s, e) in enumerate(every)
        if e - s <= longest
        and (budget is None or len(text[s:e].split()) <= budget)
        and len(terms(text[s:e])) >= 3
    ]
    prose = [i for i in usable if not looks_like_code(text[every[i][0] : every[i][1]])]
    picked = prose or usable
    spans = [every[i] for i in picked]
    if not spans:
        spans = [(s, min(e, s + config.max_chars)) for s, e in every[:1]]
        if budget is not None:
            spans = [(s, _cut_to_words(text, s, e, budget)) for s, e in spans]
        picked = [0] * len(spans)
    bags = [Counter(terms(text[s:e])) for s, e in spans]
    frequency = Counter(t for bag in bags for t in bag)
    count = len(bags)
    idf = {t: math.log((1 + count) / (1 + df)) + 1.0 for t, df in frequency.items()}
    vectors = [{t: tf * idf[t] for t, tf in bag.items()} for bag in bags]
    norms = [_norm(v) for v in vectors]
    centroid: dict[str, float] = {}
    for vector in vectors:
        for t, w in vector.items():
            centroid[t] = centroid.get(t, 0.0) + w
    centroid_norm = _norm(centroid)
    scores = []
    for i, vector in enumerate(vectors):
        similarity = (
            _dot(vector, centroid) / (norms[i] * centroid_norm) if norms[i] * centroid_norm else 0.0
        )
        lead = math.exp(-words_before[picked[i]] / config.lead_words)
        score = similarity * (1.0 + config.lead_weight * lead)
        if not text[spans[i][0] : spans[i][1]].rstrip(_CLOSERS).endswith(_CLOSING):
            score *= config.fragment_weight
        scores.append(score)

    lengths = [e - s for s, e in spans]
    words = [len(text[s:e].split()) for s, e in spans]
    chosen: list[int] = []
    used = used_words = 0
    overlap = [0.0] * count  # highest similarity to a sentence already chosen
    candidates = set(range(count))
    while candidates and len(chosen) < config.max_sentences:
        best = max(
            candidates, key=lambda i: (scores[i] - config.redundancy_weight * overlap[i], -i)
        )
        candidates.discard(best)
        chosen.append(best)
        used += lengths[best]
        used_words += words[best]
        # Whatever would overrun a budget now never fits: drop it.
        candidates = {
            i
            for i in candidates
            if used + lengths[i] <= config.max_chars
            and (budget is None or used_words + words[i] <= budget)
        }
        for i in candidates:
            if norms[i] and norms[best]:
                similarity = _dot(vectors[i], vectors[best]) / (norms[i] * norms[best])
                overlap[i] = max(overlap[i], similarity)

    starts = [c.start for c in chunks]
    sentences = []
    for i in sorted(chosen):
        start, end = spans[i]
        owner = chunks[max(bisect.bisect_right(starts, start) - 1, 0)] if chunks else None
        sentences.append(
            SummarySentence(
                text=" ".join(text[start:end].split()),
                start=start,
                end=end,
                chunk_id=owner.id if owner else "",
            )
        )
    return Summary(method=METHOD, text=" ".join(s.text for s in sentences), sentences=sentences)
