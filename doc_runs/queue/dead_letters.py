"""Dead letters: poison messages kept byte for byte with their reason, to show, purge or
replay.

One dead letter per distinct payload (its id is a hash of the bytes): a tick that failed and
read the same poison message again, or the same bad payload sent twice, counts up
`times_seen` on the one record instead of adding another. The stream `dead_letters` gives the
order; the hash `dead_letter:{id}` holds the current state."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from doc_runs.auth import Secrets
from doc_runs.queue.envelope import PoisonReason, parse_envelope
from doc_runs.queue.producer import ENVELOPE_FIELD
from doc_runs.queue.streams import StreamNames, as_text

if TYPE_CHECKING:
    import redis

_DEAD_LETTER_ID_RE = re.compile(r"^[0-9a-f]{20}$")

# Check-and-write in one step, so two consumers (or a retried tick) seeing the same payload
# at once still make one record.
_RECORD_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'times_seen', 1)
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[6], 'reason', ARGV[3], 'detail', ARGV[4])
  return redis.call('HGETALL', KEYS[1])
end
local fields = {'id', ARGV[1], 'source_entry_id', ARGV[2], 'reason', ARGV[3],
                'detail', ARGV[4], 'payload', ARGV[5], 'first_seen', ARGV[6],
                'last_seen', ARGV[6], 'times_seen', '1'}
local entry = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HSET', KEYS[1], 'stream_entry_id', entry, unpack(fields))
return redis.call('HGETALL', KEYS[1])
"""

_PURGE_SCRIPT = """
local entry = redis.call('HGET', KEYS[1], 'stream_entry_id')
if not entry then
  return 0
end
redis.call('XDEL', KEYS[2], entry)
redis.call('DEL', KEYS[1])
return 1
"""

# Enqueue and purge together: a replay that enqueued but kept its dead letter could be
# replayed twice; one that purged but did not enqueue would lose the message.
_REPLAY_SCRIPT = """
local entry = redis.call('HGET', KEYS[1], 'stream_entry_id')
if not entry then
  return false
end
local new_entry = redis.call('XADD', KEYS[3], '*', ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], entry)
redis.call('DEL', KEYS[1])
return new_entry
"""


class DeadLetterNotFound(LookupError):
    pass


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source_entry_id: str
    reason: str
    detail: str
    payload: bytes
    first_seen: str
    last_seen: str
    times_seen: int
    stream_entry_id: str

    def payload_text(self) -> str:
        return self.payload.decode("utf-8", errors="backslashreplace")


def dead_letter_id(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:20]


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_hash(flat_or_mapping: Sequence[bytes] | dict[bytes, bytes]) -> DeadLetter:
    if isinstance(flat_or_mapping, dict):
        mapping = flat_or_mapping
    else:
        mapping = dict(zip(flat_or_mapping[::2], flat_or_mapping[1::2], strict=True))
    fields = {as_text(k): v for k, v in mapping.items()}
    payload = fields.pop("payload")
    return DeadLetter.model_validate({
        **{k: as_text(v) for k, v in fields.items()},
        "payload": payload.encode() if isinstance(payload, str) else payload,
    })


def dead_letter(client: redis.Redis, names: StreamNames, *, source_entry_id: str,
                payload: bytes, reason: PoisonReason | str, detail: str,
                now: datetime | None = None) -> DeadLetter:
    """Record a poison message, or count it again when the same payload is already here."""
    letter_id = dead_letter_id(payload)
    record = client.register_script(_RECORD_SCRIPT)
    flat = record(
        keys=[names.dead_letter(letter_id), names.dead_letters],
        args=[letter_id, source_entry_id, str(reason), detail, payload,
              _iso_utc(now or datetime.now(UTC))],
    )
    return _from_hash(flat)


@dataclass(frozen=True)
class PoisonMessage:
    source_entry_id: str
    payload: bytes
    reason: PoisonReason | str
    detail: str


def dead_letter_many(client: redis.Redis, names: StreamNames, messages: Sequence[PoisonMessage],
                     now: datetime | None = None) -> None:
    """`dead_letter` for many messages in one round trip (a page of the stream)."""
    if not messages:
        return
    record = client.register_script(_RECORD_SCRIPT)
    seen = _iso_utc(now or datetime.now(UTC))
    pipeline = client.pipeline(transaction=False)
    for message in messages:
        letter_id = dead_letter_id(message.payload)
        record(keys=[names.dead_letter(letter_id), names.dead_letters],
               args=[letter_id, message.source_entry_id, str(message.reason), message.detail,
                     message.payload, seen], client=pipeline)
    pipeline.execute()


def get_dead_letter(client: redis.Redis, names: StreamNames,
                    letter_id: str) -> DeadLetter | None:
    # The id may come from an operator's command line: never let it shape the key freely.
    if not _DEAD_LETTER_ID_RE.fullmatch(letter_id):
        return None
    mapping = client.hgetall(names.dead_letter(letter_id))
    return _from_hash(mapping) if mapping else None


def list_dead_letters(client: redis.Redis, names: StreamNames,
                      limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` dead letters, the first seen first."""
    letters: list[DeadLetter] = []
    start = "-"
    while len(letters) < limit:
        entries = client.xrange(names.dead_letters, min=start, max="+", count=limit)
        if not entries:
            break
        pipeline = client.pipeline(transaction=False)
        for _, fields in entries:
            by_name = {as_text(k): v for k, v in fields.items()}
            pipeline.hgetall(names.dead_letter(as_text(by_name["id"])))
        for mapping in pipeline.execute():
            # A purge between the two reads leaves a stream entry without its hash.
            if mapping and len(letters) < limit:
                letters.append(_from_hash(mapping))
        start = f"({as_text(entries[-1][0])}"
    return letters


def purge_dead_letter(client: redis.Redis, names: StreamNames, letter_id: str) -> bool:
    """Delete a dead letter; False when there was none with that id."""
    if not _DEAD_LETTER_ID_RE.fullmatch(letter_id):
        return False
    purge = client.register_script(_PURGE_SCRIPT)
    return bool(purge(keys=[names.dead_letter(letter_id), names.dead_letters]))


def replay_dead_letter(client: redis.Redis, names: StreamNames, letter_id: str,
                       secrets: Secrets, payload: bytes | None = None) -> str:
    """Put the dead letter's payload (or a corrected one) back on the documents stream and
    delete the dead letter; return the new entry id. A payload that is still poison raises
    `Poison` and the dead letter stays."""
    letter = get_dead_letter(client, names, letter_id)
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter {letter_id!r}")
    replayed = letter.payload if payload is None else payload
    parse_envelope(replayed, secrets)
    replay = client.register_script(_REPLAY_SCRIPT)
    new_entry = replay(
        keys=[names.dead_letter(letter_id), names.dead_letters, names.documents],
        args=[ENVELOPE_FIELD, replayed],
    )
    if new_entry is None:
        # Purged or replayed by someone else since we read it: nothing was enqueued.
        raise DeadLetterNotFound(f"dead letter {letter_id!r} is gone")
    return as_text(new_entry)
