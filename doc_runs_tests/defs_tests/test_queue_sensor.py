"""The queue sensor against the real Redis, evaluated as the daemon evaluates it: only a
committed result moves the cursor. Every poison kind lands in the dead letters with its
reason; nothing valid is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from dagster import SensorResult, build_sensor_context, instance_for_test

from doc_runs.auth import Secrets, load_secrets
from doc_runs.core.store import DocumentStore
from doc_runs.defs import queue_sensor as queue_module
from doc_runs.defs.queue_sensor import QueueUnavailable, queue_sensor
from doc_runs.defs.resources import (
    CatalogResource,
    DocumentStoreResource,
    ExtractionResource,
    QueueResource,
    SecretsResource,
)
from doc_runs.defs.tags import BATCH_TAG, DOCUMENTS_TAG, EXTRA_FIELDS_TAG, MESSAGES_TAG, TENANT_TAG
from doc_runs.queue.dead_letters import list_dead_letters, replay_dead_letter
from doc_runs.queue.envelope import (
    MAX_MESSAGE_BYTES,
    Options,
    PathRef,
    UploadRef,
    build_envelope,
    canonical_bytes,
)
from doc_runs.queue.producer import ENVELOPE_FIELD, enqueue
from doc_runs.queue.streams import StreamNames
from doc_runs_tests import servers
from doc_runs_tests.batches import catalog_of

KEYS = "acme=acme-signing-key,beta=beta-signing-key"


class Harness:
    def __init__(self, project: Path, url: str, prefix: str, instance, **queue_settings):
        self.project, self.url, self.prefix, self.instance = project, url, prefix, instance
        self.client = redis.Redis.from_url(url)
        self.names = StreamNames(prefix)
        self.store = DocumentStore(project / "data" / "store")
        self.secrets: Secrets = load_secrets({"DOC_RUNS_SIGNING_KEYS": KEYS})
        self.shared = project / "shared"
        self.shared.mkdir(exist_ok=True)
        self.betas = project / "betas"  # a root beta alone may use
        self.betas.mkdir(exist_ok=True)
        self.queue_settings = queue_settings
        self.cursor: str | None = None

    def resources(self) -> dict:
        return {
            "document_store": DocumentStoreResource(root=str(self.store.root),
                                                    reports_dir=str(self.project / "r")),
            "extraction": ExtractionResource(max_bytes=10_000),
            "queue": QueueResource(redis_url=self.url, stream_prefix=self.prefix,
                                   allowed_roots={"shared": str(self.shared),
                                                  "betas": str(self.betas)},
                                   root_tenants={"betas": ["beta"]},
                                   **self.queue_settings),
            "secrets": SecretsResource(signing_keys=KEYS),
            "catalog": CatalogResource(),
        }

    def evaluate(self, cursor: str | None = None) -> SensorResult:
        with build_sensor_context(instance=self.instance, resources=self.resources(),
                                  cursor=cursor if cursor is not None else self.cursor
                                  ) as context:
            return queue_sensor(context)

    def tick(self) -> SensorResult:
        """Evaluate and commit, as the daemon does after a successful tick."""
        result = self.evaluate()
        self.cursor = result.cursor
        return result

    def upload(self, data: bytes, tenant: str = "acme") -> str:
        return self.store.put_bytes(data, tenant)

    def send(self, tenant: str = "acme", document=None, key: str | None = None,
             data: bytes | None = None, **options) -> str:
        if document is None:
            document = UploadRef(kind="upload",
                                 document_id=self.upload(data or os.urandom(16).hex().encode(),
                                                         tenant))
        envelope = build_envelope(self.secrets, tenant=tenant, document=document,
                                  idempotency_key=key or os.urandom(8).hex(),
                                  options=Options(**options) if options else None)
        return enqueue(self.client, self.names, envelope)

    def send_raw(self, payload: bytes, field: str = ENVELOPE_FIELD) -> str:
        return self.client.xadd(self.names.documents, {field: payload}).decode()

    def signed_dict(self, tenant: str = "acme", **overrides) -> dict:
        document_id = self.upload(b"raw " + os.urandom(8).hex().encode(), tenant)
        data = {"schema_version": 1, "idempotency_key": os.urandom(6).hex(), "tenant": tenant,
                "document": {"kind": "upload", "document_id": document_id}, "options": {},
                "created_at": datetime.now().astimezone().isoformat()}
        data.update(overrides)
        data["signature"] = self.secrets.sign(tenant, canonical_bytes(data))
        return data


@pytest.fixture
def harness(project, redis_server_url, redis_client):
    _, prefix = redis_client
    with instance_for_test() as instance:
        yield Harness(project, redis_server_url, prefix, instance)


def documents_requested(result: SensorResult, instance) -> list[str]:
    """The documents of the batches the result's run requests name, in order."""
    with catalog_of(instance) as catalog:
        return [d for r in result.run_requests
                for d in catalog.batch(r.tags[BATCH_TAG]).documents]


def test_messages_become_runs_of_their_tenant(harness) -> None:
    harness.send("acme", data=b"first acme document")
    harness.send("acme", data=b"second acme document")
    harness.send("beta", data=b"a beta document")
    harness.send("acme", data=b"acme with an extra field", extra_fields={"term": "how long"})
    result = harness.tick()
    tenants = sorted(r.tags[TENANT_TAG] for r in result.run_requests)
    assert tenants == ["acme", "acme", "beta"]
    pair = next(r for r in result.run_requests if r.tags[DOCUMENTS_TAG] == "2")
    assert pair.tags[TENANT_TAG] == "acme"
    extra = next(r for r in result.run_requests if EXTRA_FIELDS_TAG in r.tags)
    assert json.loads(extra.tags[EXTRA_FIELDS_TAG]) == {"term": "how long"}
    for request in result.run_requests:
        for key in documents_requested(SensorResult(run_requests=[request]),
                                       harness.instance):
            assert harness.store.owner(key) == request.tags[TENANT_TAG]
    again = harness.tick()
    assert again.run_requests == [] and again.cursor == result.cursor


def test_a_rerun_message_gets_a_run_of_its_own(harness) -> None:
    harness.send("acme", data=b"first of the tick")
    rerun = UploadRef(kind="upload", document_id=harness.upload(b"to run again, alone"))
    harness.send("acme", document=rerun, alone=True)
    harness.send("acme", data=b"last of the tick")
    result = harness.tick()
    by_documents = sorted(len(documents_requested(SensorResult(run_requests=[r]),
                                                  harness.instance))
                          for r in result.run_requests)
    assert by_documents == [1, 2]
    (alone,) = [r for r in result.run_requests if r.tags[DOCUMENTS_TAG] == "1"]
    assert documents_requested(SensorResult(run_requests=[alone]), harness.instance) == [
        rerun.document_id]


def test_a_rerun_asks_for_the_fields_its_upload_asked_for(harness) -> None:
    """A re-run is the same request again: a document uploaded with fields of its own keeps
    them (taken from the run of its latest batch that has one), and a tick evaluated again
    after registering the re-run's batch asks for the same run."""
    from dagster._core.test_utils import create_run_for_test

    asked = {"term": "how long the contract runs"}
    document = UploadRef(kind="upload", document_id=harness.upload(b"a contract, with fields"))
    harness.send("acme", document=document, extra_fields=asked)
    (upload,) = harness.tick().run_requests
    create_run_for_test(harness.instance, job_name="document_pipeline", tags=upload.tags)
    plain = UploadRef(kind="upload", document_id=harness.upload(b"no fields asked for"))
    harness.send("acme", document=plain)
    harness.tick()

    harness.send("acme", document=document, alone=True)
    harness.send("acme", document=plain, alone=True)
    first = harness.evaluate()  # registers the batches; the daemon does not commit it
    again = harness.evaluate()
    for result in (first, again):
        by_document = {documents_requested(SensorResult(run_requests=[r]),
                                           harness.instance)[0]: r.tags
                       for r in result.run_requests}
        assert json.loads(by_document[document.document_id][EXTRA_FIELDS_TAG]) == asked
        assert EXTRA_FIELDS_TAG not in by_document[plain.document_id]
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests]


def test_the_same_idempotency_key_twice_starts_one_run(harness) -> None:
    document = UploadRef(kind="upload", document_id=harness.upload(b"one document"))
    harness.send(document=document, key="order-17")
    harness.send(document=document, key="order-17")
    first = harness.tick()
    assert len(first.run_requests) == 1
    harness.send(document=document, key="order-17")  # a later tick: still a duplicate
    assert harness.tick().run_requests == []
    harness.send(document=document, key="order-17-rerun")  # a new key on purpose runs again
    assert len(harness.tick().run_requests) == 1
    # The key again for another document is no duplicate: a producer's mistake, told.
    other = harness.send(data=b"another document", key="order-17")
    assert harness.tick().run_requests == []
    (letter,) = [d for d in list_dead_letters(harness.client, harness.names)
                 if d.source_entry_id == other]
    assert letter.reason == "idempotency_conflict" and "order-17" in letter.detail


def test_a_failed_tick_is_evaluated_again_with_the_same_result(harness) -> None:
    harness.send(data=b"document a")
    harness.send_raw(b"not json")
    harness.send(data=b"document b")
    first = harness.evaluate()  # never committed: the daemon's tick failed after evaluating
    second = harness.evaluate()
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in second.run_requests]
    assert [r.tags[BATCH_TAG] for r in first.run_requests] == \
        [r.tags[BATCH_TAG] for r in second.run_requests]
    assert first.cursor == second.cursor
    (letter,) = list_dead_letters(harness.client, harness.names)
    assert letter.times_seen == 2  # the same poison message, seen twice, one dead letter


def test_every_poison_kind_lands_in_the_dead_letters_with_its_reason(harness) -> None:
    outside = harness.project / "outside.txt"
    outside.write_text("not to be read")
    (harness.shared / "link-out.txt").symlink_to(outside)
    os.link(outside, harness.shared / "hard-out.txt")  # the same file, by a name in the root
    (harness.shared / "fine.txt").write_text("A file under the allowed root. Fine.")
    (harness.betas / "fine.txt").write_text("beta's file, under beta's root.")
    os.mkfifo(harness.shared / "pipe.txt")
    beta_upload = harness.upload(b"beta's own document", "beta")
    unsigned = harness.signed_dict()
    unsigned.pop("signature")
    wrong_key = harness.signed_dict("acme")
    wrong_key["tenant"] = "beta"  # acme's signature over a message that claims beta
    expected = {
        harness.send_raw(b"{not json"): "invalid_json",
        harness.send_raw(b"[1, 2]"): "invalid_json",
        harness.send_raw(json.dumps({"schema_version": 1}).encode()): "invalid_envelope",
        harness.send_raw(json.dumps(harness.signed_dict(schema_version=2)).encode()):
            "unsupported_schema_version",
        harness.send_raw(json.dumps(unsigned).encode()): "invalid_envelope",
        harness.send_raw(json.dumps({**harness.signed_dict(), "signature": "0" * 64}).encode()):
            "bad_signature",
        harness.send_raw(json.dumps(wrong_key).encode()): "bad_signature",
        harness.send_raw(json.dumps({**harness.signed_dict(), "tenant": "nobody"}).encode()):
            "bad_signature",
        harness.send_raw(b"{" + b" " * MAX_MESSAGE_BYTES + b"}"): "oversized",
        harness.send_raw(b"{}", field="something_else"): "invalid_envelope",
        harness.send_raw(json.dumps(harness.signed_dict(document={
            "kind": "path", "root": "shared", "path": "../../etc/passwd"})).encode()):
            "invalid_envelope",
        harness.send_raw(json.dumps(harness.signed_dict(document={
            "kind": "path", "root": "shared", "path": "/etc/passwd"})).encode()):
            "invalid_envelope",
        harness.send(document=PathRef(kind="path", root="shared", path="link-out.txt")):
            "path_not_allowed",
        harness.send(document=PathRef(kind="path", root="shared", path="hard-out.txt")):
            "path_not_allowed",
        harness.send(document=PathRef(kind="path", root="elsewhere", path="fine.txt")):
            "path_not_allowed",
        # beta's root, named by acme: exactly like a root that does not exist.
        harness.send(document=PathRef(kind="path", root="betas", path="fine.txt")):
            "path_not_allowed",
        harness.send(document=PathRef(kind="path", root="shared", path="pipe.txt")):
            "unreadable_document",
        harness.send(document=PathRef(kind="path", root="shared", path="missing.txt")):
            "unreadable_document",
        harness.send(document=UploadRef(kind="upload", document_id="ab" * 32)):
            "upload_not_found",
        # beta's document, named by acme: exactly like a missing one.
        harness.send(document=UploadRef(kind="upload", document_id=beta_upload)):
            "upload_not_found",
    }
    good = harness.send(document=PathRef(kind="path", root="shared", path="fine.txt"))
    started = time.monotonic()
    result = harness.tick()
    assert time.monotonic() - started < 20  # the FIFO was not opened
    assert len(result.run_requests) == 1 and result.cursor == good
    letters = {letter.source_entry_id: letter for letter in
               list_dead_letters(harness.client, harness.names, limit=100)}
    assert {entry: letter.reason for entry, letter in letters.items()} == expected
    missing, foreign = (letters[entry].detail for entry in list(expected)[-2:])
    assert missing.replace("ab" * 32, "ID") == foreign.replace(beta_upload, "ID")
    no_root, betas_root = (letters[entry].detail for entry in list(expected)[-6:-4])
    assert no_root.replace("elsewhere", "NAME") == betas_root.replace("betas", "NAME")
    assert all(letter.times_seen == 1 and letter.first_seen for letter in letters.values())
    # Nothing of the file behind the link, nothing of beta's document, was stored for acme.
    assert harness.store.documents_of("acme") == sorted(
        k for k in harness.store.documents_of("acme")
        if b"not to be read" not in harness.store.blob_path(k).read_bytes()
        and b"beta's file" not in harness.store.blob_path(k).read_bytes())


def test_a_root_serves_the_tenants_it_names_and_a_shared_one_every_tenant(harness) -> None:
    (harness.betas / "own.txt").write_text("beta's own file, under beta's root. Two sentences.")
    (harness.shared / "common.txt").write_text("A file every tenant may name. Two sentences.")
    harness.send("beta", document=PathRef(kind="path", root="betas", path="own.txt"))
    harness.send("beta", document=PathRef(kind="path", root="shared", path="common.txt"))
    harness.send("acme", document=PathRef(kind="path", root="shared", path="common.txt"))
    result = harness.tick()
    assert not list_dead_letters(harness.client, harness.names)
    assert sorted(r.tags[TENANT_TAG] for r in result.run_requests) == ["acme", "beta"]
    (own,) = [k for k in harness.store.documents_of("beta")
              if b"beta's own file" in harness.store.blob_path(k).read_bytes()]
    assert harness.store.owner(own) == "beta"


def test_a_corrected_dead_letter_is_replayed_through(harness) -> None:
    data = harness.signed_dict()
    broken = dict(data, signature="f" * 64)
    entry = harness.send_raw(json.dumps(broken).encode())
    harness.tick()
    (letter,) = list_dead_letters(harness.client, harness.names)
    assert letter.source_entry_id == entry and letter.reason == "bad_signature"
    replayed = replay_dead_letter(harness.client, harness.names, letter.id, harness.secrets,
                                  json.dumps(data).encode())
    result = harness.tick()
    assert result.cursor == replayed and len(result.run_requests) == 1
    assert list_dead_letters(harness.client, harness.names) == []


def test_ten_thousand_messages_every_tenth_poison_none_lost(harness) -> None:
    uploads = [UploadRef(kind="upload", document_id=harness.upload(f"doc {i}".encode()))
               for i in range(500)]
    pipeline = harness.client.pipeline(transaction=False)
    valid_keys, wanted = set(), set()
    for i in range(10_000):
        if i % 10 == 9:
            pipeline.xadd(harness.names.documents, {ENVELOPE_FIELD: f'{{"poison": {i}}}'})
            continue
        key = f"message-{i}"
        valid_keys.add(key)
        wanted.add(uploads[i % 500].document_id)
        envelope = build_envelope(harness.secrets, tenant="acme", document=uploads[i % 500],
                                  idempotency_key=key)
        pipeline.xadd(harness.names.documents,
                      {ENVELOPE_FIELD: envelope.model_dump_json().encode()})
    pipeline.execute()
    harness.queue_settings.update(max_messages_per_tick=4000, max_documents_per_run=100)
    covered, messages, ticks, longest = set(), 0, 0, 0.0
    while True:
        started = time.monotonic()
        result = harness.tick()
        longest = max(longest, time.monotonic() - started)
        ticks += 1
        if not result.run_requests:
            break
        covered.update(documents_requested(result, harness.instance))
        messages += sum(int(r.tags[MESSAGES_TAG]) for r in result.run_requests)
    assert ticks == 4  # 4000 + 4000 + 2000, then an empty one
    assert messages == len(valid_keys) == 9000
    assert covered == wanted and len(wanted) == 450
    assert len(list_dead_letters(harness.client, harness.names, limit=2000)) == 1000
    print(f"10,000 messages: {ticks} ticks, longest {longest:.2f} s")


def test_a_tick_that_runs_out_of_time_goes_on_from_its_cursor(harness, monkeypatch) -> None:
    entries = [harness.send(data=f"timed {i}".encode()) for i in range(5)]
    monkeypatch.setattr(queue_module, "_PAGE", 2)
    monkeypatch.setattr(queue_module, "TICK_BUDGET_S", 0.0)
    first = harness.tick()  # out of time after its first page: the cursor still moves on
    assert first.cursor == entries[1] and sum(
        int(r.tags[MESSAGES_TAG]) for r in first.run_requests) == 2
    monkeypatch.setattr(queue_module, "TICK_BUDGET_S", 20.0)
    rest = harness.tick()
    assert rest.cursor == entries[-1] and sum(
        int(r.tags[MESSAGES_TAG]) for r in rest.run_requests) == 3


def test_entries_are_trimmed_only_behind_the_cursor(harness) -> None:
    harness.queue_settings.update(retention_seconds=0)
    entries = [harness.send(data=f"trim {i}".encode()) for i in range(3)]
    harness.tick()
    assert harness.client.xlen(harness.names.documents) == 3
    later = harness.send(data=b"trim later")
    harness.tick()  # trims what is behind the committed cursor, before reading on
    remaining = [e[0].decode() for e in harness.client.xrange(harness.names.documents)]
    assert remaining == [entries[-1], later]


def test_redis_stopped_and_started_again_mid_stream(project, tmp_path) -> None:
    binary = servers.redis_server_binary()
    port = servers.free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    command = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", str(data)]
    url = f"redis://127.0.0.1:{port}/0"

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not servers.redis_answers(url):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        return process

    process = start()
    try:
        with instance_for_test() as instance:
            harness = Harness(project, url, "midstream:", instance, max_messages_per_tick=10)
            sent = [harness.send(data=f"mid {i}".encode()) for i in range(25)]
            assert harness.tick().cursor == sent[9]
            harness.client.shutdown(save=True)  # stopped, the stream kept on disk
            process.wait(30)
            with pytest.raises(QueueUnavailable, match="did not answer.*cursor stays at "
                               + sent[9]):
                harness.evaluate()
            process = start()
            covered = []
            while (result := harness.tick()).run_requests:
                covered.append(result.cursor)
            assert harness.cursor == sent[-1] and covered == [sent[19], sent[24]]
    finally:
        process.terminate()
        process.wait(30)



# The swapper: a process of its own, so that it runs beside the sensor, not between its
# steps as a thread would under the GIL. `docs` is the real folder, then a link out, again.
SWAPPER = """
import os, sys, time
docs, aside, outside, seconds = sys.argv[1:5]
swaps, end = 0, time.monotonic() + float(seconds)
while time.monotonic() < end:
    os.rename(docs, aside)
    os.symlink(outside, docs)
    time.sleep(0.0005)  # each state held a little: most checks see one, some a change
    os.unlink(docs)
    os.rename(aside, docs)
    time.sleep(0.0005)
    swaps += 1
print(swaps)
"""


@pytest.mark.processes
def test_a_folder_swapped_for_a_link_out_again_and_again_never_leaks_a_file(harness) -> None:
    """A folder on the messages' path is swapped, again and again by another process, for a
    link to a folder outside the root while the sensor reads 300 messages naming a file in
    it: each ends stored with the inside file's bytes or dead-lettered (path_not_allowed, or
    unreadable_document when it named nothing at that instant), and nothing of the outside
    file is ever stored."""
    docs, outside = harness.shared / "docs", harness.project / "secrets"
    docs.mkdir()
    outside.mkdir()
    (docs / "report.txt").write_text("The report under the root. Two sentences.")
    (outside / "report.txt").write_text("the tenants' secrets")
    sent = [harness.send(document=PathRef(kind="path", root="shared", path="docs/report.txt"))
            for _ in range(300)]
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(docs),
                                str(harness.shared / "docs-aside"), str(outside), "20"],
                               stdout=subprocess.PIPE, text=True)
    ticks = []
    try:
        time.sleep(0.5)  # swapping already
        # One tick, or a few where a loaded machine makes it stop at its time budget.
        while not ticks or ticks[-1].cursor != sent[-1]:
            assert len(ticks) < 10, [t.cursor for t in ticks]
            ticks.append(harness.tick())
    finally:
        swapper.terminate()
        swapper.wait(30)
    letters = list_dead_letters(harness.client, harness.names, limit=1000)
    assert {letter.reason for letter in letters} <= {"path_not_allowed", "unreadable_document"}
    assert len(letters) + sum(int(r.tags[MESSAGES_TAG])
                              for t in ticks for r in t.run_requests) == 300
    # Every document stored for acme (these messages are its only ones) is the inside file.
    stored = {harness.store.blob_path(d).read_bytes() for d in harness.store.documents_of("acme")}
    assert stored <= {b"The report under the root. Two sentences."}


def test_a_folder_swapped_for_a_link_out_right_after_the_check_is_refused(
        harness, monkeypatch) -> None:
    """The race above, won by the swapper every time: the path is checked while `docs` is
    the folder under the root, and `docs` is a link out by the time the file is opened."""
    docs, outside = harness.shared / "docs", harness.project / "secrets"
    docs.mkdir()
    outside.mkdir()
    (docs / "report.txt").write_text("The report under the root. Two sentences.")
    (outside / "report.txt").write_text("the tenants' secrets")
    resolve = os.path.realpath

    def resolve_then_swap(path, *args, **kwargs):
        resolved = resolve(path, *args, **kwargs)
        if str(path).endswith("docs/report.txt") and docs.is_dir() and not docs.is_symlink():
            docs.rename(harness.shared / "docs-aside")
            docs.symlink_to(outside)
        return resolved

    sent = harness.send(document=PathRef(kind="path", root="shared", path="docs/report.txt"))
    monkeypatch.setattr(os.path, "realpath", resolve_then_swap)
    result = harness.tick()
    monkeypatch.undo()
    assert docs.is_symlink()  # the swap happened between the check and the open
    assert result.cursor == sent and not result.run_requests
    (letter,) = list_dead_letters(harness.client, harness.names)
    assert (letter.reason, letter.detail) == (
        "path_not_allowed", "shared:docs/report.txt leads outside its folder")
    assert harness.store.documents_of("acme") == []
