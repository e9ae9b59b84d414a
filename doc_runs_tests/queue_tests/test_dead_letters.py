from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from doc_runs.auth import Secrets, load_secrets
from doc_runs.queue.consumer import read_after
from doc_runs.queue.dead_letters import (
    DeadLetterNotFound,
    dead_letter,
    get_dead_letter,
    list_dead_letters,
    purge_dead_letter,
    replay_dead_letter,
)
from doc_runs.queue.envelope import Poison, PoisonReason, parse_envelope
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.helpers import claim_idempotency_key
from doc_runs_tests.queue_tests.messages import SIGNING_KEYS, envelope_dict, signed

Queue = tuple[redis.Redis, StreamNames]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _record(queue: Queue, payload: bytes, *, entry: str = "1-0",
            reason: PoisonReason = PoisonReason.invalid_json, detail: str = "d",
            now: datetime = T0):
    client, names = queue
    return dead_letter(client, names, source_entry_id=entry, payload=payload, reason=reason,
                       detail=detail, now=now)


def test_a_dead_letter_keeps_everything(queue: Queue) -> None:
    client, names = queue
    payload = b"\xff\xfe not json \x00"
    letter = _record(queue, payload, entry="1700000000000-0", detail="not UTF-8 at byte 0")
    assert letter.id == hashlib.sha256(payload).hexdigest()[:20]
    assert letter.payload == payload
    assert letter.payload_text() == "\\xff\\xfe not json \x00"
    assert letter.reason == "invalid_json"
    assert letter.detail == "not UTF-8 at byte 0"
    assert letter.source_entry_id == "1700000000000-0"
    assert letter.first_seen == letter.last_seen == "2025-03-01T12:00:00.000Z"
    assert letter.times_seen == 1
    [(stream_entry_id, fields)] = client.xrange(names.dead_letters)
    assert letter.stream_entry_id == stream_entry_id.decode()
    assert fields[b"payload"] == payload
    assert fields[b"reason"] == b"invalid_json"
    assert get_dead_letter(client, names, letter.id) == letter


def test_the_same_payload_again_is_counted_not_duplicated(queue: Queue) -> None:
    client, names = queue
    first = _record(queue, b"[1]", entry="5-0", detail="first")
    again = _record(queue, b"[1]", entry="5-0", detail="first", now=T0 + timedelta(seconds=30))
    third = _record(queue, b"[1]", entry="9-0", reason=PoisonReason.invalid_envelope,
                    detail="latest", now=T0 + timedelta(minutes=2))
    assert first.id == again.id == third.id
    assert [first.times_seen, again.times_seen, third.times_seen] == [1, 2, 3]
    assert third.first_seen == "2025-03-01T12:00:00.000Z"
    assert third.last_seen == "2025-03-01T12:02:00.000Z"
    assert (third.reason, third.detail) == ("invalid_envelope", "latest")
    assert third.source_entry_id == "5-0"
    assert third.stream_entry_id == first.stream_entry_id
    assert client.xlen(names.dead_letters) == 1
    assert list_dead_letters(client, names) == [third]


def test_list_is_first_seen_first_and_get_shows_one(queue: Queue) -> None:
    client, names = queue
    a = _record(queue, b"a")
    b = _record(queue, b"b")
    c = _record(queue, b"c")
    a = _record(queue, b"a")  # seen again: it keeps its place
    assert [d.payload for d in list_dead_letters(client, names)] == [b"a", b"b", b"c"]
    assert list_dead_letters(client, names, limit=2) == [a, b]
    assert get_dead_letter(client, names, c.id) == c
    assert get_dead_letter(client, names, "0" * 20) is None
    assert get_dead_letter(client, names, "../" + c.id) is None


def test_purge(queue: Queue) -> None:
    client, names = queue
    a, b, c = (_record(queue, p) for p in (b"a", b"b", b"c"))
    assert purge_dead_letter(client, names, b.id)
    assert [d.id for d in list_dead_letters(client, names)] == [a.id, c.id]
    assert get_dead_letter(client, names, b.id) is None
    assert client.xlen(names.dead_letters) == 2
    assert not client.exists(names.dead_letter(b.id))
    assert not purge_dead_letter(client, names, b.id)
    assert not purge_dead_letter(client, names, "not-an-id")
    # Purged, then seen again: a new record, counted from one.
    again = _record(queue, b"b", now=T0 + timedelta(hours=1))
    assert again.times_seen == 1
    assert [d.id for d in list_dead_letters(client, names)] == [a.id, c.id, b.id]


def test_list_skips_entries_whose_record_is_gone(queue: Queue) -> None:
    client, names = queue
    letters = [_record(queue, bytes([n])) for n in range(5)]
    client.delete(names.dead_letter(letters[0].id), names.dead_letter(letters[2].id))
    assert [d.id for d in list_dead_letters(client, names, limit=2)] == [
        letters[1].id, letters[3].id]
    assert len(list_dead_letters(client, names)) == 3


def test_replaying_a_still_invalid_payload_keeps_the_dead_letter(
        queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    letter = _record(queue, b"{broken")
    with pytest.raises(Poison) as caught:
        replay_dead_letter(client, names, letter.id, secrets)
    assert caught.value.reason is PoisonReason.invalid_json
    with pytest.raises(Poison) as caught:
        replay_dead_letter(client, names, letter.id, secrets, payload=b'{"schema_version": 2}')
    assert caught.value.reason is PoisonReason.unsupported_schema_version
    assert get_dead_letter(client, names, letter.id) == letter
    assert client.xlen(names.documents) == 0


def test_replaying_a_corrected_payload_enqueues_it_and_removes_the_dead_letter(
        queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    bad = json.dumps({**envelope_dict(), "signature": "0" * 64}).encode()
    letter = _record(queue, bad, reason=PoisonReason.bad_signature)
    corrected = signed(envelope_dict())
    entry_id = replay_dead_letter(client, names, letter.id, secrets, payload=corrected)
    [(read_id, fields)] = read_after(client, names.documents, None, 10)
    assert read_id == entry_id
    assert fields == {"envelope": corrected}
    assert parse_envelope(fields["envelope"], secrets).idempotency_key == "order-42"
    assert get_dead_letter(client, names, letter.id) is None
    assert client.xlen(names.dead_letters) == 0
    with pytest.raises(DeadLetterNotFound):
        replay_dead_letter(client, names, letter.id, secrets, payload=corrected)
    assert client.xlen(names.documents) == 1


def test_replaying_the_stored_payload_after_a_key_was_configured(queue: Queue) -> None:
    client, names = queue
    payload = signed(envelope_dict(tenant="gamma"), b"gamma-key")
    before = load_secrets({"DOC_RUNS_SIGNING_KEYS": "acme=acme-signing-key"})
    with pytest.raises(Poison) as caught:
        parse_envelope(payload, before)
    letter = _record(queue, payload, reason=caught.value.reason, detail=caught.value.detail)
    with pytest.raises(Poison):
        replay_dead_letter(client, names, letter.id, before)
    after = load_secrets({"DOC_RUNS_SIGNING_KEYS": "acme=acme-signing-key,gamma=gamma-key"})
    entry_id = replay_dead_letter(client, names, letter.id, after)
    assert read_after(client, names.documents, None, 10) == [(entry_id, {"envelope": payload})]
    assert list_dead_letters(client, names) == []


def _tick(queue: Queue, secrets: Secrets, cursor: str | None) -> tuple[list[str], str | None]:
    """What the queue sensor does per tick, reduced to the queue's part: the idempotency keys
    it would start runs for, and the new cursor."""
    client, names = queue
    run_keys = []
    for entry_id, fields in read_after(client, names.documents, cursor, 100):
        try:
            envelope = parse_envelope(fields.get("envelope", b""), secrets)
        except Poison as poison:
            dead_letter(client, names, source_entry_id=entry_id, payload=fields.get(
                "envelope", b""), reason=poison.reason, detail=poison.detail)
        else:
            if claim_idempotency_key(client, names, envelope.tenant, envelope.idempotency_key,
                                     entry_id, ttl_s=3600):
                run_keys.append(envelope.idempotency_key)
        cursor = entry_id
    return run_keys, cursor


def test_a_failed_tick_read_again_gives_the_same_runs_and_one_dead_letter(
        queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    for payload in (signed(envelope_dict(idempotency_key="a")), b"not json",
                    signed(envelope_dict(idempotency_key="b", tenant="beta")),
                    signed(envelope_dict(idempotency_key="a")),  # a genuine duplicate
                    signed(envelope_dict(tenant="beta"), SIGNING_KEYS["acme"])):
        client.xadd(names.documents, {"envelope": payload})
    first_keys, first_cursor = _tick(queue, secrets, None)
    # The tick failed after its work: the cursor was not saved, so the next one reads again.
    again_keys, again_cursor = _tick(queue, secrets, None)
    assert first_keys == again_keys == ["a", "b"]
    assert first_cursor == again_cursor
    letters = list_dead_letters(client, names)
    assert [(d.reason, d.times_seen) for d in letters] == [
        ("invalid_json", 2), ("bad_signature", 2)]
    assert _tick(queue, secrets, again_cursor) == ([], again_cursor)
