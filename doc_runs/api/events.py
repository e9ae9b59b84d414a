"""GET /v1/documents/{id}/events: the document's outcome events as they happen (SSE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from doc_runs.api.documents import Tenant, owned_document
from doc_runs.api.errors import ApiError, responses
from doc_runs.api.event_stream import DocumentEvents
from doc_runs.api.runtime import runtime
from doc_runs.queue.streams import stream_id_tuple

router = APIRouter()

_SSE_DESCRIPTION = (
    "Server-Sent Events, one per stage result and one `final` with the document's end state: "
    "`id:` the stream entry id, `event:` the stage name (`document` ... `document_summary`, "
    "`final`) and `data:` the event as JSON (document_id, stage, status, reason, detail, "
    "run_id, at, source_id). Starts after Last-Event-ID (header or `last_event_id`), else "
    "from the oldest event kept. A `: heartbeat` comment comes when nothing else was sent "
    "for a while. The stream ends after `final`: close the EventSource there, or it "
    "reconnects and waits. An `error` event means Redis failed mid-stream: reconnect.")


def _start_id(header: str | None, query: str | None) -> str:
    given = header if header is not None else query
    if given is None or not given.strip():
        return "0-0"
    try:
        milliseconds, sequence = stream_id_tuple(given.strip())
        if max(milliseconds, sequence) >= 2**64:  # Redis ids are two 64-bit numbers
            raise ValueError(given)
    except ValueError:
        raise ApiError(400, "Last-Event-ID must be an event id this stream sent "
                       "(like 1700000000000-0)") from None
    return given.strip()


@router.get(
    "/v1/documents/{document_id}/events",
    summary="A document's outcome events, live (Server-Sent Events)",
    description=_SSE_DESCRIPTION,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "The event stream."},
               **responses(400, 401, 404, 503)},
)
async def document_events(
    request: Request,
    document_id: Annotated[str, Depends(owned_document)],
    tenant: Tenant,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(
        description="For clients that cannot set the Last-Event-ID header.")] = None,
) -> StreamingResponse:
    state = runtime(request)
    events = DocumentEvents(state.redis_async, state.names.events(tenant), document_id,
                            _start_id(last_event_id_header, last_event_id))
    try:
        # The first read happens before answering, so Redis being down is a 503 and not
        # a 200 stream that ends at once.
        first = await events.read()
    except RedisError as exc:
        raise ApiError(503, f"the events stream (Redis) did not answer ({type(exc).__name__})"
                       ) from None
    settings = state.settings
    return StreamingResponse(
        events.frames(first, settings.events_heartbeat_s, settings.events_max_open_s),
        media_type="text/event-stream",
        # No caching, and no buffering by nginx-like proxies: events must pass at once.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
