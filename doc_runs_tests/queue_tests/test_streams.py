from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
import redis

from doc_runs.auth import Secrets
from doc_runs.queue.consumer import read_after, trim_behind
from doc_runs.queue.envelope import (
    MAX_MESSAGE_BYTES,
    Options,
    PathRef,
    UploadRef,
    build_envelope,
)
from doc_runs.queue.producer import enqueue
from doc_runs.queue.streams import (
    DEFAULT_PREFIX,
    StreamNames,
    compare_stream_ids,
    earlier_stream_id,
    stream_id_tuple,
)
from doc_runs_tests.helpers import claim_idempotency_key
from doc_runs_tests.queue_tests.messages import DOCUMENT_ID

Queue = tuple[redis.Redis, StreamNames]


def _ids(client: redis.Redis, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(stream)]


def _stream_of(client: redis.Redis, stream: str, ids: list[str]) -> None:
    for entry_id in ids:
        client.xadd(stream, {"n": entry_id}, id=entry_id)


def test_key_names() -> None:
    names = StreamNames("p:")
    assert names.documents == "p:documents"
    assert names.dead_letters == "p:dead_letters"
    assert names.dead_letter("abc") == "p:dead_letter:abc"
    assert names.events("acme") == "p:events:acme"
    digest = hashlib.sha256(b"order 42").hexdigest()[:32]
    assert names.idempotency("acme", "order 42") == f"p:idempotency:acme:{digest}"
    assert StreamNames().documents == f"{DEFAULT_PREFIX}documents" == "doc_runs:documents"
    with pytest.raises(ValueError, match="TENANT_PATTERN"):
        names.events("acme:beta")
    with pytest.raises(ValueError, match="TENANT_PATTERN"):
        names.idempotency("", "k")


def test_stream_ids_compare_as_numbers() -> None:
    assert stream_id_tuple("1700000000000-3") == (1700000000000, 3)
    assert stream_id_tuple(b"12") == (12, 0)
    assert compare_stream_ids("10-0", "9-0") == 1
    assert compare_stream_ids("9-10", "9-9") == 1
    assert compare_stream_ids("9-0", "9") == 0
    assert compare_stream_ids("8-5", "9-0") == -1
    assert earlier_stream_id("10-0", "9-99") == "9-99"
    assert earlier_stream_id("950-0", "100000-0") == "950-0"
    for bad in ("", "-", "+", "1-", "a-1", "1-2-3", " 1-0"):
        with pytest.raises(ValueError, match="not a stream entry id"):
            stream_id_tuple(bad)


def _envelopes(secrets: Secrets, count: int) -> list:
    upload = UploadRef(kind="upload", document_id=DOCUMENT_ID)
    return [build_envelope(secrets, tenant="acme", document=upload, idempotency_key=f"k{i}")
            for i in range(count)]


def test_enqueue_then_read_after_pages_with_an_exclusive_cursor(
        queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    envelopes = _envelopes(secrets, 5)
    ids = [enqueue(client, names, envelope) for envelope in envelopes]
    assert ids == sorted(ids, key=stream_id_tuple) and len(set(ids)) == 5

    pages, cursor = [], None
    for _ in range(5):  # bounded: an inclusive cursor would page forever
        page = read_after(client, names.documents, cursor, 2)
        pages.append([entry_id for entry_id, _ in page])
        cursor = page[-1][0] if page else cursor
    assert pages == [ids[0:2], ids[2:4], ids[4:5], [], []]

    after_third = read_after(client, names.documents, ids[2], 10)
    assert [entry_id for entry_id, _ in after_third] == ids[3:]
    fields = after_third[0][1]
    assert list(fields) == ["envelope"]
    assert fields["envelope"] == envelopes[3].model_dump_json().encode()
    assert read_after(client, names.documents, ids[-1], 10) == []
    assert read_after(client, names.dead_letters, None, 10) == []
    with pytest.raises(ValueError, match="count"):
        read_after(client, names.documents, None, 0)


def test_enqueue_never_trims(queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    for envelope in _envelopes(secrets, 30):
        enqueue(client, names, envelope)
    assert client.xlen(names.documents) == 30


def test_enqueue_refuses_an_envelope_the_consumer_would_refuse(
        queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    # Every field at its limit stays under the size limit; only an envelope changed after
    # validation (model_copy does not validate) can be too big.
    fields = {f"f{i}": "\U0001f600" * 500 for i in range(20)}
    envelope = build_envelope(secrets, tenant="acme", idempotency_key="k" * 200,
                              document=PathRef(kind="path", root="r", path="\U0001f600" * 4096),
                              options=Options(extra_fields=fields))
    assert len(envelope.model_dump_json().encode()) < MAX_MESSAGE_BYTES
    too_big = envelope.model_copy(update={"idempotency_key": "k" * MAX_MESSAGE_BYTES})
    with pytest.raises(ValueError, match="more than 65536"):
        enqueue(client, names, too_big)
    assert client.xlen(names.documents) == 0


def test_trim_behind_keeps_the_cursor_and_everything_after(queue: Queue) -> None:
    client, names = queue
    stream = names.documents
    _stream_of(client, stream, ["1000-0", "2000-0", "3000-0", "3000-1", "3000-2", "5000-0"])
    # Retention 0: everything before the cursor goes, the cursor's own entry stays.
    assert trim_behind(client, stream, "3000-1", retention_s=0, now_s=10.0) == 3
    assert _ids(client, stream) == ["3000-1", "3000-2", "5000-0"]
    assert trim_behind(client, stream, "3000-1", retention_s=0, now_s=10.0) == 0
    # The cursor at the last entry: it is still kept.
    assert trim_behind(client, stream, "5000-0", retention_s=0, now_s=10.0) == 2
    assert _ids(client, stream) == ["5000-0"]


def test_no_retention_trims_behind_the_cursor_whatever_the_clock_says(queue: Queue) -> None:
    client, names = queue
    stream = names.documents
    # Stamped by a Redis clock ahead of ours (or in our current millisecond).
    _stream_of(client, stream, ["9000-0", "9000-1", "9001-0"])
    assert trim_behind(client, stream, "9000-1", retention_s=0.5, now_s=1.0) == 0
    assert trim_behind(client, stream, "9000-1", retention_s=0, now_s=1.0) == 1
    assert _ids(client, stream) == ["9000-1", "9001-0"]


def test_trim_behind_honours_retention(queue: Queue) -> None:
    client, names = queue
    stream = names.documents
    _stream_of(client, stream, ["1000-0", "2000-0", "3000-0", "4000-0", "5000-0"])
    # Retained from 2500 ms on, though the cursor is further.
    assert trim_behind(client, stream, "4000-0", retention_s=2.5, now_s=5.0) == 2
    assert _ids(client, stream) == ["3000-0", "4000-0", "5000-0"]
    # Retention longer than the stream's age: nothing.
    assert trim_behind(client, stream, "5000-0", retention_s=3600, now_s=5.0) == 0
    assert _ids(client, stream) == ["3000-0", "4000-0", "5000-0"]
    with pytest.raises(ValueError, match="negative"):
        trim_behind(client, stream, "5000-0", retention_s=-1, now_s=5.0)
    with pytest.raises(ValueError, match="not a stream entry id"):
        trim_behind(client, stream, "+", retention_s=0, now_s=5.0)


def test_trim_behind_compares_ids_as_numbers(queue: Queue) -> None:
    client, names = queue
    stream = names.documents
    _stream_of(client, stream, ["900-0", "950-0", "1000-0"])
    # As text, "100000-0" < "950-0" and the cursor's entry would be trimmed.
    assert trim_behind(client, stream, "950-0", retention_s=0, now_s=100.0) == 1
    assert _ids(client, stream) == ["950-0", "1000-0"]


def test_trim_behind_real_entries_after_reading(queue: Queue, secrets: Secrets) -> None:
    client, names = queue
    ids = [enqueue(client, names, envelope) for envelope in _envelopes(secrets, 4)]
    cursor = read_after(client, names.documents, None, 2)[-1][0]
    assert trim_behind(client, names.documents, cursor, retention_s=0, now_s=time.time()) == 1
    assert _ids(client, names.documents) == ids[1:]
    assert trim_behind(client, names.documents, ids[-1], retention_s=3600,
                       now_s=time.time()) == 0


def test_claim_idempotency_key(queue: Queue) -> None:
    client, names = queue
    assert claim_idempotency_key(client, names, "acme", "order-42", "1-0", ttl_s=60)
    # The same entry read again after a failed tick.
    assert claim_idempotency_key(client, names, "acme", "order-42", "1-0", ttl_s=60)
    # A second message with the same key: a duplicate.
    assert not claim_idempotency_key(client, names, "acme", "order-42", "2-0", ttl_s=60)
    # Keys are per tenant.
    assert claim_idempotency_key(client, names, "beta", "order-42", "2-0", ttl_s=60)
    key = names.idempotency("acme", "order-42")
    assert client.get(key) == b"1-0 "  # "<entry id> <request fingerprint>", none here
    assert 0 < client.pttl(key) <= 60_000
    with pytest.raises(ValueError, match="positive"):
        claim_idempotency_key(client, names, "acme", "k", "1-0", ttl_s=0)


def test_an_idempotency_claim_expires(queue: Queue) -> None:
    client, names = queue
    assert claim_idempotency_key(client, names, "acme", "k", "1-0", ttl_s=0.05)
    time.sleep(0.15)
    assert claim_idempotency_key(client, names, "acme", "k", "2-0", ttl_s=60)
    assert client.get(names.idempotency("acme", "k")) == b"2-0 "


@pytest.mark.processes
def test_the_queue_never_imports_dagster() -> None:
    code = ("import sys, pkgutil, importlib, doc_runs.queue as queue, doc_runs.auth\n"
            "for m in pkgutil.iter_modules(queue.__path__): "
            "importlib.import_module('doc_runs.queue.' + m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'dagster'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_key_claimed_for_another_request_is_a_conflict(redis_client) -> None:
    from doc_runs.queue.consumer import Claim, claim_idempotency_keys

    client, prefix = redis_client
    names = StreamNames(prefix)
    claims = claim_idempotency_keys(client, names, [
        ("acme", "k", "1-0", "fp-a"), ("acme", "k", "2-0", "fp-a"),
        ("acme", "k", "3-0", "fp-b"), ("acme", "k", "1-0", "fp-a")], ttl_s=60)
    assert claims == [Claim.CLAIMED, Claim.DUPLICATE, Claim.CONFLICT, Claim.CLAIMED]
