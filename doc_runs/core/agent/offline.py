"""The offline backend: deterministic, network-free, extractive. It reads the conversation
the loop sends, asks for tools the way a model would, and answers every field with text
copied from the document and the chunk ids it came from. No model, no network."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from doc_runs.core.agent.protocol import ChatRequest, ChatResponse, ToolCall, Usage
from doc_runs.core.sentences import sentence_spans
from doc_runs.core.summarize import terms

_CHUNK_ID = re.compile(r"\bc\d+-\d+-[0-9a-f]{8}\b")
_ORGANISATION = re.compile(
    r"\b(?:[A-Z][\w&'.-]*\s+){0,4}(?:Ltd|GmbH|Inc|LLC|Corp|Corporation|Company|AG|SA|plc|"
    r"Limited|Trust|Bank|University|Association|Committee|Court|Council)\b\.?"
)
_PERSON = re.compile(r"\b(?:(?:Mr|Mrs|Ms|Dr|Prof|Judge|Justice)\.?\s+(?:[A-Z]\.\s*)*|"
                     r"[A-Z]\.\s?)[A-Z][a-z]{2,}(?:\s+[A-Z][a-z]+)?")
_TYPES = {
    "contract": ("agreement", "contract", "party", "parties", "termination", "liability"),
    "invoice": ("invoice", "amount due", "bill to", "vat", "subtotal"),
    "minutes": ("minutes", "meeting", "present:", "agenda", "the board"),
    "report": ("report", "incident", "findings", "quarter", "summary"),
    "paper": ("abstract", "introduction", "references", "we propose", "et al"),
    "letter": ("dear ", "sincerely", "regards"),
    "form": ("first name", "last name", "signature", "date of birth"),
    "transcript": ("transcript", "proceedings", "oral argument"),
}


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _fields(request: ChatRequest) -> list[tuple[str, str, bool]]:
    for tool in request.tools:
        function = tool.get("function", {})
        if function.get("name") == "submit_findings":
            props = function["parameters"]["properties"]
            return [(name, spec.get("description", name),
                     spec["properties"]["value"].get("type") == "array")
                    for name, spec in props.items()]
    return []


def _best_sentence(text: str, query: str) -> str:
    wanted = set(terms(query))
    spans = sentence_spans(text) or [(0, len(text))]
    best = max(spans, key=lambda s: (len(wanted & set(terms(text[s[0]:s[1]]))), -s[0]))
    return " ".join(text[best[0]:best[1]].split())[:300]


def _sentences(texts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for chunk_id, text in texts:
        for start, end in sentence_spans(text):
            sentence = " ".join(text[start:end].split())
            sentence = sentence.lstrip("#-* ").strip()
            if 30 <= len(sentence) <= 300:
                seen.setdefault(sentence, chunk_id)
    # Search results carry chunk text cut short: drop a sentence that is the start of another.
    kept = [s for s in seen if not any(o != s and o.startswith(s) for o in seen)]
    return [(seen[s], s) for s in kept]


class OfflineBackend:
    name = "offline"
    model = "offline-extractive-1"
    endpoint = "offline"

    def complete(self, request: ChatRequest) -> ChatResponse:
        prompt_tokens = _estimate_tokens(json.dumps(request.messages))
        calls_made = [c for m in request.messages if m["role"] == "assistant"
                      for c in m.get("tool_calls") or []]
        calls = self._plan(request) if not calls_made else [self._submit(request, calls_made)]
        completion = sum(_estimate_tokens(c.arguments) for c in calls)
        return ChatResponse(tool_calls=calls, finish_reason="tool_calls",
                            usage=Usage(prompt_tokens=prompt_tokens,
                                        completion_tokens=completion))

    def _plan(self, request: ChatRequest) -> list[ToolCall]:
        user = next(m["content"] for m in request.messages if m["role"] == "user")
        chunk_ids = _CHUNK_ID.findall(user)
        plan: list[tuple[str, dict[str, Any]]] = [
            ("find_patterns", {"kind": "dates"}), ("find_patterns", {"kind": "amounts"}),
        ]
        if chunk_ids:
            plan.append(("read_chunk", {"chunk_id": chunk_ids[0]}))
        for name, description, _ in _fields(request):
            if name not in ("dates", "amounts", "title"):
                plan.append(("search_chunks", {"query": description, "k": 3}))
        return [ToolCall(id=f"call_{i}", name=name, arguments=json.dumps(args))
                for i, (name, args) in enumerate(plan)]

    def _submit(self, request: ChatRequest, calls_made: list[dict[str, Any]]) -> ToolCall:
        results = {m["tool_call_id"]: m["content"] for m in request.messages
                   if m["role"] == "tool"}
        found: dict[str, list[dict[str, Any]]] = {}
        first_chunk: dict[str, Any] | None = None
        searches: dict[str, list[dict[str, Any]]] = {}
        for call in calls_made:
            function = call["function"]
            raw = results.get(call["id"], "")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                continue  # an error message, not a result
            args = json.loads(function["arguments"])
            if function["name"] == "find_patterns":
                found[args["kind"]] = value
            elif function["name"] == "read_chunk":
                first_chunk = value
            elif function["name"] == "search_chunks":
                searches[args["query"]] = value
        texts = [(first_chunk["chunk_id"], first_chunk["text"])] if first_chunk else []
        texts += [(r["chunk_id"], r["text"]) for hits in searches.values() for r in hits]
        answers: dict[str, Any] = {}
        for name, description, many in _fields(request):
            answers[name] = self._answer(name, description, many, found, first_chunk,
                                         searches.get(description, []), texts)
        return ToolCall(id="call_submit", name="submit_findings",
                        arguments=json.dumps(answers, ensure_ascii=False))

    @staticmethod
    def _central_sentences(texts: list[tuple[str, str]], count: int) -> dict[str, Any]:
        """The sentences sharing most vocabulary with everything read: extractive key points."""
        candidates = _sentences(texts)
        weight = Counter(t for _, sentence in candidates for t in set(terms(sentence)))
        ranked = sorted(
            candidates,
            key=lambda cs: -sum(weight[t] for t in set(terms(cs[1]))) / (len(terms(cs[1])) + 4),
        )[:count]
        return {"value": [s for _, s in ranked],
                "citations": list(dict.fromkeys(c for c, _ in ranked))}

    @staticmethod
    def _answer(name: str, description: str, many: bool, found: dict[str, Any],
                first_chunk: dict[str, Any] | None, hits: list[dict[str, Any]],
                texts: list[tuple[str, str]]) -> dict[str, Any]:
        if name in ("dates", "amounts") and many:
            matches = found.get(name, [])[:10]
            return {"value": [m["match"] for m in matches],
                    "citations": list(dict.fromkeys(m["chunk_id"] for m in matches))}
        if name == "title" and first_chunk:
            text = first_chunk["text"]
            spans = sentence_spans(text)
            first = " ".join(text[spans[0][0]:spans[0][1]].split()) if spans else ""
            line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            title = (first if 0 < len(first) <= 120 else line[:120]).lstrip("#-* ")
            return {"value": title.rstrip(".") or None, "citations": [first_chunk["chunk_id"]]}
        if name == "key_points" and many:
            return OfflineBackend._central_sentences(texts, 3)
        if name == "document_type":
            # The opening words say most about what a document is: count them five times.
            opening = texts[0][1][:200] if texts else ""
            blob = (" ".join(t for _, t in texts) + (" " + opening) * 5).lower()
            scores = Counter({kind: sum(blob.count(w) for w in words)
                              for kind, words in _TYPES.items()})
            kind, score = scores.most_common(1)[0] if scores else ("document", 0)
            cite = [texts[0][0]] if texts else []
            return {"value": kind if score else "document", "citations": cite}
        if name == "parties" and many:
            names: dict[str, str] = {}
            for chunk_id, text in texts:
                for match in [*_ORGANISATION.finditer(text), *_PERSON.finditer(text)]:
                    names.setdefault(" ".join(match.group().split()).rstrip("."), chunk_id)
            chosen = list(names.items())[:8]
            return {"value": [n for n, _ in chosen],
                    "citations": list(dict.fromkeys(c for _, c in chosen))}
        if many:
            picks = [(h["chunk_id"], _best_sentence(h["text"], description)) for h in hits[:3]]
            picks = [p for p in picks if p[1]]
            return {"value": list(dict.fromkeys(s for _, s in picks)),
                    "citations": list(dict.fromkeys(c for c, _ in picks))}
        if hits:
            return {"value": _best_sentence(hits[0]["text"], description),
                    "citations": [hits[0]["chunk_id"]]}
        return {"value": None, "citations": []}
