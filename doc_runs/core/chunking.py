"""Sentence-aware chunks that keep their provenance: page numbers and character offsets into
the document's full text (pages joined by PAGE_SEPARATOR)."""

from __future__ import annotations

import bisect
import hashlib

from pydantic import BaseModel, Field, model_validator

from doc_runs.core.sentences import sentence_spans

PAGE_SEPARATOR = "\n\n"


class ChunkingConfig(BaseModel):
    chunk_size: int = Field(1200, gt=0, description="Most characters in a chunk.")
    chunk_overlap: int = Field(200, ge=0, description="Characters carried into the next chunk.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class Chunk(BaseModel):
    id: str
    index: int
    start: int  # offset into the full text, inclusive
    end: int  # exclusive
    pages: list[int]
    text: str


class PagedText:
    """The full text of a document and where each page sits in it."""

    def __init__(self, pages: list[tuple[int, str]]) -> None:
        self.numbers = [number for number, _ in pages]
        self.starts: list[int] = []
        parts: list[str] = []
        offset = 0
        for _, text in pages:
            self.starts.append(offset)
            parts.append(text)
            offset += len(text) + len(PAGE_SEPARATOR)
        self.text = PAGE_SEPARATOR.join(parts)
        self.ends = [s + len(t) for s, (_, t) in zip(self.starts, pages, strict=True)]

    def pages_of(self, start: int, end: int) -> list[int]:
        first = max(bisect.bisect_right(self.starts, start) - 1, 0)
        last = max(bisect.bisect_right(self.starts, max(end - 1, start)) - 1, 0)
        return [
            self.numbers[i]
            for i in range(first, last + 1)
            if self.starts[i] < end and self.ends[i] > start
        ] or [self.numbers[first]]

    def sentence_spans(self) -> list[tuple[int, int]]:
        # Page by page: a sentence never runs across a page break's separator.
        spans: list[tuple[int, int]] = []
        for start, end in zip(self.starts, self.ends, strict=True):
            spans.extend(sentence_spans(self.text, start, end))
        return spans


def _split_long(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Cut a span longer than `size` at whitespace where possible."""
    pieces = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = cut if cut > start else start + size
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        pieces.append((start, end))
    return pieces


def chunk_id(document_id: str, start: int, end: int) -> str:
    digest = hashlib.sha256(f"{document_id}:{start}:{end}".encode()).hexdigest()[:8]
    return f"c{start}-{end}-{digest}"


def chunk_text(document_id: str, paged: PagedText, config: ChunkingConfig) -> list[Chunk]:
    text = paged.text
    units: list[tuple[int, int]] = []
    for s, e in paged.sentence_spans():
        units.extend(_split_long(text, s, e, config.chunk_size))
    chunks: list[Chunk] = []
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and units[last + 1][1] - units[first][0] <= config.chunk_size:
            last += 1
        start, end = units[first][0], units[last][1]
        chunks.append(
            Chunk(
                id=chunk_id(document_id, start, end),
                index=len(chunks),
                start=start,
                end=end,
                pages=paged.pages_of(start, end),
                text=text[start:end],
            )
        )
        if last + 1 >= len(units):
            break
        # Step back over whole sentences that fit in the overlap, but always move forward.
        following = last + 1
        while following - 1 > first and end - units[following - 1][0] <= config.chunk_overlap:
            following -= 1
        first = following
    return chunks
