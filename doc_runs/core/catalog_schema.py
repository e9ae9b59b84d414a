"""The catalog's tables, the rule that says where they live, and the rows it answers with
(doc_runs.core.catalog is the catalog itself)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from doc_runs.core.status import DocumentState

SCHEMA_VERSION = 1
UNFINISHED_STATES = (DocumentState.PENDING.value, DocumentState.INCOMPLETE.value,
                     DocumentState.FAILED.value)
MAX_DETAIL = 500  # characters of a reason's detail kept in the document's row
MAX_NAMES = 1000  # characters of the joined names kept in the document's row
_SQLITE_FILE = "doc_runs.sqlite"
_Item = TypeVar("_Item")

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

# Which process runs each Dagster run, and when it last said it was alive: what lets a run
# whose process died with its host be recognized (doc_runs.core.run_workers).
run_workers_table = sa.Table(
    "doc_runs_run_workers", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("boot_id", sa.String(64), nullable=False),
    sa.Column("pid_namespace", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process_started", sa.Float, nullable=False),
    sa.Column("beat_at", sa.Float, nullable=False),
    sa.Column("beats", sa.Integer, nullable=False),
    sa.Index("doc_runs_run_workers_beat", "beat_at"),
)


def batch_day(timestamp: float | None = None) -> str:
    """The day (UTC) a batch made at `timestamp` belongs to: its runs' partition."""
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, UTC)
    return moment.strftime("%Y-%m-%d")


def catalog_url(environ: Mapping[str, str]) -> str:
    """Where the catalog lives, one rule for every process: DOC_RUNS_DATABASE_URL; else the
    instance's PostgreSQL (DAGSTER_POSTGRES_URL, which the shipped PostgreSQL instance file
    reads); else a SQLite file in DAGSTER_HOME beside the local instance's own."""
    for name in ("DOC_RUNS_DATABASE_URL", "DAGSTER_POSTGRES_URL"):
        value = (environ.get(name) or "").strip()
        if value:
            return value
    home = (environ.get("DAGSTER_HOME") or "").strip()
    if not home:
        raise CatalogUnavailable("neither DOC_RUNS_DATABASE_URL, DAGSTER_POSTGRES_URL nor "
                                 "DAGSTER_HOME is set: there is nowhere to keep the catalog")
    return f"sqlite:///{Path(home).resolve() / _SQLITE_FILE}"


def engine_url(url: str) -> str:
    # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql:// URL; psycopg2 is what we ship.
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def shown_url(url: str) -> str:
    """The URL without its password, for messages: the one after the user name and any in
    the query (libpq takes `?password=` and `?sslpassword=` too)."""
    try:
        parsed = sa.make_url(url)
        secret = {key: "***" for key in parsed.query if "password" in key.lower()}
        return parsed.update_query_dict(secret).render_as_string(hide_password=True)
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


def names_of(names: Sequence[str]) -> tuple[str | None, str | None]:
    if not names:
        return None, None
    joined = "; ".join(names)
    return names[0], joined if len(joined) <= MAX_NAMES else joined[:MAX_NAMES - 1] + "…"


def cut_detail(text: Any) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1] + "…"


def chunks(items: Sequence[_Item], size: int = 900) -> Iterator[list[_Item]]:
    # SQLite allows at most 999 bound parameters in older builds.
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
