"""Helpers the test modules share (a test module imports from here, never from another test
module)."""

from __future__ import annotations

import redis

from doc_runs.core.store import DEFAULT_TENANT, document_hasher
from doc_runs.queue.consumer import Claim, claim_idempotency_keys
from doc_runs.queue.streams import StreamNames


def document_id_of(data: bytes, tenant: str = DEFAULT_TENANT) -> str:
    """The id the store gives these bytes stored for the tenant."""
    hasher = document_hasher(tenant)
    hasher.update(data)
    return hasher.hexdigest()


def claim_idempotency_key(client: redis.Redis, names: StreamNames, tenant: str, key: str,
                          entry_id: str, ttl_s: float, fingerprint: str = "") -> bool:
    """One claim, as the queue sensor makes them in bulk: True when this entry may act on
    (tenant, key), the first to claim it or the same entry read again after a failed tick."""
    (claim,) = claim_idempotency_keys(client, names, [(tenant, key, entry_id, fingerprint)],
                                      ttl_s)
    return claim is Claim.CLAIMED
