"""Queue messages the tests make themselves, signed by the documented rule rather than by the
code under test."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNING_KEYS = {"acme": b"acme-signing-key", "beta": b"beta-signing-key"}
TOKENS = {"acme": "acme-token-1", "beta": "beta-token-1"}
DOCUMENT_ID = "ab" * 32


def envelope_dict(**changes: Any) -> dict[str, Any]:
    """A valid unsigned envelope as a producer would write it, with `changes` applied."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "idempotency_key": "order-42",
        "tenant": "acme",
        "document": {"kind": "upload", "document_id": DOCUMENT_ID},
        "options": {"extra_fields": {}},
        "created_at": "2025-03-01T12:00:00Z",
    }
    data.update(changes)
    return data


def signature_of(data: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the sorted, compact, ASCII JSON of every field but the signature."""
    fields = {k: v for k, v in data.items() if k != "signature"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def signed(data: dict[str, Any], key: bytes | None = None) -> bytes:
    """`data` as the JSON bytes of a message, signed with `key` (default: its tenant's)."""
    key = SIGNING_KEYS[data["tenant"]] if key is None else key
    return json.dumps({**data, "signature": signature_of(data, key)}).encode()
