"""What the queue sensor needs from Redis: read after its cursor, trim behind it, and claim
an idempotency key once."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from doc_runs.queue.streams import StreamNames, as_text, earlier_stream_id, stream_id_tuple

if TYPE_CHECKING:
    import redis

# SET NX and, when the key was there, compare with its value, in one step: with two round
# trips the key could expire in between and a re-read would look like a duplicate. The value
# is "<entry id> <fingerprint of what was asked>". Answers: 1 claimed (or the same entry read
# again), 0 a duplicate of the same request, 2 the key was used for a different request.
_CLAIM_SCRIPT = """
local value = ARGV[1] .. ' ' .. ARGV[3]
if redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then
  return 1
end
local held = redis.call('GET', KEYS[1])
if held == value then
  return 1
end
local space = string.find(held, ' ', 1, true)
if space and string.sub(held, space + 1) == ARGV[3] then
  return 0
end
return 2
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


class Claim(IntEnum):
    DUPLICATE = 0  # the same request again: no run
    CLAIMED = 1
    CONFLICT = 2  # the key was used for another document or other options: poison


def claim_idempotency_keys(client: redis.Redis, names: StreamNames,
                           claims: list[tuple[str, str, str, str]], ttl_s: float
                           ) -> list[Claim]:
    """Claim many (tenant, key, entry id, request fingerprint) in one round trip; claims run
    in order, so of two entries with one key in the same page the first wins."""
    ttl_ms = int(ttl_s * 1000)
    if ttl_ms < 1:
        raise ValueError("ttl_s must be positive")
    if not claims:
        return []
    claim = client.register_script(_CLAIM_SCRIPT)
    pipeline = client.pipeline(transaction=False)
    for tenant, key, entry_id, fingerprint in claims:
        claim(keys=[names.idempotency(tenant, key)], args=[entry_id, ttl_ms, fingerprint],
              client=pipeline)
    return [Claim(int(answer)) for answer in pipeline.execute()]
