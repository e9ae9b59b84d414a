"""What the queue sensor needs from Redis: read after its cursor, trim behind it, and claim
an idempotency key once."""

from __future__ import annotations

import redis

from doc_runs.queue.streams import StreamNames, as_text, earlier_stream_id, stream_id_tuple

# SET NX and, when the key was there, its value, in one step: with two round trips the key
# could expire in between and a re-read would look like a duplicate.
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
"""


def read_after(client: redis.Redis, stream: str, after_id: str | None,
               count: int) -> list[tuple[str, dict[str, bytes]]]:
    """Up to `count` entries strictly after `after_id` (from the start when None), oldest
    first; field names as str, values as the bytes the producer wrote."""
    if count < 1:
        raise ValueError("count must be at least 1")
    start = "-" if after_id is None else f"({after_id}"
    entries = client.xrange(stream, min=start, max="+", count=count)
    return [
        (as_text(entry_id),
         {as_text(k): v.encode() if isinstance(v, str) else v for k, v in fields.items()})
        for entry_id, fields in entries
    ]


def trim_behind(client: redis.Redis, stream: str, cursor_id: str, retention_s: float,
                now_s: float) -> int:
    """Delete entries older than `retention_s` seconds that are also before the cursor;
    the cursor's entry and everything after it stay. Returns how many were deleted."""
    if retention_s < 0:
        raise ValueError("retention_s must not be negative")
    stream_id_tuple(cursor_id)  # a malformed cursor would make MINID mean something else
    # MINID deletes ids strictly below the threshold; exact (not "~") so the bound holds.
    threshold = cursor_id
    if retention_s > 0:
        # Only with a retention: at 0, entries of the current millisecond (or stamped by a
        # Redis clock ahead of ours) would otherwise outlive the "everything behind".
        retained_from = f"{max(0, int((now_s - retention_s) * 1000))}-0"
        threshold = earlier_stream_id(cursor_id, retained_from)
    return int(client.xtrim(stream, minid=threshold, approximate=False))


def claim_idempotency_key(client: redis.Redis, names: StreamNames, tenant: str, key: str,
                          entry_id: str, ttl_s: float) -> bool:
    """True when this entry may act on (tenant, key): the first to claim it, or the same
    entry read again after a failed tick. False for a genuine duplicate."""
    ttl_ms = int(ttl_s * 1000)
    if ttl_ms < 1:
        raise ValueError("ttl_s must be positive")
    claim = client.register_script(_CLAIM_SCRIPT)
    return bool(claim(keys=[names.idempotency(tenant, key)], args=[entry_id, ttl_ms]))


def claim_idempotency_keys(client: redis.Redis, names: StreamNames,
                           claims: list[tuple[str, str, str]], ttl_s: float) -> list[bool]:
    """`claim_idempotency_key` for many (tenant, key, entry id) in one round trip; claims run
    in order, so of two entries with one key in the same page the first wins."""
    ttl_ms = int(ttl_s * 1000)
    if ttl_ms < 1:
        raise ValueError("ttl_s must be positive")
    if not claims:
        return []
    claim = client.register_script(_CLAIM_SCRIPT)
    pipeline = client.pipeline(transaction=False)
    for tenant, key, entry_id in claims:
        claim(keys=[names.idempotency(tenant, key)], args=[entry_id, ttl_ms], client=pipeline)
    return [bool(answer) for answer in pipeline.execute()]
