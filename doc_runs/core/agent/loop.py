"""The tool-calling loop that answers the findings fields for one document.

Bounded everywhere: at most `max_steps` model calls; truncated or invalid payloads are
answered with a re-prompt asking for less (never a blind repeat of the same request), at
most `max_reprompts` times; tool errors go back to the model, at most `max_tool_errors`.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from pydantic import BaseModel, Field

from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.findings import (
    FieldSpec,
    Findings,
    FindingsInvalid,
    submit_schema,
    validate_findings,
)
from doc_runs.core.agent.ledger import CallRecord
from doc_runs.core.agent.protocol import ChatRequest, ChatResponse
from doc_runs.core.agent.tools import TOOLS_VERSION, DocumentTools, ToolError
from doc_runs.core.outcomes import DocumentRejected, Reason

SUBMIT = "submit_findings"
SYSTEM_PROMPT = (
    "You extract facts from ONE document using the tools given. Search and read before you "
    "answer. When you know the answers, call submit_findings once. Every value must be "
    "supported by citations: chunk ids exactly as the tools return them, or p<N> for page N. "
    "Use null or [] when the document does not say."
)


class AgentLimits(BaseModel):
    max_steps: int = Field(12, gt=0)
    max_reprompts: int = Field(2, ge=0)
    max_tool_errors: int = Field(6, ge=0)
    max_tokens: int = Field(1024, gt=0, description="Most tokens per model reply.")
    temperature: float = 0.0


def _valid_json(text: str) -> bool:
    try:
        json.loads(text or "{}")
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def _user_prompt(fields: list[FieldSpec], tools: DocumentTools) -> str:
    listing = "\n".join(f"- {f.name}{' (list)' if f.many else ''}: {f.description}"
                        for f in fields)
    chunk_ids = ", ".join(c.id for c in tools.ordered[:40])
    more = f" (and {len(tools.ordered) - 40} more)" if len(tools.ordered) > 40 else ""
    return (f"Fields to answer:\n{listing}\n\nThe document has {len(tools.pages)} page(s) and "
            f"{len(tools.ordered)} chunk(s): {chunk_ids}{more}.")


class FindingsAgent:
    def __init__(self, client: ModelClient, tools: DocumentTools, fields: list[FieldSpec],
                 limits: AgentLimits, document_id: str) -> None:
        self.client = client
        self.tools = tools
        self.fields = fields
        self.limits = limits
        self.document_id = document_id
        self.tool_specs = [*tools.specs(), {"type": "function", "function": {
            "name": SUBMIT, "description": "Submit the answers to every field, with citations.",
            "parameters": submit_schema(fields)}}]

    def _request(self, messages: list[dict[str, Any]]) -> ChatRequest:
        return ChatRequest(
            backend=self.client.backend.name, model=self.client.backend.model,
            messages=messages, tools=self.tool_specs,
            max_tokens=self.limits.max_tokens, temperature=self.limits.temperature,
        )

    def _run_tool(self, name: str, arguments: str) -> str:
        """Tool results are cached like model calls (keyed by document, the text the tools
        answer from, tool and arguments)."""
        key = "tool-" + hashlib.sha256(json.dumps(
            [self.document_id, self.tools.digest, TOOLS_VERSION, name, arguments]
        ).encode()).hexdigest()
        cached = self.client.store.read_cached(key)
        started = time.perf_counter()
        if cached is not None:
            result = cached.decode()
        else:
            result = self.tools.call(name, arguments)  # ToolError is not cached: no result
            self.client.store.write_cached(key, result.encode())
        self.client.ledger.add(CallRecord(kind="tool", name=name, cached=cached is not None,
                                          latency_s=round(time.perf_counter() - started, 4)))
        return result

    def run(self) -> Findings:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _user_prompt(self.fields, self.tools)},
        ]
        reprompts = tool_errors = 0

        def reprompt(note: str) -> None:
            nonlocal reprompts
            reprompts += 1
            if reprompts > self.limits.max_reprompts:
                raise DocumentRejected(Reason.INVALID_TOOL_PAYLOAD,
                                       f"still invalid after {self.limits.max_reprompts} "
                                       f"re-prompts: {note}")
            messages.append({"role": "user", "content": note})

        for _ in range(self.limits.max_steps):
            response: ChatResponse = self.client.complete(self._request(messages))
            broken = [c.name for c in response.tool_calls if not _valid_json(c.arguments)]
            if response.finish_reason == "length" or broken:
                # The reply was cut off: do not keep it, ask for something smaller.
                reprompt("Your previous reply was cut off or its tool arguments were not "
                         "valid JSON. Make ONE tool call with short arguments; in "
                         "submit_findings keep each value brief and at most 5 list items.")
                continue
            if not response.tool_calls:
                messages.append(response.assistant_message())
                reprompt(f"Answer by calling {SUBMIT}; plain text is not read.")
                continue
            messages.append(response.assistant_message())
            pending_error: str | None = None
            findings: Findings | None = None
            for call in response.tool_calls:
                if call.name == SUBMIT:
                    try:
                        findings = validate_findings(
                            call.arguments, self.fields, set(self.tools.chunks),
                            set(self.tools.pages))
                        content = "accepted"
                    except FindingsInvalid as exc:
                        pending_error = str(exc)
                        content = f"rejected: {exc}"
                else:
                    try:
                        content = self._run_tool(call.name, call.arguments)
                    except ToolError as exc:
                        tool_errors += 1
                        if tool_errors > self.limits.max_tool_errors:
                            raise DocumentRejected(
                                Reason.INVALID_TOOL_PAYLOAD,
                                f"{tool_errors} failed tool calls; last: {exc}") from None
                        content = f"error: {exc}"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            if findings is not None:
                return findings
            if pending_error is not None:
                reprompt(f"{SUBMIT} was rejected: {pending_error}. Fix it and call it again.")
        raise DocumentRejected(Reason.STEP_LIMIT,
                               f"no valid {SUBMIT} within {self.limits.max_steps} model calls")
