"""Model backends behind one interface: `complete(ChatRequest) -> ChatResponse`.

`openai` talks to any OpenAI-compatible chat-completions endpoint through the official SDK,
with the SDK's own retries off (retries belong to the stage's policy). `offline` is
deterministic and network-free: an extractive stand-in that drives the same tool loop.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from doc_runs.core.agent.protocol import (
    ChatRequest,
    ChatResponse,
    ModelRateLimited,
    ModelRejected,
    ModelUnavailable,
    ToolCall,
    Usage,
)

# Model calls run here so a call can be abandoned at its deadline (shutting its connection
# down then ends the thread). A step bounds its own calls (CallLimitedBackend); a call queued
# here behind others is not charged the wait (see complete).
_CALLS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="doc-runs-model")
_in_flight = [0]
_in_flight_lock = threading.Lock()


def model_calls_in_flight() -> int:
    """Model calls whose thread is still busy, abandoned ones included."""
    with _in_flight_lock:
        return _in_flight[0]


class ModelBackend(Protocol):
    name: str
    model: str
    endpoint: str

    def complete(self, request: ChatRequest) -> ChatResponse: ...


def _retry_after_seconds(headers: Any, default: float) -> float:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return default


class OpenAIBackend:
    name = "openai"

    def __init__(self, base_url: str, api_key: str, model: str, timeout_s: float,
                 max_response_bytes: int = 2 * 1024 * 1024) -> None:
        # Imported here, as the SDK is: a run process without a model server (the offline
        # backend) starts without them.
        import httpx
        import openai

        from doc_runs.core.agent.abandonable_http import shared_ssl_context

        self.model = model
        self.endpoint = base_url
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._openai = openai
        # Every request goes through a client of its own (complete); this one's only needs
        # no TLS context of its own (loading one costs as much as a call).
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout_s,
            http_client=httpx.Client(verify=shared_ssl_context(), timeout=timeout_s),
        )

    def complete(self, request: ChatRequest) -> ChatResponse:
        from doc_runs.core.agent.abandonable_http import abandonable_client

        openai = self._openai
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.tools:
            kwargs["tools"] = request.tools
        # httpx's timeout bounds each read, not the whole answer: a server that trickles bytes
        # would never trip it. The whole call gets the same limit, counted from the start.
        # A call abandoned at that limit has its connection shut down, which ends its thread
        # too (see abandonable_http).
        running = threading.Event()
        http_client, sockets = abandonable_client(self.timeout_s)

        def call() -> Any:
            running.set()
            with _in_flight_lock:
                _in_flight[0] += 1
            try:
                with http_client:
                    client = self._client.with_options(http_client=http_client)
                    return client.chat.completions.with_raw_response.create(**kwargs)
            finally:
                with _in_flight_lock:
                    _in_flight[0] -= 1

        future = _CALLS.submit(call)
        running.wait()  # the deadline counts from the request, not from a queue before it
        try:
            raw = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            sockets.abandon()
            raise ModelUnavailable(f"no complete answer within {self.timeout_s:g} s") from None
        except openai.RateLimitError as exc:
            raise ModelRateLimited(_retry_after_seconds(exc.response.headers, 5.0),
                                   str(exc)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ModelRejected("model_auth", f"HTTP {exc.status_code}: {exc.message}") from None
        except (openai.BadRequestError, openai.NotFoundError,
                openai.UnprocessableEntityError) as exc:
            raise ModelRejected("model_error", f"HTTP {exc.status_code}: {exc.message}") from None
        except openai.APITimeoutError as exc:
            raise ModelUnavailable(f"timed out: {exc}") from None
        except openai.APIConnectionError as exc:
            raise ModelUnavailable(f"connection failed: {exc}") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise ModelUnavailable(f"HTTP {exc.status_code}: {exc.message}") from None
            raise ModelRejected("model_error", f"HTTP {exc.status_code}: {exc.message}") from None
        size = len(raw.http_response.content)
        if size > self.max_response_bytes:
            raise ModelRejected(
                "model_error", f"response of {size} bytes, limit {self.max_response_bytes}"
            )
        try:
            completion = raw.parse()
        except Exception as exc:
            raise ModelRejected("model_error", f"unparsable response: {exc}") from None
        if not completion.choices:
            raise ModelRejected("model_error", "the response has no choices")
        choice = completion.choices[0]
        message = choice.message
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        usage = completion.usage
        return ChatResponse(
            content=message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=Usage(
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            ),
        )


class CallLimitedBackend:
    """A backend with at most `limit` calls in flight across every thread that shares it.

    A step works on several documents at once: one document's agent has a single call in
    flight, another's summary several, and a document on its last call leaves slots unused.
    Starting more documents and bounding the calls here keeps the endpoint at the limit,
    not under it, and never over it."""

    def __init__(self, backend: ModelBackend, limit: int) -> None:
        if limit < 1:
            raise ValueError("the limit of model calls in flight must be at least 1")
        self.backend = backend
        self.name, self.model, self.endpoint = backend.name, backend.model, backend.endpoint
        self._slots = threading.BoundedSemaphore(limit)

    def complete(self, request: ChatRequest) -> ChatResponse:
        with self._slots:
            return self.backend.complete(request)
