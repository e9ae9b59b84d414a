"""The catalog on both databases it runs on (a SQLite file, the real PostgreSQL): batches are
explicit and idempotent, a document belongs to its latest batch and reads only that batch's
records, states follow the one rule, and the questions the schedules and the API ask are
answered by index."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from doc_runs.core.catalog import (
    SCHEMA_VERSION,
    CatalogUnavailable,
    DocumentCatalog,
    NewDocument,
    catalog_url,
)
from doc_runs_tests.conftest import fresh_database

STAGES = ("document", "document_text", "document_chunks", "document_findings",
          "document_summary")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def catalog_url_of_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    with fresh_database(server) as url:
        yield url  # a bare postgresql:// URL: the catalog picks psycopg2 itself


@pytest.fixture
def catalog(catalog_url_of_test: str) -> Iterator[DocumentCatalog]:
    with DocumentCatalog(catalog_url_of_test) as opened:
        yield opened


def doc(n: int) -> str:
    return f"{n:064x}"


def ok(run_id: str, **facts: object) -> dict:
    return {"status": "succeeded", "reason": None, "run_id": run_id, **facts}


def test_a_batch_is_stored_once_and_read_back_in_order(catalog: DocumentCatalog) -> None:
    ids = [doc(3), doc(1), doc(2)]
    batch = catalog.register_batch("b-1", "acme", [NewDocument(i, [f"{i[-1]}.pdf"])
                                                   for i in ids], "inbox", day="2026-12-01")
    assert (batch.tenant, batch.day, batch.trigger, batch.documents) == (
        "acme", "2026-12-01", "inbox", tuple(ids))
    # A tick evaluated twice registers the same batch id: nothing changes.
    again = catalog.register_batch("b-1", "acme", [NewDocument(doc(9))], "inbox")
    assert again == batch == catalog.batch("b-1")
    assert catalog.batch("b-unknown") is None
    row = catalog.document(doc(3))
    assert (row.tenant, row.state, row.name, row.batch_seq) == ("acme", "pending", "3.pdf",
                                                                batch.seq)
    with pytest.raises(ValueError, match="at least one"):
        catalog.register_batch("b-empty", "acme", [], "cli")
    with pytest.raises(ValueError, match="each document once"):
        catalog.register_batch("b-twice", "acme", [NewDocument(doc(1)), NewDocument(doc(1))],
                               "cli")


def test_records_set_the_state_by_the_one_rule(catalog: DocumentCatalog) -> None:
    batch = catalog.register_batch("b", "acme", [NewDocument(doc(1)), NewDocument(doc(2))],
                                   "cli")
    catalog.write_stage_records(batch, "document", {doc(1): ok("r1"), doc(2): ok("r1")})
    catalog.write_stage_records(batch, "document_text", {
        doc(1): ok("r1"),
        doc(2): {"status": "quarantined", "reason": "encrypted", "detail": "x" * 900,
                 "run_id": "r1"}})
    assert catalog.document(doc(1)).state == "incomplete"
    quarantined = catalog.document(doc(2))
    assert (quarantined.state, quarantined.reason) == ("quarantined", "encrypted")
    assert len(quarantined.detail) <= 500  # the row keeps a cut detail; the record all of it
    assert len(catalog.read_records(doc(2))["document_text"]["detail"]) == 900
    for stage in STAGES[2:]:
        catalog.write_stage_records(batch, stage, {doc(1): ok("r1", summary_first_sentence=(
            "It rose." if stage == "document_summary" else None))})
    done = catalog.document(doc(1))
    assert (done.state, done.summary, done.run_id, done.stage_reached) == (
        "succeeded", "It rose.", "r1", "document_summary")
    assert list(catalog.read_records(doc(1))) == sorted(STAGES)
    assert catalog.count_by_state() == {"succeeded": 1, "quarantined": 1}


def test_a_newer_batch_takes_the_document_and_an_older_run_records_nothing(
        catalog: DocumentCatalog) -> None:
    """A document submitted again while its earlier run still works on it: the status never
    shows a mix of the two runs, and in the end one record per stage, the newer run's."""
    first = catalog.register_batch("first", "acme", [NewDocument(doc(1)), NewDocument(doc(2))],
                                   "queue")
    catalog.write_stage_records(first, "document", {doc(1): ok("run-1"), doc(2): ok("run-1")})
    assert catalog.document(doc(1)).state == "incomplete"
    second = catalog.register_batch("second", "acme", [NewDocument(doc(1))], "rerun")
    assert second.seq > first.seq
    # From now on doc 1 reads as its new request: nothing of the first run shows.
    assert catalog.document(doc(1)).state == "pending"
    assert catalog.read_records(doc(1)) == {}
    assert catalog.current_documents(first) == [doc(2)]
    # The first run goes on: its later results for doc 1 are not recorded, doc 2's are.
    assert catalog.write_stage_records(first, "document_text", {
        doc(1): ok("run-1"), doc(2): ok("run-1")}) == [doc(2)]
    assert catalog.read_records(doc(1)) == {}
    for stage in STAGES:
        assert catalog.write_stage_records(second, stage, {doc(1): ok("run-2")}) == [doc(1)]
        seen = {r["run_id"] for r in catalog.read_records(doc(1)).values()}
        assert seen == {"run-2"}
    # A late write of the first run after the second finished changes nothing.
    assert catalog.write_stage_records(first, "document_summary", {doc(1): ok("run-1")}) == []
    records = catalog.read_records(doc(1))
    assert list(records) == sorted(STAGES) and {r["run_id"] for r in records.values()} == {
        "run-2"}
    assert catalog.document(doc(1)).state == "succeeded"
    # Registering the first batch again (its sensor tick re-evaluated) does not take it back.
    catalog.register_batch("first", "acme", [NewDocument(doc(1)), NewDocument(doc(2))], "queue")
    assert catalog.document(doc(1)).batch_seq == second.seq
    assert [b.batch_id for b in catalog.batches_of(doc(1))] == ["second", "first"]


def test_a_failed_run_fails_what_it_did_not_finish(catalog: DocumentCatalog) -> None:
    batch = catalog.register_batch("b", "acme", [NewDocument(doc(i)) for i in (1, 2, 3)],
                                   "cli")
    for stage in STAGES:
        catalog.write_stage_records(batch, stage, {doc(1): ok("r1")})
    catalog.write_stage_records(batch, "document", {doc(2): ok("r1"), doc(3): ok("r1")})
    # Doc 3 is corrupt: quarantined for good, whatever fails on the others afterwards.
    corrupt = {**ok("r1"), "status": "quarantined", "reason": "corrupt"}
    for stage in STAGES[1:3]:
        catalog.write_stage_records(batch, stage, {doc(3): dict(corrupt)})
    assert catalog.record_run_failure(batch, "r1", "boom", 1e10) == [doc(2)]
    assert (catalog.document(doc(3)).state, catalog.document(doc(3)).reason) == (
        "quarantined", "corrupt")
    failed = catalog.document(doc(2))
    assert (failed.state, failed.reason, failed.detail) == ("failed", "run_failed", "boom")
    assert catalog.document(doc(1)).state == "succeeded"
    # A re-execution that then finishes doc 2 makes it succeeded again.
    for stage in STAGES:
        catalog.write_stage_records(batch, stage, {doc(2): {**ok("r2"),
                                                            "recorded_at": 2e10}})
    assert catalog.document(doc(2)).state == "succeeded"


def test_the_questions_are_answered_by_index(catalog: DocumentCatalog) -> None:
    acme = [NewDocument(doc(i)) for i in range(10)]
    first = catalog.register_batch("a", "acme", acme[:5], "inbox", day="2026-12-01")
    second = catalog.register_batch("b", "acme", acme[5:], "inbox", day="2026-12-02")
    catalog.register_batch("c", "beta", [NewDocument(doc(100))], "queue")
    catalog.note_stored(doc(200), "acme", ["upload.txt"])  # stored, on the queue
    for stage in STAGES:
        catalog.write_stage_records(first, stage, {doc(0): ok("r")})
    catalog.write_stage_records(second, "document", {doc(5): ok("r")})

    unfinished = catalog.unfinished()
    assert [r.document_id for r in unfinished] == [doc(i) for i in range(1, 10)] + [doc(100)]
    assert doc(200) not in {r.document_id for r in unfinished}  # left to its message
    assert [r.document_id for r in catalog.unfinished(limit=2)] == [doc(1), doc(2)]

    listed = catalog.documents_of("acme")
    assert [r.document_id for r in listed] == sorted([doc(i) for i in range(10)] + [doc(200)])
    assert [r.document_id for r in catalog.documents_of("acme", state="succeeded")] == [doc(0)]
    assert [r.document_id for r in catalog.documents_of("acme", state="incomplete")] == [doc(5)]
    page = catalog.documents_of("acme", after=doc(3), limit=2)
    assert [r.document_id for r in page] == [doc(4), doc(5)]
    assert catalog.documents_of("nobody") == []

    assert {r.document_id for r in catalog.day_documents("2026-12-02")} == {
        doc(i) for i in range(5, 10)}
    assert catalog.batched([doc(0), doc(200), doc(999)]) == {doc(0)}
    assert catalog.latest_batches([doc(7), doc(200)]) == {doc(7): ("b", "inbox")}
    assert catalog.batch_seqs(["a", "b", "zz"]) == {"a": first.seq, "b": second.seq}


def test_the_query_plans_use_the_indexes(catalog: DocumentCatalog) -> None:
    """The schedule's and the API's questions read an index, not the table."""
    import sqlalchemy as sa

    catalog.register_batch("a", "acme", [NewDocument(doc(i)) for i in range(50)], "cli")
    queries = {
        "unfinished": "SELECT document_id FROM doc_runs_documents WHERE state IN "
                      "('pending', 'incomplete', 'failed') AND batch_seq IS NOT NULL "
                      "ORDER BY registered_at, document_id",
        "list": "SELECT document_id FROM doc_runs_documents WHERE tenant = 'acme' AND "
                "state = 'pending' ORDER BY document_id LIMIT 100",
    }
    with catalog.engine.connect() as conn:
        if catalog.is_postgres:
            conn.execute(sa.text("SET enable_seqscan = off"))
        for name, query in queries.items():
            explain = "EXPLAIN " if catalog.is_postgres else "EXPLAIN QUERY PLAN "
            plan = " ".join(str(row) for row in conn.execute(sa.text(explain + query)))
            assert "doc_runs_documents_" in plan, (name, plan)


def test_two_initiators_registering_at_once_each_hold_exactly_their_own(
        catalog_url_of_test: str) -> None:
    """The inbox and the queue (or two tenants) register batches at the same moment, many
    times over, from connections of their own: every batch holds exactly what it was asked
    for, and each document ends in the newest batch that named it."""
    rounds, threads = 20, 4
    errors: list[BaseException] = []
    asked: dict[str, list[str]] = {}
    barrier = threading.Barrier(threads)

    def initiator(k: int) -> None:
        try:
            with DocumentCatalog(catalog_url_of_test) as mine:
                for r in range(rounds):
                    # Overlapping documents: each round's batches share half their documents.
                    ids = [doc(r * 100 + i) for i in range(k * 5, k * 5 + 10)]
                    batch_id = f"init{k}-round{r}"
                    asked[batch_id] = ids
                    barrier.wait(timeout=60)
                    mine.register_batch(batch_id, "acme", [NewDocument(i) for i in ids],
                                        f"initiator{k}")
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=initiator, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not errors, errors
    with DocumentCatalog(catalog_url_of_test) as catalog:
        latest: dict[str, int] = {}
        for batch_id, ids in asked.items():
            batch = catalog.batch(batch_id)
            assert list(batch.documents) == ids
            for document_id in ids:
                latest[document_id] = max(latest.get(document_id, 0), batch.seq)
        for document_id, seq in latest.items():
            assert catalog.document(document_id).batch_seq == seq


def test_a_catalog_written_by_a_newer_release_is_refused(catalog_url_of_test: str) -> None:
    with DocumentCatalog(catalog_url_of_test) as catalog:
        catalog.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with DocumentCatalog(catalog_url_of_test) as newer, \
            pytest.raises(CatalogUnavailable, match="newer doc_runs"):
        newer.document(doc(1))


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    for url in ("postgresql://doc:s3cret-pw@127.0.0.1:1/nowhere",
                # libpq reads passwords from the query too
                "postgresql://doc@127.0.0.1:1/nowhere?password=s3cret-pw&sslmode=disable",
                "postgresql://doc@127.0.0.1:1/nowhere?sslpassword=s3cret-pw"):
        away = DocumentCatalog(url)  # a process starts while its database is away
        with pytest.raises(CatalogUnavailable) as failed:
            away.unfinished()
        assert "127.0.0.1:1/nowhere" in str(failed.value)
        assert "s3cret-pw" not in str(failed.value)
    with pytest.raises(CatalogUnavailable, match="%40") as failed:
        DocumentCatalog("postgresql://doc:s3cret@pw@127.0.0.1:1/nowhere")
    assert "pw" not in str(failed.value)
    folder = tmp_path / "not-a-folder"
    folder.write_text("a file where the database's folder should be")
    with pytest.raises((CatalogUnavailable, OSError)):
        DocumentCatalog(f"sqlite:///{folder / 'catalog.sqlite'}").document(doc(1))


def test_where_the_catalog_lives(tmp_path: Path) -> None:
    assert catalog_url({"DAGSTER_HOME": str(tmp_path)}) == \
        f"sqlite:///{tmp_path / 'doc_runs.sqlite'}"
    assert catalog_url({"DAGSTER_HOME": str(tmp_path),
                        "DAGSTER_POSTGRES_URL": "postgresql://x/y"}) == "postgresql://x/y"
    assert catalog_url({"DAGSTER_POSTGRES_URL": "postgresql://x/y",
                        "DOC_RUNS_DATABASE_URL": "sqlite:////z.db"}) == "sqlite:////z.db"
    with pytest.raises(CatalogUnavailable, match="nowhere to keep"):
        catalog_url({})


def test_the_tables_are_the_catalogs_own(catalog: DocumentCatalog,
                                         catalog_url_of_test: str) -> None:
    """Beside Dagster's in the same database, every table is prefixed doc_runs_; they are
    made by the first question."""
    assert catalog.count_by_state() == {}
    if catalog.is_postgres:
        with psycopg2.connect(catalog_url_of_test) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {row[0] for row in cursor.fetchall()}
    else:
        path = catalog_url_of_test.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")  # SQLite's own, for the batches' autoincrement
    assert tables == {"doc_runs_meta", "doc_runs_batches", "doc_runs_batch_documents",
                      "doc_runs_documents", "doc_runs_stage_records", "doc_runs_run_workers"}
    assert json.loads(catalog.meta("schema_version")) == SCHEMA_VERSION


def test_the_same_batch_registered_at_once_is_one_batch(catalog_url_of_test: str) -> None:
    """The same sensor tick evaluated twice at once (the UI's "test sensor" beside the
    daemon's tick): both registrations answer with the one batch."""
    found: list = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def register() -> None:
        try:
            with DocumentCatalog(catalog_url_of_test) as mine:
                barrier.wait(timeout=60)
                found.append(mine.register_batch(
                    "same-tick", "acme", [NewDocument(doc(i), [f"{i}.txt"]) for i in range(30)],
                    "inbox"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=register) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors, errors
    assert len({batch.seq for batch in found}) == 1 and len(found) == 4
    with DocumentCatalog(catalog_url_of_test) as catalog:
        assert catalog.document(doc(7)).name == "7.txt"
        assert len(catalog.batches_of(doc(7))) == 1
