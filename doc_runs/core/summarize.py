"""Extractive summaries: offline, deterministic, every sentence cited to its chunk.

Sentences are scored by their similarity to the document's centroid (term frequency weighted by
inverse sentence frequency), with a mild lead bias, then picked by maximal marginal relevance so
the summary does not repeat itself, and put back in document order.
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


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    norm = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norm if norm else 0.0


def extractive_summary(paged: PagedText, chunks: list[Chunk], config: SummaryConfig) -> Summary:
    text = paged.text
    every = paged.sentence_spans()
    # Table rows and figure labels run together into "sentences" hundreds of characters long;
    # a summary sentence must be short enough to leave room for others.
    longest = config.max_chars // 2
    spans = [(s, e) for s, e in every if e - s <= longest and len(terms(text[s:e])) >= 3]
    if not spans:
        spans = [(s, min(e, s + config.max_chars)) for s, e in every[:1]]
    bags = [Counter(terms(text[s:e])) for s, e in spans]
    frequency = Counter(t for bag in bags for t in bag)
    count = len(bags)
    idf = {t: math.log((1 + count) / (1 + df)) + 1.0 for t, df in frequency.items()}
    vectors = [{t: tf * idf[t] for t, tf in bag.items()} for bag in bags]
    centroid: dict[str, float] = {}
    for vector in vectors:
        for t, w in vector.items():
            centroid[t] = centroid.get(t, 0.0) + w
    scores = [
        _cosine(v, centroid) * (1.0 + 0.25 * (1.0 - i / max(count, 1)))
        for i, v in enumerate(vectors)
    ]

    chosen: list[int] = []
    used = 0
    candidates = set(range(count))
    while candidates and len(chosen) < config.max_sentences:
        def gain(i: int) -> tuple[float, int]:
            overlap = max((_cosine(vectors[i], vectors[j]) for j in chosen), default=0.0)
            return (scores[i] - config.redundancy_weight * overlap, -i)

        best = max(candidates, key=gain)
        candidates.discard(best)
        length = spans[best][1] - spans[best][0]
        if chosen and used + length > config.max_chars:
            continue
        chosen.append(best)
        used += length

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
