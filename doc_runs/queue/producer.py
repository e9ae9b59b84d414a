"""Putting envelopes on the documents stream."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from doc_runs.queue.envelope import MAX_MESSAGE_BYTES, EnvelopeV1
from doc_runs.queue.streams import StreamNames, as_text

if TYPE_CHECKING:
    import redis

ENVELOPE_FIELD = "envelope"


def enqueue(client: redis.Redis, names: StreamNames, envelope: EnvelopeV1) -> str:
    """XADD the envelope's JSON; return the new entry id. Never trims: only the consumer
    knows what is behind its cursor."""
    payload = envelope.model_dump_json().encode()
    if len(payload) > MAX_MESSAGE_BYTES:
        # Refused here rather than dead-lettered there: the producer can still act on it.
        raise ValueError(f"envelope is {len(payload)} bytes, more than {MAX_MESSAGE_BYTES}")
    return as_text(client.xadd(names.documents, {ENVELOPE_FIELD: payload}))


def default_idempotency_key(document_id: str, extra_fields: dict[str, Any]) -> str:
    """The same document with the same options is the same request, whoever sends it (the
    command line, an upload): sending it again starts nothing. A producer that wants it run
    again chooses another key on purpose."""
    options = json.dumps(extra_fields, sort_keys=True)
    return f"submit:{document_id}:{hashlib.sha256(options.encode()).hexdigest()[:16]}"


def request_fingerprint(document_id: str, extra_fields: dict[str, Any],
                        alone: bool = False) -> str:
    """What a request asks for: its document and options. One idempotency key, one of these.
    A re-run (`alone`) is another request than the upload of the same document: its key
    reused from the upload is a conflict, not a duplicate that would quietly run nothing."""
    options = json.dumps(extra_fields, sort_keys=True)
    asked = f"{document_id}\n{options}" + ("\nalone" if alone else "")
    return hashlib.sha256(asked.encode()).hexdigest()[:32]


def bind_idempotency_key(client: redis.Redis, names: StreamNames, tenant: str, key: str,
                         fingerprint: str, ttl_s: float) -> bool:
    """Bind the key to what it asks for before enqueueing; False when it is already bound to
    something else (a producer reusing a key for another document), so the producer can say
    so at once instead of the consumer dead-lettering the message later."""
    bound = names.idempotency(tenant, key) + ":request"
    if client.set(bound, fingerprint, nx=True, ex=max(int(ttl_s), 1)):
        return True
    held = client.get(bound)
    return held is None or as_text(held) == fingerprint
