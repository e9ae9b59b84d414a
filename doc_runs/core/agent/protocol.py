"""The chat-completions shapes every backend speaks, and the typed ways a model call fails."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it; may be truncated or invalid


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatRequest(BaseModel):
    backend: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    max_tokens: int = 1024
    temperature: float = 0.0

    def cache_key(self, endpoint: str) -> str:
        """Same request to the same endpoint, same key: what the call cache is keyed by."""
        canonical = json.dumps(
            {"endpoint": endpoint, **self.model_dump()}, sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class ChatResponse(BaseModel):
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)

    def assistant_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


class ModelCallError(Exception):
    """Base of the typed failures of a model call."""


class ModelRateLimited(ModelCallError):
    """HTTP 429: wait what the server said, then try again."""

    def __init__(self, retry_after_s: float, detail: str) -> None:
        super().__init__(f"rate limited, retry after {retry_after_s:g} s: {detail}")
        self.retry_after_s = retry_after_s


class ModelUnavailable(ModelCallError):
    """5xx, connection errors, timeouts: transient, retried by the stage's RetryPolicy."""


class ModelRejected(ModelCallError):
    """400/401/403/404, a malformed answer: permanent for this request."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
