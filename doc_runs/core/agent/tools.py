"""Tools over one document, registered with JSON Schemas; arguments validated with pydantic.

A tool never raises to the loop: an unknown tool, bad arguments or a failing tool come back
as ToolError, whose message goes to the model as the tool's result.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from doc_runs.core.chunking import Chunk
from doc_runs.core.fields.candidates import find_candidates
from doc_runs.core.fields.spec import (
    FIELD_NAME_PATTERN,
    MAX_DESCRIPTION,
    FieldSpec,
    FieldType,
)
from doc_runs.core.fields.values import display, json_value
from doc_runs.core.summarize import terms

PATTERNS: dict[str, re.Pattern[str]] = {
    "dates": re.compile(
        r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|"
        r"\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{4}|"
        r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4})\b"
    ),
    "amounts": re.compile(
        r"(?:(?:USD|EUR|GBP|CHF|JPY|US\$|[$€£¥])\s?\d[\d,.]*(?:\s?(?:million|billion|k))?"
        r"|\b\d[\d,.]*\s?(?:million\s|billion\s)?(?:USD|EUR|GBP|CHF|dollars|euros|pounds|"
        r"percent|%))"
    ),
    "emails": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "urls": re.compile(r"\bhttps?://[^\s<>()\"']+"),
}


class ToolError(Exception):
    """Goes back to the model as the tool's result."""


class SearchChunksArgs(BaseModel, extra="forbid"):
    query: str = Field(min_length=1, max_length=500)
    k: int = Field(5, ge=1, le=20)


class ReadChunkArgs(BaseModel, extra="forbid"):
    chunk_id: str = Field(min_length=1, max_length=100)


class ReadPageArgs(BaseModel, extra="forbid"):
    page: int = Field(ge=1)


class FindPatternsArgs(BaseModel, extra="forbid"):
    kind: Literal["dates", "amounts", "emails", "urls"]


# In the tool cache's key: a new number when a tool answers differently for the same
# arguments, so that no cached result of the old tool is taken for the new one's.
TOOLS_VERSION = 2
# find_values reads at most this much of a document: its start and its end.
FIND_VALUES_HEAD = 800_000
FIND_VALUES_TAIL = 200_000
# Between the two: a NUL, so that no pattern reads across the cut (half a date each side).
_CUT = "\n\x00\n"


class FindValuesArgs(BaseModel, extra="forbid"):
    type: FieldType
    # The field's name, whose words count like the description's ("value" adds none).
    name: str = Field("value", pattern=FIELD_NAME_PATTERN)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    cues: list[str] = Field(default_factory=list, max_length=20)
    choices: list[str] = Field(default_factory=list, max_length=50)
    k: int = Field(5, ge=1, le=50)


# Tools run here so that a call past its deadline can be answered with an error while the
# loop goes on. A Python thread cannot be killed; the tools work on one document's bounded
# chunks, so an abandoned call ends soon after by itself.
_TOOL_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="doc-runs-tool")


class DocumentTools:
    @functools.cached_property
    def digest(self) -> str:
        """The text the tools answer from. Their results are cached under it: a document read
        again differently (another PDF engine, other chunk sizes) must not be answered from
        its old chunks."""
        digest = hashlib.sha256()
        for chunk in self.ordered:
            digest.update(f"{chunk.id}\0{chunk.text}\0".encode())
        for number, text in sorted(self.pages.items()):
            digest.update(f"{number}\0{text}\0".encode())
        return digest.hexdigest()

    def __init__(self, chunks: list[Chunk], pages: dict[int, str],
                 max_result_chars: int = 6000, timeout_s: float = 10.0) -> None:
        self.chunks = {c.id: c for c in chunks}
        self.ordered = chunks
        self.pages = pages
        self.max_result_chars = max_result_chars
        self.timeout_s = timeout_s
        self._terms = [set(terms(c.text)) for c in chunks]
        # Imported here: it brings numpy, which processes that only load the definitions
        # (code server, command line) never need.
        from rank_bm25 import BM25Plus

        self._index = BM25Plus([terms(c.text) or ["_"] for c in chunks]) if chunks else None
        self._tools: dict[str, tuple[type[BaseModel], str, Callable[[Any], Any]]] = {
            "search_chunks": (SearchChunksArgs, "Rank the document's chunks by relevance to a "
                              "query (BM25+); returns ids, pages and text.", self._search),
            "read_chunk": (ReadChunkArgs, "Full text of one chunk by id.", self._read_chunk),
            "read_page": (ReadPageArgs, "Full text of one page (1-based).", self._read_page),
            "find_patterns": (FindPatternsArgs, "Every date, amount, email or URL in the "
                              "document, with the chunk it is in.", self._find_patterns),
            "find_values": (FindValuesArgs, "Candidate values of a type (date, party, place, "
                            "duration, money, ...) anywhere in the document, best first, "
                            "ranked by the cue phrases around them; each normalized, with its "
                            "words, its chunk and a score. For type text: the sentences that "
                            "say most of what the description asks.", self._find_values),
        }

    @functools.cached_property
    def text(self) -> str:
        """The document's text, rebuilt from its chunks (each a slice of it)."""
        parts: list[str] = []
        covered = 0
        for chunk in self.ordered:
            if chunk.end > covered:
                parts.append(" " * max(0, chunk.start - covered)
                             + chunk.text[max(0, covered - chunk.start):])
                covered = chunk.end
        return "".join(parts)

    def chunk_at(self, start: int, end: int) -> str | None:
        """The id of the first chunk holding text[start:end] whole (else the one it starts in)."""
        holding = next((c for c in self.ordered if c.start <= start and end <= c.end), None)
        holding = holding or next((c for c in self.ordered if c.start <= start < c.end), None)
        return holding.id if holding else None

    def specs(self) -> list[dict[str, Any]]:
        return [
            {"type": "function", "function": {
                "name": name, "description": description,
                "parameters": model.model_json_schema()}}
            for name, (model, description, _) in self._tools.items()
        ]

    def call(self, name: str, arguments: str) -> str:
        if name not in self._tools:
            raise ToolError(f"unknown tool {name!r}; tools: {', '.join(self._tools)}")
        model, _, run = self._tools[name]
        try:
            args = model.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ToolError(
                f"invalid arguments for {name}: {'.'.join(map(str, first['loc'])) or 'body'}: "
                f"{first['msg']}"
            ) from None
        future = _TOOL_THREADS.submit(run, args)
        try:
            value = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise ToolError(f"{name} took longer than {self.timeout_s:g} s; try a narrower "
                            "request") from None
        result = json.dumps(value, ensure_ascii=False)
        if len(result) > self.max_result_chars:
            result = result[: self.max_result_chars] + "... [truncated]"
        return result

    def _search(self, args: SearchChunksArgs) -> list[dict[str, Any]]:
        if self._index is None:
            return []
        query = terms(args.query) or ["_"]
        scores = self._index.get_scores(query)
        # BM25+ keeps idf positive even in documents of one or two chunks (BM25's goes to zero
        # or below there); a chunk qualifies by sharing a term, and scores order qualifiers.
        hits = [i for i, chunk_terms in enumerate(self._terms) if chunk_terms & set(query)]
        ranked = sorted(hits, key=lambda i: (-scores[i], i))[: args.k]
        return [
            {"chunk_id": self.ordered[i].id, "pages": self.ordered[i].pages,
             "score": round(float(scores[i]), 3), "text": self.ordered[i].text[:600]}
            for i in ranked
        ]

    def _read_chunk(self, args: ReadChunkArgs) -> dict[str, Any]:
        chunk = self.chunks.get(args.chunk_id)
        if chunk is None:
            raise ToolError(f"no chunk {args.chunk_id!r}")
        return {"chunk_id": chunk.id, "pages": chunk.pages, "text": chunk.text}

    def _read_page(self, args: ReadPageArgs) -> dict[str, Any]:
        if args.page not in self.pages:
            raise ToolError(f"no page {args.page}; pages 1..{max(self.pages, default=0)}")
        return {"page": args.page, "text": self.pages[args.page]}

    def _find_patterns(self, args: FindPatternsArgs) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for chunk in self.ordered:
            for match in PATTERNS[args.kind].finditer(chunk.text):
                text = match.group().strip().rstrip(".,;")
                if text not in seen:
                    seen.add(text)
                    found.append({"match": text, "chunk_id": chunk.id})
                if len(found) >= 50:
                    return found
        return found

    def _find_values(self, args: FindValuesArgs) -> dict[str, Any]:
        try:
            spec = FieldSpec(name=args.name, description=args.description or args.type,
                             type=args.type, many=True, hint=tuple(args.cues),
                             choices=tuple(args.choices))
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for find_values: {exc.errors()[0]['msg']}"
                            ) from None
        text, read = self.text, "the whole document"
        tail_at = 0
        if len(text) > FIND_VALUES_HEAD + FIND_VALUES_TAIL:
            # Bounded work on any document: its opening (parties, dates, terms) and its end
            # (signatures); what lies between is not read.
            tail_at = len(text) - FIND_VALUES_TAIL
            text = text[:FIND_VALUES_HEAD] + _CUT + text[tail_at:]
            read = (f"the first {FIND_VALUES_HEAD:,} and the last {FIND_VALUES_TAIL:,} of "
                    f"{len(self.text):,} characters")
        found = []
        for candidate in find_candidates(spec, text, limit=args.k):
            start, end = candidate.start, candidate.end
            if tail_at and start >= FIND_VALUES_HEAD + len(_CUT):
                shift = tail_at - FIND_VALUES_HEAD - len(_CUT)
                start, end = start + shift, end + shift
            found.append({
                "value": json_value(candidate.value), "display": display(candidate.value),
                "text": candidate.text, "score": candidate.score,
                "chunk_id": self.chunk_at(start, end),
            })
        return {"values": found, "read": read}
