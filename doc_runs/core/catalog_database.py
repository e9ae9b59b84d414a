"""The catalog's database: the engine (SQLite kept by WAL and BEGIN IMMEDIATE, or PostgreSQL),
transactions that name the database when it does not answer, and the tables made on the first
question."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from doc_runs.core.catalog_schema import (
    SCHEMA_VERSION,
    CatalogUnavailable,
    documents_table,
    engine_url,
    meta_table,
    metadata,
    shown_url,
)


class CatalogDatabase:
    """The catalog over one database. Thread-safe; `close` releases its connections. Nothing
    is asked of the database until the first question (its tables are made then, where
    missing), so a process starts while the database is away and says so when asked."""

    def __init__(self, url: str) -> None:
        self.url = url
        authority = url.split("://", 1)[-1].split("/", 1)[0]
        if authority.count("@") > 1:
            # Parsed, the password's tail becomes part of the host, and the driver's own
            # message would show it.
            raise CatalogUnavailable("the catalog database URL has more than one '@' before "
                                     "its host: write an '@' in the user or password as %40")
        try:
            self.engine = self._make_engine(engine_url(url))
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
                _write_ahead_log(cursor)
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

    def __enter__(self) -> CatalogDatabase:
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


_WAL_WAIT_S = 60.0


def _write_ahead_log(cursor: Any) -> None:
    """Puts the database in WAL mode (readers never wait for the writer), once for good: the
    mode is kept in the file. Switching needs the database to itself and SQLite answers
    "database is locked" at once instead of waiting, so a process that meets another at
    work (every process may open a new home first) tries again for a while."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + _WAL_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as busy:
            if "locked" not in str(busy) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)

