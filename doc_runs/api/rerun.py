"""POST /v1/documents/{id}/rerun: run one stored document again, alone (a fix was deployed, a
model changed). Thin like the upload: a signed message on the queue asks for a run of its own;
the queue sensor starts it."""

from __future__ import annotations

import uuid
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from doc_runs.api.documents import owned_document
from doc_runs.api.errors import ApiError, responses
from doc_runs.api.runtime import runtime
from doc_runs.api.schemas import UploadAccepted
from doc_runs.api.upload import checked_key, document_urls, signing_tenant
from doc_runs.auth import UnknownTenant
from doc_runs.logs import log_fact
from doc_runs.queue.envelope import Options, UploadRef, build_envelope
from doc_runs.queue.producer import bind_idempotency_key, enqueue, request_fingerprint

router = APIRouter()


@router.post(
    "/v1/documents/{document_id}/rerun",
    status_code=202,
    response_model=UploadAccepted,
    summary="Run one of your documents again, in a run of its own",
    description="Queues a signed message asking for a run of this document alone; its stages "
    "run again (model calls already answered are read from the cache) and its status reads "
    "`pending` until the new run records. Each call is a new request unless it repeats an "
    "`Idempotency-Key`.",
    responses=responses(400, 401, 404, 409, 500, 503),
)
async def rerun_document(
    request: Request,
    response: Response,
    document_id: Annotated[str, Depends(owned_document)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> UploadAccepted:
    state = runtime(request)
    tenant = state.store.owner(document_id)
    assert tenant is not None  # owned_document checked it
    signing_tenant(state, tenant)
    key = (checked_key(idempotency_key, "the Idempotency-Key header")
           if idempotency_key is not None else f"rerun:{document_id}:{uuid.uuid4().hex}")
    options = Options(alone=True)
    try:
        envelope = build_envelope(
            state.settings.secrets.current(), tenant=tenant,
            document=UploadRef(kind="upload", document_id=document_id),
            idempotency_key=key, options=options)
    except UnknownTenant:
        signing_tenant(state, tenant)
        raise
    try:
        bound = await run_in_threadpool(
            bind_idempotency_key, state.redis, state.names, tenant, key,
            request_fingerprint(document_id, options.extra_fields, alone=True),
            state.settings.idempotency_ttl_s)
        if not bound:
            raise ApiError(409, f"the idempotency key {key!r} was already used for another "
                           "request (another document, or this document's upload); send a "
                           "new key for a new request")
        entry_id = await run_in_threadpool(enqueue, state.redis, state.names, envelope)
    except redis.RedisError as exc:
        raise ApiError(503, f"the queue (Redis) failed ({type(exc).__name__}); nothing was "
                       "queued: ask again later") from None
    log_fact(f"re-run of document {document_id} queued as entry {entry_id}",
             document_id=document_id, tenant=tenant, stage="rerun", outcome="queued",
             entry_id=entry_id, idempotency_key=key)
    status_url, events_url = document_urls(request, document_id)
    response.headers["Location"] = status_url
    return UploadAccepted(document_id=document_id, status_url=status_url,
                          events_url=events_url, entry_id=entry_id, idempotency_key=key)
