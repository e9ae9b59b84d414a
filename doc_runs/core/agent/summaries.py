"""Summaries through a model: map (each chunk, bounded concurrency) then reduce, every
sentence citing the chunks it came from. The offline backend's summary is extractive
(summarize.extractive_summary) and makes no calls."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.protocol import ChatRequest
from doc_runs.core.chunking import Chunk
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs.core.summarize import Summary, SummaryConfig, SummarySentence

_CITATION = re.compile(r"\[([^\[\]]+)\]")
_CITED = re.compile(r"(?P<body>[^\[\]]+?)(?P<ids>(?:\s*\[[^\[\]]+\])+)\s*[.!?]?", re.S)
_MAP_PROMPT = ("Summarize the passage in at most two sentences, using only facts it states. "
               "Reply with the sentences only.")
_REDUCE_PROMPT = (
    "Below are summaries of passages of one document, each after its passage id in square "
    "brackets. Write a summary of the whole document in at most {n} sentences and at most "
    "{chars} characters. End every sentence with the ids of the passages it draws on, in "
    "square brackets, exactly as given, e.g. [{example}]."
)
# Passage summaries are reduced in groups, so the reduce prompt stays bounded however long
# the document is.
_GROUP = 24


class ModelSummarizer:
    def __init__(self, client: ModelClient, config: SummaryConfig, concurrency: int,
                 max_reprompts: int, max_tokens: int) -> None:
        self.client = client
        self.config = config
        self.concurrency = max(concurrency, 1)
        self.max_reprompts = max_reprompts
        self.max_tokens = max_tokens

    def _ask(self, system: str, user: str, max_tokens: int) -> tuple[str, str | None]:
        backend = self.client.backend
        response = self.client.complete(ChatRequest(
            backend=backend.name, model=backend.model, max_tokens=max_tokens,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        ))
        return (response.content or "").strip(), response.finish_reason

    def _map(self, chunk: Chunk) -> tuple[str, str]:
        text, finish = self._ask(_MAP_PROMPT, chunk.text, 200)
        for _ in range(self.max_reprompts):
            if finish != "length" and text:
                break
            text, finish = self._ask(_MAP_PROMPT + " One short sentence.", chunk.text, 200)
        if finish == "length" or not text:
            raise DocumentRejected(Reason.INVALID_TOOL_PAYLOAD,
                                   f"no complete summary of chunk {chunk.id}")
        return chunk.id, " ".join(text.split())

    def _reduce(self, parts: list[tuple[str, str]], chunks: dict[str, Chunk]) -> Summary:
        listing = "\n".join(f"[{cid}] {text}" for cid, text in parts)
        prompt = _REDUCE_PROMPT.format(n=self.config.max_sentences, chars=self.config.max_chars,
                                       example=parts[0][0])
        problem = ""
        for _ in range(self.max_reprompts + 1):
            text, finish = self._ask(prompt + problem, listing, self.max_tokens)
            try:
                if finish == "length":
                    raise ValueError("the summary was cut off; write fewer, shorter sentences")
                return self._parse(text, chunks)
            except ValueError as exc:
                problem = f"\nYour previous answer was rejected: {exc}."
        raise DocumentRejected(Reason.INVALID_TOOL_PAYLOAD, f"summary still invalid: {problem}")

    def _parse(self, text: str, chunks: dict[str, Chunk]) -> Summary:
        """Text segments each followed by their citation groups; uncited text is an error."""
        sentences = []
        cursor = 0
        for match in _CITED.finditer(text):
            body = " ".join(match.group("body").split()).lstrip(". ")
            ids = [i.strip() for group in _CITATION.findall(match.group("ids"))
                   for i in group.split(",")]
            unknown = [i for i in ids if i not in chunks]
            if unknown:
                raise ValueError(f"cites unknown passage ids {unknown}")
            cursor = match.end()
            if not body.strip(" ."):
                continue
            if body[-1] not in ".!?":
                body += "."
            first = chunks[ids[0]]
            sentences.append(SummarySentence(text=body, start=first.start, end=first.end,
                                             chunk_id=first.id))
        if text[cursor:].strip(" .\n"):
            raise ValueError(f"text without a citation: {text[cursor:].strip()[:80]!r}")
        if not sentences:
            raise ValueError("no sentence carries a citation in [brackets]")
        return Summary(method=f"model-map-reduce:{self.client.backend.model}",
                       text=" ".join(s.text for s in sentences), sentences=sentences)

    def summarize(self, chunks: list[Chunk]) -> Summary:
        by_id = {c.id: c for c in chunks}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            parts = list(pool.map(self._map, chunks))
        while len(parts) > _GROUP:
            groups = [parts[i:i + _GROUP] for i in range(0, len(parts), _GROUP)]
            parts = [(s.chunk_id, s.text) for g in groups for s in self._reduce(g, by_id).sentences]
        return self._reduce(parts, by_id)
