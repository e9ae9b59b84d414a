"""A deployment's history of N documents for bench/scale.py, written through the product's own
storage paths, the way real runs write it:

- Dagster: a real `doc-runs process` run of a batch (and a report run) is the template; each
  history batch is that run cloned with a new run id, batch id and day, and every one of its
  events stored again through the instance (`handle_new_event`, the materializations batched
  as a run worker batches them): runs, steps, materializations with their documents tables,
  planned events, check evaluations.
- The catalog: each history batch, its documents and their five stage records, copied from
  the template's and written in bulk into the same tables.

History is spread over the days before today at `per_day` documents a day (the days before
the first partition are folded into it); today holds only what the measurements add, so
every figure at N compares the same work against a larger past. The store holds no bytes of
history documents: nothing measured reads them (they are read by id, one at a time)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRun
from dagster._core.events import DagsterEventBatchMetadata
from dagster._core.events.log import EventLogEntry
from dagster._serdes import deserialize_value, serialize_value

from doc_runs.core.catalog import (
    Batch,
    DocumentCatalog,
    batch_documents_table,
    batches_table,
    documents_table,
    records_table,
)
from doc_runs.defs.partitions import FIRST_DAY, PARTITION_TAG
from doc_runs.defs.tags import BATCH_TAG


def _day(i: int) -> str:
    """The i-th day before today (1 is yesterday), no earlier than the first partition."""
    today = datetime.now(UTC).date()
    return max(today - timedelta(days=i), date.fromisoformat(FIRST_DAY)).isoformat()


class RunTemplate:
    """A real run (its record and every event), to be stored again as another run."""

    def __init__(self, instance: DagsterInstance, run_id: str) -> None:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        self.run_id, self.day = run_id, run.tags[PARTITION_TAG]
        self.batch = run.tags.get(BATCH_TAG)
        self.run = serialize_value(run)
        self.events = [serialize_value(e) for e in instance.all_logs(run_id)]

    def clone(self, instance: DagsterInstance, day: str, batch_id: str | None,
              empty_shard: str | None) -> str:
        new_id = str(uuid.uuid4())

        def swap(text: str) -> str:
            text = text.replace(self.run_id, new_id).replace(f'"{self.day}"', f'"{day}"')
            return text.replace(self.batch, batch_id) if self.batch and batch_id else text

        run: DagsterRun = deserialize_value(swap(self.run), DagsterRun)
        if empty_shard is not None:
            # The event log's SQLite keeps a database per run: an initialized empty one,
            # copied, is what its own set-up would make (about 90 ms a run otherwise).
            storage = instance.event_log_storage
            shutil.copyfile(empty_shard, storage.path_for_shard(new_id))
            storage._initialized_dbs.add(new_id)
        instance.add_run(run)
        events = [deserialize_value(swap(raw), EventLogEntry) for raw in self.events]
        for k, event in enumerate(events):
            instance.handle_new_event(
                event, batch_metadata=DagsterEventBatchMetadata(new_id, k == len(events) - 1))
        return new_id


class History:
    """Grows a deployment's history to N documents, batch by batch."""

    def __init__(self, instance: DagsterInstance, catalog: DocumentCatalog,
                 document_run: RunTemplate, report_run: RunTemplate,
                 template_records: dict[str, str], per_day: int, batch_size: int,
                 tenant: str) -> None:
        self.instance, self.catalog = instance, catalog
        self.document_run, self.report_run = document_run, report_run
        self.template_records = template_records  # stage -> a real record's JSON
        self.per_day, self.batch_size, self.tenant = per_day, batch_size, tenant
        self.documents = 0
        self.reported_days: set[str] = set()
        self.empty_shard: str | None = None
        storage = instance.event_log_storage
        if hasattr(storage, "path_for_shard"):  # SQLite: a database per run
            with storage.run_connection("bench-empty-shard"):
                pass
            self.empty_shard = storage.path_for_shard("bench-empty-shard")

    def grow_to(self, documents: int, progress: Callable[[str], None]) -> float:
        started = time.perf_counter()
        while self.documents < documents:
            rows = []
            for _ in range(200):  # batches per catalog transaction
                if self.documents >= documents:
                    break
                n = self.documents // self.batch_size
                day = _day(1 + self.documents // self.per_day)
                batch_id = f"bench-{n:08d}"
                run_id = self.document_run.clone(self.instance, day, batch_id,
                                                 self.empty_shard)
                if day not in self.reported_days:  # a report refresh of the day
                    self.report_run.clone(self.instance, day, None, self.empty_shard)
                    self.reported_days.add(day)
                ids = [hashlib.sha256(f"bench/{n}/{k}".encode()).hexdigest()
                       for k in range(self.batch_size)]
                rows.append((batch_id, day, run_id, ids))
                self.documents += self.batch_size
            self._catalog(rows)
            progress(f"{self.documents} documents of history "
                     f"({time.perf_counter() - started:.0f} s)")
        return time.perf_counter() - started

    def _catalog(self, rows: list[tuple[str, str, str, list[str]]]) -> None:
        now = time.time()
        with self.catalog._write() as conn:
            documents, batch_documents, records = [], [], []
            for batch_id, day, run_id, ids in rows:
                seq = conn.execute(batches_table.insert().values(
                    batch_id=batch_id, tenant=self.tenant, day=day, trigger="queue",
                    documents=len(ids), created_at=now).returning(batches_table.c.seq)
                ).scalar_one()
                for position, document_id in enumerate(ids):
                    batch_documents.append({"batch_seq": seq, "position": position,
                                            "document_id": document_id})
                    # One in fifty quarantined, the rest succeeded: all finished.
                    quarantined = position == 0
                    documents.append({
                        "document_id": document_id, "tenant": self.tenant,
                        "name": f"{document_id[:8]}.pdf", "names": f"{document_id[:8]}.pdf",
                        "state": "quarantined" if quarantined else "succeeded",
                        "reason": "encrypted" if quarantined else None, "detail": None,
                        "stage_reached": "document_summary", "batch_seq": seq,
                        "run_id": run_id, "summary": None if quarantined else
                        "The quarterly report covers revenue and costs.",
                        "registered_at": now, "updated_at": now})
                    for stage, record in self.template_records.items():
                        records.append({"document_id": document_id, "stage": stage,
                                        "batch_seq": seq, "run_id": run_id,
                                        "recorded_at": now,
                                        "record": record.replace(self.document_run.run_id,
                                                                 run_id)})
            conn.execute(documents_table.insert(), documents)
            conn.execute(batch_documents_table.insert(), batch_documents)
            conn.execute(records_table.insert(), records)


def template_records(catalog: DocumentCatalog, batch: Batch) -> dict[str, str]:
    """Each stage's record of a document of the template batch that succeeded."""
    for document_id in batch.documents:
        records = catalog.records_of([document_id])[document_id]
        if records.get("document_summary", {}).get("status") == "succeeded":
            return {stage: json.dumps(record, sort_keys=True)
                    for stage, record in records.items()}
    raise RuntimeError("no document of the template batch succeeded")


def history_counts(catalog: DocumentCatalog) -> dict[str, Any]:
    with catalog.engine.connect() as conn:
        return {table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                for table in (documents_table, batches_table, records_table)}
