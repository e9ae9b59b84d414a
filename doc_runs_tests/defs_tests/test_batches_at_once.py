"""Initiators at the same moment, and a document asked for again while its run goes: each run
holds exactly its own documents, and a document's status never mixes two runs' records.
On the catalog's both databases (SQLite beside the instance, and the real PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import build_sensor_context, instance_for_test

from doc_runs.api.document_status import describe
from doc_runs.auth import load_secrets
from doc_runs.core.stages import STAGE_OUTPUTS
from doc_runs.core.store import DocumentStore
from doc_runs.defs.queue_sensor import queue_sensor
from doc_runs.defs.resources import (
    CatalogResource,
    DocumentStoreResource,
    ExtractionResource,
    InboxResource,
    QueueResource,
    SecretsResource,
)
from doc_runs.defs.sensors import inbox_sensor
from doc_runs.defs.tags import BATCH_TAG, DOCUMENTS_TAG
from doc_runs.queue.envelope import UploadRef, build_envelope
from doc_runs.queue.producer import enqueue
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.batches import (
    catalog_of,
    execute,
    load_defs,
    run_tags,
    store_files,
)
from doc_runs_tests.conftest import fresh_database

KEYS = "acme=acme-signing-key"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def catalog_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                     project: Path) -> Iterator[str]:
    """The catalog's database for the test: beside the instance, or a PostgreSQL one."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    with fresh_database(request.getfixturevalue("postgres_server_url")) as url:
        monkeypatch.setenv("DOC_RUNS_DATABASE_URL", url)
        yield url


def test_the_inbox_and_the_queue_at_once_each_run_holds_exactly_its_own(
        project, catalog_database, redis_server_url, redis_client) -> None:
    client, prefix = redis_client
    store = DocumentStore(project / "data" / "store")
    secrets = load_secrets({"DOC_RUNS_SIGNING_KEYS": KEYS})
    inbox = project / "data" / "inbox"
    base = {"document_store": DocumentStoreResource(root=str(store.root),
                                                    reports_dir=str(project / "r")),
            "extraction": ExtractionResource(max_bytes=100_000),
            "catalog": CatalogResource()}
    rounds = 8
    with instance_for_test() as instance:
        inbox_cursor = queue_cursor = None
        for r in range(rounds):
            # The same bytes reach both initiators for the same tenant: the same document,
            # asked for twice at once, beside documents of each one's own.
            shared = [f"Round {r}, shared note {i}. Two sentences.".encode() for i in range(3)]
            for i, data in enumerate(shared):
                (inbox / f"r{r}-shared-{i}.txt").write_bytes(data)
            (inbox / f"r{r}-own.txt").write_bytes(f"Round {r}, the inbox's own.".encode())
            queued = [store.put_bytes(data, "acme") for data in
                      [*shared, f"Round {r}, the queue's own.".encode()]]
            for n, document_id in enumerate(queued):
                enqueue(client, StreamNames(prefix), build_envelope(
                    secrets, tenant="acme", idempotency_key=f"r{r}-{n}",
                    document=UploadRef(kind="upload", document_id=document_id)))
            results: dict[str, object] = {}
            errors: list[BaseException] = []
            barrier = threading.Barrier(2)

            def evaluate(name: str, sensor, resources: dict, cursor: str | None,
                         results=results, errors=errors, barrier=barrier) -> None:
                try:
                    barrier.wait(timeout=60)
                    with build_sensor_context(instance=instance, resources=resources,
                                              cursor=cursor) as context:
                        results[name] = sensor(context)
                except BaseException as exc:
                    errors.append(exc)

            threads = [
                threading.Thread(target=evaluate, args=("inbox", inbox_sensor, {
                    **base, "inbox": InboxResource(path=str(inbox), tenant="acme",
                                                   settle_seconds=0)}, inbox_cursor)),
                threading.Thread(target=evaluate, args=("queue", queue_sensor, {
                    **base, "queue": QueueResource(redis_url=redis_server_url,
                                                   stream_prefix=prefix),
                    "secrets": SecretsResource(signing_keys=KEYS)}, queue_cursor)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert not errors, errors
            inbox_result, queue_result = results["inbox"], results["queue"]
            inbox_cursor, queue_cursor = inbox_result.cursor, queue_result.cursor
            expected_inbox = {store.put_bytes(p.read_bytes(), "acme")
                              for p in inbox.glob(f"r{r}-*.txt")}
            with catalog_of(instance) as catalog:
                held = {}
                for name, result in (("inbox", inbox_result), ("queue", queue_result)):
                    held[name] = [d for request in result.run_requests
                                  for d in catalog.batch(request.tags[BATCH_TAG]).documents]
                    for request in result.run_requests:
                        batch = catalog.batch(request.tags[BATCH_TAG])
                        assert int(request.tags[DOCUMENTS_TAG]) == \
                            len(batch.documents)
                        assert batch.trigger == name and batch.tenant == "acme"
                # The queue runs every message it took; the inbox every file but those
                # another initiator had asked for already (the queue, a moment before).
                # Nobody's run holds a document it was not given.
                assert sorted(held["queue"]) == sorted(queued), r
                assert set(held["inbox"]) <= expected_inbox, r
                assert expected_inbox - set(held["inbox"]) <= set(queued[:3]), r
                assert len(held["inbox"]) == len(set(held["inbox"]))
                # Each shared document belongs to the newest batch that named it.
                for document_id in queued[:3]:
                    row = catalog.document(document_id)
                    assert row.batch_seq == max(b.seq for b in catalog.batches_of(document_id))


def test_a_document_asked_for_again_while_its_run_goes_never_shows_a_mix(
        project, catalog_database, text_pdf, monkeypatch) -> None:
    """The first run of a document is held in its findings stage; the document is asked for
    again (a new batch); the first run then finishes. The status shows the newer request only
    (pending, until its run records), and in the end one record per stage, all of the newer
    run."""
    import doc_runs.defs.assets as assets

    release, held = threading.Event(), threading.Event()
    real = assets.findings_stage

    def held_findings(*args, **kwargs):
        if not held.is_set():
            held.set()
            assert release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(assets, "findings_stage", held_findings)
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    (document_id,) = store_files(project, {"report.pdf": text_pdf})
    snapshots: list[set[str]] = []

    def look() -> None:
        with catalog_of(instance) as catalog:
            shown = describe(store, catalog, document_id)
        snapshots.append({stage.run_id for stage in shown.stages.values()
                          if stage is not None})

    with instance_for_test() as instance:
        first_tags = run_tags(instance, project, [document_id])
        outcome: dict[str, object] = {}
        first = threading.Thread(target=lambda: outcome.setdefault(
            "first", execute(defs, instance, first_tags)))
        first.start()
        assert held.wait(120)
        look()  # the first run's document, text and chunks so far
        second_tags = run_tags(instance, project, [document_id])
        look()
        with catalog_of(instance) as catalog:
            assert catalog.document(document_id).state == "pending"
        release.set()
        first.join(120)
        first_run = outcome["first"]
        assert first_run.success
        look()
        rows = {row["document_id"]: row for row in _table(first_run, "document_summary")}
        assert rows[document_id]["status"] == "superseded"
        # Nor did it store the outputs of the stages it ran after the takeover: those are
        # the newer run's to write (its settings may differ).
        for stage in ("document_findings", "document_summary"):
            assert not store.artifact_path(stage, STAGE_OUTPUTS[stage].VERSION,
                                           document_id).exists()
        assert store.artifact_path("document_chunks", STAGE_OUTPUTS["document_chunks"].VERSION,
                                   document_id).exists()
        second = execute(defs, instance, second_tags)
        assert second.success
        look()
        with catalog_of(instance) as catalog:
            records = catalog.read_records(document_id)
            assert catalog.document(document_id).state == "succeeded"
    assert {r["run_id"] for r in records.values()} == {second.run_id}
    assert len(records) == 5
    assert all(len(seen) <= 1 for seen in snapshots), snapshots
    assert snapshots[0] == {first_run.run_id} and snapshots[1] == set()
    assert snapshots[2] == set() and snapshots[3] == {second.run_id}


def _table(result, stage):
    from doc_runs.defs.outcome_view import DOCUMENTS, table_rows

    (materialization,) = result.asset_materializations_for_node(stage)
    return table_rows(materialization.metadata[DOCUMENTS].value)

