"""The document catalog: batches (the explicit list of documents a run covers), each
document's state, and each stage's record per document, in tables of our own in the
deployment's database (SQLite beside the local instance, or the instance's PostgreSQL).

Why tables and not Dagster partitions: a partition per document makes every run, sensor tick
and UI page read every key ever registered. Here every question is an indexed query whose
cost follows what is asked (a batch, a document, the unfinished ones), not the corpus.

The rule that keeps two runs of one document apart: a document belongs to the latest batch
that names it (`documents.batch_seq`). Only a run of that batch writes the document's records,
and a document's state is read from that batch's records alone, so a document submitted again
while an earlier run still works on it never shows a mix of the two: it reads `pending` until
the new batch's run records, and the earlier run's late results are not recorded."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from doc_runs.core.status import RUN_FAILURE, DocumentState, document_status

SCHEMA_VERSION = 1
UNFINISHED_STATES = (DocumentState.PENDING.value, DocumentState.INCOMPLETE.value,
                     DocumentState.FAILED.value)
MAX_DETAIL = 500  # characters of a reason's detail kept in the document's row
MAX_NAMES = 1000  # characters of the joined names kept in the document's row
_SQLITE_FILE = "doc_runs.sqlite"

metadata = sa.MetaData()

meta_table = sa.Table(
    "doc_runs_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

batches_table = sa.Table(
    "doc_runs_batches", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(80), nullable=False, unique=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("documents", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("doc_runs_batches_day", "day"),
    sqlite_autoincrement=True,
)

batch_documents_table = sa.Table(
    "doc_runs_batch_documents", metadata,
    sa.Column("batch_seq", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.String(64), nullable=False),
    sa.Index("doc_runs_batch_documents_document", "document_id", "batch_seq"),
)

documents_table = sa.Table(
    "doc_runs_documents", metadata,
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("names", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("detail", sa.Text),
    sa.Column("stage_reached", sa.String(32)),
    sa.Column("batch_seq", sa.Integer),  # the latest batch naming it; NULL: stored only
    sa.Column("run_id", sa.String(64)),  # the run of its latest record
    sa.Column("summary", sa.Text),  # the summary's first sentence, once succeeded
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("doc_runs_documents_state", "state", "registered_at"),
    sa.Index("doc_runs_documents_tenant", "tenant", "document_id"),
    sa.Index("doc_runs_documents_tenant_state", "tenant", "state", "document_id"),
    sa.Index("doc_runs_documents_batch", "batch_seq"),
)

records_table = sa.Table(
    "doc_runs_stage_records", metadata,
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("stage", sa.String(32), primary_key=True),
    sa.Column("batch_seq", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # JSON: the stage's facts
)


def batch_day(timestamp: float | None = None) -> str:
    """The day (UTC) a batch made at `timestamp` belongs to: its runs' partition."""
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, UTC)
    return moment.strftime("%Y-%m-%d")


def catalog_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the catalog lives, one rule for every process: DOC_RUNS_DATABASE_URL; else the
    instance's PostgreSQL (DAGSTER_POSTGRES_URL, which the shipped PostgreSQL instance file
    reads); else a SQLite file in DAGSTER_HOME beside the local instance's own."""
    env = os.environ if environ is None else environ
    for name in ("DOC_RUNS_DATABASE_URL", "DAGSTER_POSTGRES_URL"):
        value = (env.get(name) or "").strip()
        if value:
            return value
    home = (env.get("DAGSTER_HOME") or "").strip()
    if not home:
        raise CatalogUnavailable("neither DOC_RUNS_DATABASE_URL, DAGSTER_POSTGRES_URL nor "
                                 "DAGSTER_HOME is set: there is nowhere to keep the catalog")
    return f"sqlite:///{Path(home).resolve() / _SQLITE_FILE}"


def _engine_url(url: str) -> str:
    # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql:// URL; psycopg2 is what we ship.
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unreadable database URL)"


class CatalogUnavailable(Exception):
    """The catalog's database cannot be reached or used; the message says which and why."""


@dataclass(frozen=True)
class Batch:
    seq: int
    batch_id: str
    tenant: str
    day: str
    trigger: str
    created_at: float
    documents: tuple[str, ...]


@dataclass(frozen=True)
class DocumentRow:
    document_id: str
    tenant: str
    name: str | None
    names: str | None
    state: str
    reason: str | None
    detail: str | None
    stage_reached: str | None
    batch_seq: int | None
    run_id: str | None
    summary: str | None
    registered_at: float
    updated_at: float


@dataclass(frozen=True)
class NewDocument:
    """A document a batch names, with the names it arrived under (for people)."""

    document_id: str
    names: Sequence[str] = ()


def _names(names: Sequence[str]) -> tuple[str | None, str | None]:
    if not names:
        return None, None
    joined = "; ".join(names)
    return names[0], joined if len(joined) <= MAX_NAMES else joined[:MAX_NAMES - 1] + "…"


def _cut(text: Any) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1] + "…"


class DocumentCatalog:
    """The catalog over one database. Thread-safe; `close` releases its connections. Nothing
    is asked of the database until the first question (its tables are made then, where
    missing), so a process starts while the database is away and says so when asked."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = self._make_engine(_engine_url(url))
        except Exception as failed:
            raise CatalogUnavailable(f"the catalog database {shown_url(url)} cannot be used: "
                                     f"{failed}") from None
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._schema_checked = False
        self._schema_lock = threading.Lock()

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            database = sa.make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 60,
                                                         "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _connected(dbapi_connection: Any, _record: Any) -> None:
                # Transactions begin where we say (below), not where pysqlite guesses.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

            @sa.event.listens_for(engine, "begin")
            def _begin(connection: Connection) -> None:
                # A writer takes the write lock at once: two writers that both read first
                # and then upgrade would otherwise fail one of them with "database is
                # locked" instead of waiting.
                immediate = connection.get_execution_options().get("doc_runs_write")
                connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

            return engine
        return sa.create_engine(url, pool_size=2, max_overflow=8, pool_pre_ping=True,
                                pool_recycle=3600)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> DocumentCatalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_schema()
        try:
            with self.engine.connect().execution_options(doc_runs_write=True) as conn, \
                    conn.begin():
                yield conn
        except sa.exc.OperationalError as failed:
            raise CatalogUnavailable(f"the catalog database {shown_url(self.url)} did not "
                                     f"answer: {failed.orig}") from failed

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_schema()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as failed:
            raise CatalogUnavailable(f"the catalog database {shown_url(self.url)} did not "
                                     f"answer: {failed.orig}") from failed

    def _check_schema(self) -> None:
        if self._schema_checked:
            return
        with self._schema_lock:
            if not self._schema_checked:
                self.ensure_schema()
                self._schema_checked = True

    def ensure_schema(self) -> None:
        """Creates the tables where missing (every process may be first), and refuses a
        catalog written by a newer release."""
        self._schema_checked = True  # the transaction below must not check again
        try:
            self._create_tables()
        except BaseException:
            self._schema_checked = False
            raise

    def _create_tables(self) -> None:
        with self._write() as conn:
            if self.is_postgres:
                # Two processes creating the same tables at once would collide.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7731290001)"))
            metadata.create_all(conn, checkfirst=True)
            found = conn.execute(sa.select(meta_table.c.value)
                                 .where(meta_table.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(meta_table.insert().values(key="schema_version",
                                                        value=str(SCHEMA_VERSION)))
            elif int(found) > SCHEMA_VERSION:
                raise CatalogUnavailable(
                    f"the catalog in {shown_url(self.url)} was written by a newer doc_runs "
                    f"(schema {found}; this one knows {SCHEMA_VERSION})")

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert(table) if self.is_postgres else sqlite.insert(table))

    def _lock_documents(self, conn: Connection, ids: Sequence[str]) -> None:
        """Row locks in one order, so two writers over overlapping documents queue instead
        of deadlocking (SQLite serializes writers already)."""
        if self.is_postgres and ids:
            conn.execute(sa.select(documents_table.c.document_id)
                         .where(documents_table.c.document_id.in_(sorted(set(ids))))
                         .order_by(documents_table.c.document_id).with_for_update())

    # -- registering ----------------------------------------------------------------------
    def note_stored(self, document_id: str, tenant: str, names: Sequence[str] = ()) -> None:
        """A document stored by an entry point that hands it to the queue (an upload): listed
        as pending for its tenant before any batch names it."""
        name, joined = _names(names)
        now = time.time()
        with self._write() as conn:
            conn.execute(self._insert(documents_table).values(
                document_id=document_id, tenant=tenant, name=name, names=joined,
                state=DocumentState.PENDING.value, registered_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["document_id"]))

    def register_batch(self, batch_id: str, tenant: str, documents: Sequence[NewDocument],
                       trigger: str, day: str | None = None,
                       now: float | None = None) -> Batch:
        """Stores the batch and makes it each document's latest, in one transaction.
        Registering a batch id again (a sensor tick evaluated twice) changes nothing and
        returns the batch as first stored."""
        if not documents:
            raise ValueError("a batch names at least one document")
        ids = [d.document_id for d in documents]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch names each document once")
        now = time.time() if now is None else now
        day = day or batch_day(now)
        with self._write() as conn:
            existing = self._batch_row(conn, batch_id)
            if existing is not None:
                return existing
            seq = conn.execute(batches_table.insert().values(
                batch_id=batch_id, tenant=tenant, day=day, trigger=trigger,
                documents=len(ids), created_at=now).returning(batches_table.c.seq)).scalar_one()
            conn.execute(batch_documents_table.insert(), [
                {"batch_seq": seq, "position": i, "document_id": d}
                for i, d in enumerate(ids)])
            rows = []
            for document in documents:
                name, joined = _names(document.names)
                rows.append({"document_id": document.document_id, "tenant": tenant,
                             "name": name, "names": joined,
                             "state": DocumentState.PENDING.value, "batch_seq": seq,
                             "registered_at": now, "updated_at": now})
            insert = self._insert(documents_table)
            conn.execute(insert.on_conflict_do_nothing(index_elements=["document_id"]), rows)
            self._lock_documents(conn, ids)
            # Documents known before: this batch is now their latest, so their state starts
            # over from its records (none yet). A newer batch keeps them (see the module).
            table = documents_table
            for chunk in _chunks(ids):
                conn.execute(
                    table.update()
                    .where(table.c.document_id.in_(chunk))
                    .where(sa.or_(table.c.batch_seq.is_(None), table.c.batch_seq < seq))
                    .values(batch_seq=seq, state=DocumentState.PENDING.value, reason=None,
                            detail=None, stage_reached=None, run_id=None, summary=None,
                            updated_at=now))
            names = {d.document_id: _names(d.names) for d in documents if d.names}
            for document_id, (name, joined) in names.items():
                conn.execute(table.update().where(table.c.document_id == document_id)
                             .values(name=name, names=joined))
        return Batch(seq, batch_id, tenant, day, trigger, now, tuple(ids))

    # -- batches --------------------------------------------------------------------------
    def _batch_row(self, conn: Connection, batch_id: str) -> Batch | None:
        row = conn.execute(sa.select(batches_table)
                           .where(batches_table.c.batch_id == batch_id)).mappings().first()
        if row is None:
            return None
        ids = conn.execute(sa.select(batch_documents_table.c.document_id)
                           .where(batch_documents_table.c.batch_seq == row["seq"])
                           .order_by(batch_documents_table.c.position)).scalars().all()
        return Batch(row["seq"], row["batch_id"], row["tenant"], row["day"], row["trigger"],
                     row["created_at"], tuple(ids))

    def batch(self, batch_id: str) -> Batch | None:
        with self._read() as conn:
            return self._batch_row(conn, batch_id)

    def current_documents(self, batch: Batch) -> list[str]:
        """The batch's documents whose latest batch it still is, in the batch's order."""
        with self._read() as conn:
            current = set()
            for chunk in _chunks(list(batch.documents)):
                current.update(conn.execute(
                    sa.select(documents_table.c.document_id)
                    .where(documents_table.c.document_id.in_(chunk))
                    .where(documents_table.c.batch_seq == batch.seq)).scalars())
        return [d for d in batch.documents if d in current]

    def batches_of(self, document_id: str, limit: int = 20) -> list[Batch]:
        """The latest batches that named the document, newest first."""
        with self._read() as conn:
            ids = conn.execute(
                sa.select(batches_table.c.batch_id)
                .join(batch_documents_table,
                      batch_documents_table.c.batch_seq == batches_table.c.seq)
                .where(batch_documents_table.c.document_id == document_id)
                .order_by(batches_table.c.seq.desc()).limit(limit)).scalars().all()
            return [b for b in (self._batch_row(conn, i) for i in ids) if b is not None]

    # -- records --------------------------------------------------------------------------
    def write_stage_records(self, batch: Batch, stage: str,
                            records: Mapping[str, dict[str, Any]]) -> list[str]:
        """Writes one stage's record for each document whose latest batch is `batch`, and
        their states, in one transaction; returns the documents recorded (the others were
        named by a newer batch meanwhile: their results are not this run's to record)."""
        if not records:
            return []
        ids = sorted(records)
        with self._write() as conn:
            self._lock_documents(conn, ids)
            current = set()
            for chunk in _chunks(ids):
                current.update(conn.execute(
                    sa.select(documents_table.c.document_id)
                    .where(documents_table.c.document_id.in_(chunk))
                    .where(documents_table.c.batch_seq == batch.seq)).scalars())
            written = [d for d in ids if d in current]
            if not written:
                return []
            rows = [{"document_id": d, "stage": stage, "batch_seq": batch.seq,
                     "run_id": records[d].get("run_id"),
                     "recorded_at": float(records[d].get("recorded_at") or time.time()),
                     "record": json.dumps(records[d], sort_keys=True)} for d in written]
            insert = self._insert(records_table)
            conn.execute(insert.on_conflict_do_update(
                index_elements=["document_id", "stage"],
                set_={c: insert.excluded[c]
                      for c in ("batch_seq", "run_id", "recorded_at", "record")}), rows)
            self._refresh_states(conn, batch.seq, written)
        return written

    def _refresh_states(self, conn: Connection, seq: int, ids: Sequence[str]) -> None:
        """Each document's state by the one rule (doc_runs.core.status), from its latest
        batch's records."""
        by_document: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in ids}
        for chunk in _chunks(list(ids)):
            for document_id, stage, raw in conn.execute(
                    sa.select(records_table.c.document_id, records_table.c.stage,
                              records_table.c.record)
                    .where(records_table.c.document_id.in_(chunk))
                    .where(records_table.c.batch_seq == seq)):
                by_document[document_id][stage] = json.loads(raw)
        now = time.time()
        updates = []
        for document_id, records in by_document.items():
            status = document_status(records)
            last = records.get("document_summary", {})
            updates.append({
                "key": document_id, "state": status.state.value, "reason": status.reason,
                "detail": _cut(status.detail), "stage_reached": status.stage_reached,
                "run_id": status.run_id or max(
                    records.values(), key=lambda r: r.get("recorded_at", 0),
                    default={}).get("run_id"),
                "summary": last.get("summary_first_sentence")
                if status.state is DocumentState.SUCCEEDED else None,
                "updated_at": now,
            })
        table = documents_table
        conn.execute(
            table.update().where(table.c.document_id == sa.bindparam("key"))
            .values(state=sa.bindparam("state"), reason=sa.bindparam("reason"),
                    detail=sa.bindparam("detail"), stage_reached=sa.bindparam("stage_reached"),
                    run_id=sa.bindparam("run_id"), summary=sa.bindparam("summary"),
                    updated_at=sa.bindparam("updated_at")), updates)

    def record_run_failure(self, batch: Batch, run_id: str, detail: str, at: float,
                           documents: Iterable[str] | None = None) -> list[str]:
        """A run of `batch` that failed ends each of its current documents that did not
        finish in that run as `failed`; returns those documents."""
        ids = list(batch.documents if documents is None else documents)
        with self._read() as conn:
            finished = set()
            for chunk in _chunks(ids):
                finished.update(conn.execute(
                    sa.select(records_table.c.document_id)
                    .where(records_table.c.document_id.in_(chunk))
                    .where(records_table.c.stage == "document_summary")
                    .where(records_table.c.batch_seq == batch.seq)
                    .where(records_table.c.run_id == run_id)).scalars())
        unfinished = [d for d in ids if d not in finished]
        record = {"status": "failed", "reason": "run_failed", "detail": detail[:MAX_DETAIL],
                  "run_id": run_id, "recorded_at": round(at, 3)}
        return self.write_stage_records(batch, RUN_FAILURE,
                                        {d: dict(record) for d in unfinished})

    def read_records(self, document_id: str) -> dict[str, dict[str, Any]]:
        """The document's stage records from its latest batch (see the module)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(records_table.c.stage, records_table.c.record)
                .join(documents_table,
                      documents_table.c.document_id == records_table.c.document_id)
                .where(records_table.c.document_id == document_id)
                .where(records_table.c.batch_seq == documents_table.c.batch_seq)).all()
        return {stage: json.loads(raw) for stage, raw in sorted(rows)}

    def records_of(self, document_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """read_records for many documents in one query per thousand."""
        out: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in document_ids}
        with self._read() as conn:
            for chunk in _chunks(list(document_ids)):
                for document_id, stage, raw in conn.execute(
                        sa.select(records_table.c.document_id, records_table.c.stage,
                                  records_table.c.record)
                        .join(documents_table,
                              documents_table.c.document_id == records_table.c.document_id)
                        .where(records_table.c.document_id.in_(chunk))
                        .where(records_table.c.batch_seq == documents_table.c.batch_seq)):
                    out[document_id][stage] = json.loads(raw)
        return out

    # -- documents ------------------------------------------------------------------------
    def document(self, document_id: str) -> DocumentRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(documents_table).where(
                documents_table.c.document_id == document_id)).mappings().first()
        return DocumentRow(**row) if row is not None else None

    def batched(self, document_ids: Iterable[str]) -> set[str]:
        """Those of the documents some batch has named already."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks(list(dict.fromkeys(document_ids))):
                found.update(conn.execute(
                    sa.select(documents_table.c.document_id)
                    .where(documents_table.c.document_id.in_(chunk))
                    .where(documents_table.c.batch_seq.is_not(None))).scalars())
        return found

    def latest_batches(self, document_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Each batched document's latest batch: (batch id, what made it: cli, inbox, ...)."""
        found: dict[str, tuple[str, str]] = {}
        with self._read() as conn:
            for chunk in _chunks(list(dict.fromkeys(document_ids))):
                for document_id, batch_id, trigger in conn.execute(
                        sa.select(documents_table.c.document_id, batches_table.c.batch_id,
                                  batches_table.c.trigger)
                        .join(batches_table, batches_table.c.seq == documents_table.c.batch_seq)
                        .where(documents_table.c.document_id.in_(chunk))):
                    found[document_id] = (batch_id, trigger)
        return found

    def documents_of(self, tenant: str, *, state: str | None = None,
                     after: str | None = None, limit: int = 100) -> list[DocumentRow]:
        """The tenant's documents in document-id order, from after `after`."""
        table = documents_table
        query = sa.select(table).where(table.c.tenant == tenant)
        if state is not None:
            query = query.where(table.c.state == state)
        if after is not None:
            query = query.where(table.c.document_id > after)
        with self._read() as conn:
            rows = conn.execute(query.order_by(table.c.document_id).limit(limit)).mappings()
            return [DocumentRow(**row) for row in rows]

    def unfinished(self, limit: int | None = None) -> list[DocumentRow]:
        """Documents a batch named that have not finished (pending, incomplete, failed), the
        first registered first: an indexed read of those only, whatever the corpus holds.
        The order does not change when they are batched again, so a schedule tick evaluated
        twice cuts the same batches."""
        table = documents_table
        query = (sa.select(table).where(table.c.state.in_(UNFINISHED_STATES))
                 .where(table.c.batch_seq.is_not(None))
                 .order_by(table.c.registered_at, table.c.document_id))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [DocumentRow(**row) for row in conn.execute(query).mappings()]

    def count_by_state(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(sa.select(documents_table.c.state, sa.func.count())
                                .group_by(documents_table.c.state)).all()
        return {state: int(count) for state, count in rows}

    def day_documents(self, day: str, limit: int | None = None) -> list[DocumentRow]:
        """Documents whose latest batch is of `day`, most recently updated first."""
        table = documents_table
        query = (sa.select(table)
                 .join(batches_table, batches_table.c.seq == table.c.batch_seq)
                 .where(batches_table.c.day == day)
                 .order_by(table.c.updated_at.desc(), table.c.document_id))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [DocumentRow(**row) for row in conn.execute(query).mappings()]

    def batch_seqs(self, batch_ids: Iterable[str]) -> dict[str, int]:
        ids = list(dict.fromkeys(batch_ids))
        out: dict[str, int] = {}
        with self._read() as conn:
            for chunk in _chunks(ids):
                out.update((batch_id, seq) for batch_id, seq in conn.execute(
                    sa.select(batches_table.c.batch_id, batches_table.c.seq)
                    .where(batches_table.c.batch_id.in_(chunk))))
        return out

    # -- bookkeeping ----------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        with self._read() as conn:
            return conn.execute(sa.select(meta_table.c.value)
                                .where(meta_table.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            insert = self._insert(meta_table)
            conn.execute(insert.values(key=key, value=value).on_conflict_do_update(
                index_elements=["key"], set_={"value": insert.excluded.value}))


def _chunks(items: list[str], size: int = 900) -> Iterator[list[str]]:
    # SQLite allows at most 999 bound parameters in older builds.
    for start in range(0, len(items), size):
        yield items[start:start + size]
