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
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from doc_runs.core.catalog_database import CatalogDatabase
from doc_runs.core.catalog_schema import (
    MAX_DETAIL,
    SCHEMA_VERSION,
    UNFINISHED_STATES,
    Batch,
    CatalogUnavailable,
    DocumentRow,
    NewDocument,
    batch_day,
    batch_documents_table,
    batches_table,
    catalog_url,
    chunks,
    cut_detail,
    documents_table,
    meta_table,
    names_of,
    records_table,
    shown_url,
)
from doc_runs.core.status import RUN_FAILURE, DocumentState, document_status

__all__ = ["SCHEMA_VERSION", "Batch", "CatalogUnavailable", "DocumentCatalog", "DocumentRow",
           "NewDocument", "batch_day", "batch_documents_table", "batches_table", "catalog_url",
           "documents_table", "records_table", "shown_url"]


class DocumentCatalog(CatalogDatabase):
    """The catalog over one database (see the module). Thread-safe; `close` releases its
    connections."""

    # -- registering ----------------------------------------------------------------------
    def note_stored(self, document_id: str, tenant: str, names: Sequence[str] = ()) -> bool:
        """A document stored by an entry point that hands it to the queue (an upload): listed
        as pending for its tenant before any batch names it. True where this listed it (it
        was not in the catalog before)."""
        name, joined = names_of(names)
        now = time.time()
        with self._write() as conn:
            inserted = conn.execute(self._insert(documents_table).values(
                document_id=document_id, tenant=tenant, name=name, names=joined,
                state=DocumentState.PENDING.value, registered_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["document_id"]))
        return bool(inserted.rowcount)

    def forget_unbatched(self, document_id: str) -> None:
        """Undoes `note_stored` (where that listed the document) for a document whose
        message could not be queued: no batch names it and none will, so it must not list as
        pending forever."""
        with self._write() as conn:
            conn.execute(sa.delete(documents_table)
                         .where(documents_table.c.document_id == document_id)
                         .where(documents_table.c.batch_seq.is_(None)))

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
        try:
            return self._register(batch_id, tenant, documents, trigger, day, now)
        except sa.exc.IntegrityError:
            # Registered by another process at the same moment (the same tick evaluated
            # twice at once): theirs stands, as a second registration would have found it.
            found = self.batch(batch_id)
            if found is None:
                raise
            return found

    def _register(self, batch_id: str, tenant: str, documents: Sequence[NewDocument],
                  trigger: str, day: str, now: float) -> Batch:
        ids = [d.document_id for d in documents]
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
                name, joined = names_of(document.names)
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
            for chunk in chunks(ids):
                conn.execute(
                    table.update()
                    .where(table.c.document_id.in_(chunk))
                    .where(sa.or_(table.c.batch_seq.is_(None), table.c.batch_seq < seq))
                    .values(batch_seq=seq, state=DocumentState.PENDING.value, reason=None,
                            detail=None, stage_reached=None, run_id=None, summary=None,
                            updated_at=now))
            named = [{"key": d.document_id, "name": names_of(d.names)[0],
                      "names": names_of(d.names)[1]} for d in documents if d.names]
            if named:  # the names it came under by now, a name added since among them
                conn.execute(table.update().where(table.c.document_id == sa.bindparam("key"))
                             .values(name=sa.bindparam("name"), names=sa.bindparam("names")),
                             named)
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
            for chunk in chunks(list(batch.documents)):
                current.update(conn.execute(
                    sa.select(documents_table.c.document_id)
                    .where(documents_table.c.document_id.in_(chunk))
                    .where(documents_table.c.batch_seq == batch.seq)).scalars())
        return [d for d in batch.documents if d in current]

    def batch_ids_of(self, document_ids: Iterable[str]) -> dict[str, list[str]]:
        """Every batch that named each document, newest first (a document is named by a
        handful: its requests), in one query per thousand documents."""
        ids = list(dict.fromkeys(document_ids))
        out: dict[str, list[str]] = {d: [] for d in ids}
        with self._read() as conn:
            for chunk in chunks(ids):
                for document_id, batch_id in conn.execute(
                        sa.select(batch_documents_table.c.document_id, batches_table.c.batch_id)
                        .join(batches_table,
                              batches_table.c.seq == batch_documents_table.c.batch_seq)
                        .where(batch_documents_table.c.document_id.in_(chunk))
                        .order_by(batches_table.c.seq.desc())):
                    out[document_id].append(batch_id)
        return out

    def is_current(self, batch: Batch, document_id: str) -> bool:
        """Whether `batch` is still the document's latest batch."""
        with self._read() as conn:
            return conn.execute(
                sa.select(documents_table.c.batch_seq)
                .where(documents_table.c.document_id == document_id)).scalar() == batch.seq

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
            for chunk in chunks(ids):
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
        for chunk in chunks(list(ids)):
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
                "detail": cut_detail(status.detail), "stage_reached": status.stage_reached,
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
        finish as `failed`; returns those documents. Finished: summarized by a run of the
        batch, or quarantined by one (a permanent reason, passed down to the stages after
        it; a step that then fails on another document changes nothing about it)."""
        ids = list(batch.documents if documents is None else documents)
        finished = set()
        with self._read() as conn:
            for chunk in chunks(ids):
                for document_id, stage, raw in conn.execute(
                        sa.select(records_table.c.document_id, records_table.c.stage,
                                  records_table.c.record)
                        .where(records_table.c.document_id.in_(chunk))
                        .where(records_table.c.batch_seq == batch.seq)
                        .where(records_table.c.stage != RUN_FAILURE)):
                    if stage == "document_summary" or \
                            json.loads(raw).get("status") == "quarantined":
                        finished.add(document_id)
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
            for chunk in chunks(list(document_ids)):
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
            for chunk in chunks(list(dict.fromkeys(document_ids))):
                found.update(conn.execute(
                    sa.select(documents_table.c.document_id)
                    .where(documents_table.c.document_id.in_(chunk))
                    .where(documents_table.c.batch_seq.is_not(None))).scalars())
        return found

    def latest_batches(self, document_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Each batched document's latest batch: (batch id, what made it: cli, inbox, ...)."""
        found: dict[str, tuple[str, str]] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(document_ids))):
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

    def count_unfinished_in(self, batch_seqs: Iterable[int]) -> int:
        """How many unfinished documents these batches (by their latest batch) hold."""
        seqs = sorted(set(batch_seqs))
        total = 0
        with self._read() as conn:
            for chunk in chunks(seqs):
                total += conn.execute(
                    sa.select(sa.func.count()).select_from(documents_table)
                    .where(documents_table.c.batch_seq.in_(chunk))
                    .where(documents_table.c.state.in_(UNFINISHED_STATES))).scalar_one()
        return total

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
            for chunk in chunks(ids):
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


