"""The offline backend: deterministic, network-free, extractive. It reads the conversation
the loop sends, asks for tools the way a model would, and answers every field with text
copied from the document and the chunk ids it came from. No model, no network."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from doc_runs.core.agent.findings import CUES_INTRO
from doc_runs.core.agent.protocol import ChatRequest, ChatResponse, ToolCall, Usage
from doc_runs.core.fields.candidates import Candidate, pick_many, pick_one
from doc_runs.core.fields.spec import FieldSpec
from doc_runs.core.sentences import sentence_spans
from doc_runs.core.summarize import terms

_CHUNK_ID = re.compile(r"\bc\d+-\d+-[0-9a-f]{8}\b")
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


# Default text fields read the old way: the title from the document's opening chunk, the
# kind of document and its key points from what searching for them returns. Every other
# field is asked of find_values.
_READ_FROM_OPENING = ("title",)
_READ_FROM_SEARCHES = ("document_type", "key_points")


def _find_values_args(spec: FieldSpec) -> dict[str, Any]:
    # Sentences are long: three of them fit in a tool result; a list of dates or amounts
    # takes up to 30.
    k = 3 if spec.type == "text" else 30 if spec.many and spec.type in ("date", "money") else 10
    return {"type": spec.type, "name": spec.name, "description": spec.description,
            "cues": list(spec.hint), "choices": list(spec.choices), "k": k}


def _query(spec: FieldSpec) -> str:
    return " ".join((spec.description, *spec.hint))[:500]


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _fields(request: ChatRequest) -> list[FieldSpec]:
    """The fields as the submit_findings schema states them (as a model reads them): the
    value schema's title is the type, the description ends with the cue phrases."""
    for tool in request.tools:
        function = tool.get("function", {})
        if function.get("name") != "submit_findings":
            continue
        specs = []
        for name, prop in function["parameters"]["properties"].items():
            value = prop["items"]["properties"]["value"]
            description, _, cues = prop.get("description", name).partition(
                ". " + CUES_INTRO)
            specs.append(FieldSpec(
                name=name, description=description or name, type=value.get("title", "text"),
                many="maxItems" not in prop, choices=tuple(value.get("enum", ())),
                hint=tuple(json.loads(cues)) if cues else ()))
        return specs
    return []


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
    # The model's name is in every call's cache key: a new name when its answers change, so
    # that a cached answer of the old reader is never taken for the new one's.
    model = "offline-extractive-2"
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
        plan: list[tuple[str, dict[str, Any]]] = []
        if chunk_ids:
            plan.append(("read_chunk", {"chunk_id": chunk_ids[0]}))
        for spec in _fields(request):
            if spec.name in _READ_FROM_OPENING:
                continue
            if spec.name in _READ_FROM_SEARCHES:
                plan.append(("search_chunks", {"query": _query(spec), "k": 3}))
            else:
                plan.append(("find_values", _find_values_args(spec)))
        return [ToolCall(id=f"call_{i}", name=name, arguments=json.dumps(args))
                for i, (name, args) in enumerate(plan)]

    def _submit(self, request: ChatRequest, calls_made: list[dict[str, Any]]) -> ToolCall:
        results = {m["tool_call_id"]: m["content"] for m in request.messages
                   if m["role"] == "tool"}
        first_chunk: dict[str, Any] | None = None
        searches: dict[str, list[dict[str, Any]]] = {}
        values: dict[str, list[dict[str, Any]]] = {}
        for call in calls_made:
            function = call["function"]
            try:
                value = json.loads(results.get(call["id"], ""))
            except json.JSONDecodeError:
                continue  # an error message, not a result
            args = json.loads(function["arguments"])
            if function["name"] == "read_chunk":
                first_chunk = value
            elif function["name"] == "search_chunks":
                searches[args["query"]] = value
            elif function["name"] == "find_values":
                values[json.dumps(args, sort_keys=True)] = value["values"]
        texts = [(first_chunk["chunk_id"], first_chunk["text"])] if first_chunk else []
        texts += [(r["chunk_id"], r["text"]) for hits in searches.values() for r in hits]
        answers: dict[str, Any] = {}
        for spec in _fields(request):
            if spec.name in (*_READ_FROM_OPENING, *_READ_FROM_SEARCHES):
                answers[spec.name] = self._read(spec, first_chunk, texts)
            else:
                key = json.dumps(_find_values_args(spec), sort_keys=True)
                answers[spec.name] = self._found(spec, values.get(key, []))
        return ToolCall(id="call_submit", name="submit_findings",
                        arguments=json.dumps(answers, ensure_ascii=False))

    @staticmethod
    def _found(spec: FieldSpec, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ranked = [Candidate(f["value"], f["text"], 0, 0, f["score"]) for f in found]
        chosen = pick_many(spec, ranked) if spec.many else pick_one(ranked, spec)
        by_text = {f["text"]: f for f in found}
        return [{"value": c.value, "text": c.text,
                 "citations": [by_text[c.text]["chunk_id"]] if by_text[c.text]["chunk_id"]
                 else []} for c in chosen]

    @staticmethod
    def _central_sentences(texts: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
        """The sentences sharing most vocabulary with everything read: extractive key points."""
        candidates = _sentences(texts)
        weight = Counter(t for _, sentence in candidates for t in set(terms(sentence)))
        ranked = sorted(
            candidates,
            key=lambda cs: -sum(weight[t] for t in set(terms(cs[1]))) / (len(terms(cs[1])) + 4),
        )[:count]
        return ranked

    @staticmethod
    def _read(spec: FieldSpec, first_chunk: dict[str, Any] | None,
              texts: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The default fields read from the opening chunk and the searches' hits."""
        def one(value: str | None, chunk_id: str | None) -> list[dict[str, Any]]:
            if not value:
                return []
            return [{"value": value, "text": value, "citations": [chunk_id] if chunk_id else []}]

        if spec.name == "title":
            if not first_chunk:
                return []
            text = first_chunk["text"]
            spans = sentence_spans(text)
            first = " ".join(text[spans[0][0]:spans[0][1]].split()) if spans else ""
            line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            title = (first if 0 < len(first) <= 120 else line[:120]).lstrip("#-* ")
            return one(title.rstrip("."), first_chunk["chunk_id"])
        if spec.name == "key_points":
            central = OfflineBackend._central_sentences(texts, 3 if spec.many else 1)
            return [{"value": s, "text": s, "citations": [c]} for c, s in central]
        # document_type. The opening words say most about what a document is: count them
        # five times.
        opening = texts[0][1][:200] if texts else ""
        blob = (" ".join(t for _, t in texts) + (" " + opening) * 5).lower()
        scores = Counter({kind: sum(blob.count(w) for w in words)
                          for kind, words in _TYPES.items()})
        kind, score = scores.most_common(1)[0] if scores else ("document", 0)
        return one(kind if score else "document", texts[0][0] if texts else None)
