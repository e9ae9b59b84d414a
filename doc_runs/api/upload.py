"""POST /v1/documents: authenticate, store the upload once, enqueue a signed message through
the same producer the command line uses. No document work happens here."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from doc_runs.api.bearer import authenticated_tenant
from doc_runs.api.errors import ApiError, responses
from doc_runs.api.runtime import Runtime, runtime
from doc_runs.api.schemas import UploadAccepted
from doc_runs.api.upload_form import (
    FORM_OVERHEAD_BYTES,
    UploadForm,
    multipart_boundary,
    receive_form,
)
from doc_runs.auth import UnknownTenant
from doc_runs.core.catalog import CatalogUnavailable
from doc_runs.core.store import TooLarge
from doc_runs.logs import log_fact
from doc_runs.queue.envelope import MAX_IDEMPOTENCY_KEY, Options, UploadRef, build_envelope
from doc_runs.queue.producer import (
    bind_idempotency_key,
    default_idempotency_key,
    enqueue,
    request_fingerprint,
)

router = APIRouter()

_MAX_KEY_CHARS = MAX_IDEMPOTENCY_KEY  # checked before anything is stored

_REQUEST_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "The document; its file name is kept byte for byte."},
            "idempotency_key": {
                "type": "string", "maxLength": _MAX_KEY_CHARS,
                "description": "Default: the document and its options, so the same upload "
                "again starts nothing. Also accepted as the Idempotency-Key header."},
            "extra_fields": {
                "type": "string",
                "description": 'JSON object of your own findings fields, name to a '
                'description (a text field) or to {description, type, many, choices, hint}, '
                'e.g. {"governing_law": {"type": "place", "description": "the law that '
                'governs it"}}. Types: text, date, organization, person, party, place, '
                'duration, money, number, enum.'},
        },
    }}},
}


def signing_tenant(state: Runtime, tenant: str) -> None:
    secrets = state.settings.secrets.current().tenant_secrets(tenant)
    if secrets is None or secrets.signing_key is None:
        raise ApiError(500, f"tenant {tenant!r} has a token but no signing key on this server, "
                       f"so its messages cannot be signed: run `doc-runs tenant add {tenant}` "
                       "(it adds a key when there is none) or set DOC_RUNS_SIGNING_KEYS")


def checked_key(key: str, where: str) -> str:
    # It becomes a Dagster run key, shown in the UI and logs.
    if not 1 <= len(key) <= _MAX_KEY_CHARS or not key.isprintable():
        raise ApiError(400, f"{where} must be 1 to {_MAX_KEY_CHARS} printable characters")
    return key


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Content-Length is not a number") from None


def _options(form: UploadForm) -> Options:
    raw = form.fields.get("extra_fields")
    if raw is None:
        return Options()
    try:
        return Options(extra_fields=json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"extra_fields is not JSON: {exc.msg} at column {exc.colno}"
                       ) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'extra_fields'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        raise ApiError(400, "extra_fields must be a JSON object of field name (lower-case "
                       "letters, digits, _) to a description or to {description, type, "
                       f"many, choices, hint}}: {problems}") from None


def _idempotency_key(header: str | None, form: UploadForm) -> str | None:
    field = form.fields.get("idempotency_key")
    if header is not None and field is not None and header != field:
        raise ApiError(400, "the Idempotency-Key header and the idempotency_key field differ")
    key = field if field is not None else header
    return None if key is None else checked_key(key, "idempotency_key")


def document_urls(request: Request, document_id: str) -> tuple[str, str]:
    root = request.scope.get("root_path", "")
    return (root + request.app.url_path_for("get_document", document_id=document_id),
            root + request.app.url_path_for("document_events", document_id=document_id))


def forget_unqueued(state: Runtime, document_id: str) -> None:
    """The upload was refused after its document was listed as pending: unlisted again, so
    that a document no run will take does not read pending forever. Best effort: the answer
    the client gets is the refusal, whatever the catalog says."""
    try:
        state.catalog.forget_unbatched(document_id)
    except CatalogUnavailable as exc:
        log_fact(f"document {document_id} refused but still listed as pending: {exc}",
                 level=logging.WARNING, document_id=document_id, stage="upload",
                 outcome="refused")


@router.post(
    "/v1/documents",
    status_code=202,
    response_model=UploadAccepted,
    summary="Upload a document and queue it for processing",
    description="Stores the `file` part (content-addressed per tenant: the same bytes again "
    "are the same document) and puts a signed message on the documents stream; the queue "
    "sensor starts the run. Answers at once with where to read the status and events.",
    responses=responses(400, 401, 409, 413, 415, 500, 503),
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def upload_document(
    request: Request,
    response: Response,
    tenant: Annotated[str, Depends(authenticated_tenant)],
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> UploadAccepted:
    state = runtime(request)
    # Everything that can be refused without the body is refused before reading it.
    signing_tenant(state, tenant)
    boundary = multipart_boundary(request.headers.get("content-type"))
    max_file = state.settings.max_upload_bytes
    max_body = max_file + FORM_OVERHEAD_BYTES
    length = _content_length(request)
    if length is not None and length > max_body:
        raise ApiError(413, f"the body is {length} bytes; documents may be at most "
                       f"{max_file} bytes")
    if idempotency_key_header is not None:
        checked_key(idempotency_key_header, "the Idempotency-Key header")

    with state.store.begin_upload(tenant=tenant, max_bytes=max_file) as upload:
        try:
            form = await receive_form(request.stream(), boundary, upload, max_body)
        except TooLarge:
            raise ApiError(413, f"the document is larger than {max_file} bytes") from None
        except ClientDisconnect:
            # Nobody reads this answer; leaving the block aborts the upload.
            raise ApiError(400, "the client disconnected before the body ended") from None
        if not form.has_file:
            raise ApiError(400, "no `file` part: send the document as the form field `file`")
        if form.file_size == 0:
            raise ApiError(400, "the file is empty (0 bytes); nothing was stored")
        options = _options(form)
        key = _idempotency_key(idempotency_key_header, form)
        document_id = await run_in_threadpool(upload.commit)
    if form.file_name is not None:
        # Before the message: the run's first stage reads the names to know the claimed type.
        await run_in_threadpool(state.store.add_source_name, document_id, form.file_name)
    # Listed as pending for its tenant from now on, before the queue sensor batches it.
    listed_now = await run_in_threadpool(state.catalog.note_stored, document_id, tenant,
                                         state.store.source_names(document_id))

    key = key or default_idempotency_key(document_id, options.extra_fields)
    try:
        envelope = build_envelope(
            state.settings.secrets.current(), tenant=tenant,
            document=UploadRef(kind="upload", document_id=document_id),
            idempotency_key=key, options=options)
    except UnknownTenant:
        signing_tenant(state, tenant)  # the secrets changed since the check: say how to fix
        raise
    try:
        bound = await run_in_threadpool(
            bind_idempotency_key, state.redis, state.names, tenant, key,
            request_fingerprint(document_id, options.extra_fields),
            state.settings.idempotency_ttl_s)
        if not bound:
            if listed_now:
                await run_in_threadpool(forget_unqueued, state, document_id)
            raise ApiError(409, f"the idempotency key {key!r} was already used for another "
                           "document or other options; send a new key for a new request")
        entry_id = await run_in_threadpool(enqueue, state.redis, state.names, envelope)
    except redis.RedisError as exc:
        if listed_now:  # an earlier upload of the same bytes may be waiting on the queue
            await run_in_threadpool(forget_unqueued, state, document_id)
        # Down, timing out, read-only or out of memory: all mean "not now" to the client.
        raise ApiError(503, f"the queue (Redis) failed ({type(exc).__name__}), so the "
                       f"document {document_id} is stored but not queued: send the same upload "
                       "again later") from None
    log_fact(f"upload of document {document_id} queued as entry {entry_id}",
             document_id=document_id, tenant=tenant, stage="upload", outcome="queued",
             entry_id=entry_id, idempotency_key=key)
    status_url, events_url = document_urls(request, document_id)
    response.headers["Location"] = status_url
    return UploadAccepted(document_id=document_id, status_url=status_url,
                          events_url=events_url, entry_id=entry_id, idempotency_key=key)
