"""One document's outcome events as Server-Sent Events, read from its tenant's events stream
with XREAD BLOCK. The stream entry id is the SSE id, so a client that reconnects with
Last-Event-ID resumes exactly after the last event it saw."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from doc_runs.queue.events import FINAL, OutcomeEvent
from doc_runs.queue.streams import as_text

logger = logging.getLogger(__name__)

_BATCH = 500
HEARTBEAT = b": heartbeat\n\n"


def sse_frame(entry_id: str, event: OutcomeEvent) -> bytes:
    # Entry ids and stage names are single lines and the JSON has no raw newlines, so each
    # field is one line, as the SSE format requires.
    stage = event.stage.replace("\r", " ").replace("\n", " ")
    return f"id: {entry_id}\nevent: {stage}\ndata: {event.model_dump_json()}\n\n".encode()


def sse_error(detail: str) -> bytes:
    return f"event: error\ndata: {json.dumps({'detail': detail})}\n\n".encode()


class DocumentEvents:
    """Reads the tenant's stream after a cursor and keeps this document's events. The cursor
    passes other documents' entries too, so each is read once per connection."""

    def __init__(self, client: AsyncRedis, stream: str, document_id: str,
                 after_id: str) -> None:
        self.client, self.stream, self.document_id = client, stream, document_id
        self.after_id = after_id

    async def read(self, block_ms: int | None = None) -> list[tuple[str, OutcomeEvent]]:
        answer: Any = await self.client.xread({self.stream: self.after_id}, count=_BATCH,
                                         block=block_ms)
        found: list[tuple[str, OutcomeEvent]] = []
        for _, entries in answer or []:
            for raw_id, fields in entries:
                entry_id = as_text(raw_id)
                self.after_id = entry_id
                try:
                    event = OutcomeEvent.from_fields(fields)
                except ValidationError:
                    # Not ours to judge or repair; a reader must not stop on it.
                    logger.warning("skipping malformed event %s on %s", entry_id, self.stream)
                    continue
                if event.document_id == self.document_id:
                    found.append((entry_id, event))
        return found

    async def frames(self, first: list[tuple[str, OutcomeEvent]], heartbeat_s: float,
                     max_open_s: float) -> AsyncIterator[bytes]:
        """SSE bytes: `first` (already read, which proved Redis answers), then what arrives,
        with a heartbeat comment whenever nothing was sent for `heartbeat_s`; ends after the
        document's final event, after `max_open_s`, or on a Redis error (as an `error`
        event: the client reconnects with Last-Event-ID)."""
        opened = last_sent = time.monotonic()
        pending = first
        while True:
            for entry_id, event in pending:
                yield sse_frame(entry_id, event)
                last_sent = time.monotonic()
                if event.stage == FINAL:
                    return
            now = time.monotonic()
            if now - opened >= max_open_s:
                return
            if now - last_sent >= heartbeat_s:
                yield HEARTBEAT
                last_sent = now
            wait_s = min(last_sent + heartbeat_s, opened + max_open_s) - now
            try:
                # BLOCK 0 would mean forever.
                pending = await self.read(block_ms=max(1, int(wait_s * 1000)))
            except RedisError as exc:
                yield sse_error(f"the events stream (Redis) failed ({type(exc).__name__}); "
                                "reconnect with Last-Event-ID")
                return
