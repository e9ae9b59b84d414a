"""A backend behind the call cache and the ledger: what the stages call."""

from __future__ import annotations

import time

from doc_runs.core.agent.backends import ModelBackend
from doc_runs.core.agent.ledger import CallRecord, DocumentLedger
from doc_runs.core.agent.protocol import ChatRequest, ChatResponse, ModelRejected
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs.core.store import DocumentStore

_REJECTION_REASONS = {"model_auth": Reason.MODEL_AUTH, "model_error": Reason.MODEL_ERROR}


class ModelClient:
    """Each request is answered from the cache when the same request (model, messages, tools,
    parameters, endpoint) was answered before: re-executing a run pays only for the calls
    that did not complete."""

    def __init__(self, backend: ModelBackend, store: DocumentStore, ledger: DocumentLedger
                 ) -> None:
        self.backend = backend
        self.store = store
        self.ledger = ledger

    def complete(self, request: ChatRequest) -> ChatResponse:
        key = "model-" + request.cache_key(self.backend.endpoint)
        cached = self.store.read_cached(key)
        if cached is not None:
            response = ChatResponse.model_validate_json(cached)
            # Answered from the cache: nothing was sent, nothing is spent, in every figure
            # (metadata, command line, report, ledger CSV).
            self.ledger.add(CallRecord(kind="model", name=request.model, cached=True))
            return response
        self.ledger.check_budget()
        started = time.perf_counter()
        try:
            response = self.backend.complete(request)
        except ModelRejected as rejected:
            raise DocumentRejected(_REJECTION_REASONS.get(rejected.reason, Reason.MODEL_ERROR),
                                   rejected.detail) from None
        self.ledger.add(CallRecord(
            kind="model", name=request.model, cached=False,
            tokens_in=response.usage.prompt_tokens,
            tokens_out=response.usage.completion_tokens,
            latency_s=round(time.perf_counter() - started, 4),
        ))
        self.store.write_cached(key, response.model_dump_json().encode())
        return response
