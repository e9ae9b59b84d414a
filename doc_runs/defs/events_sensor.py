"""Publishes what the document runs recorded as outcome events on each tenant's outbound
Redis stream: every stage's result per document, and each document's final state.

Read from Dagster's event log (the durable record), not sent by the runs themselves: a run
never waits for or fails on Redis, and when Redis is down the tick fails, the cursor stays
and the next tick publishes what was missed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    EventLogRecord,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.status import STAGES
from doc_runs.defs.outcome_view import DOCUMENTS, table_rows
from doc_runs.defs.resources import CatalogResource, QueueResource
from doc_runs.defs.run_failures import record_failed_run
from doc_runs.logs import log_fact
from doc_runs.queue.events import FINAL, OutcomeEvent, publish_events
from doc_runs.queue.streams import redis_url_shown

LAST_STAGE = STAGES[-1]
_BATCH = 1000


@dataclass(frozen=True)
class _Fact:
    storage_id: int
    tenant: str
    event: OutcomeEvent


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _stage_facts(record: EventLogRecord) -> list[_Fact]:
    """A stage's result for each document of the run's batch, from the documents table the
    step's materialization carries (what the run recorded, read back)."""
    materialization = record.asset_materialization
    if materialization is None:
        return []
    metadata = materialization.metadata
    tenant = metadata["tenant"].value if "tenant" in metadata else None
    if DOCUMENTS not in metadata or not isinstance(tenant, str):
        return []  # written before batches (see `doc-runs upgrade`), or not a stage's
    stage = materialization.asset_key.path[-1]
    facts = []
    for row in table_rows(metadata[DOCUMENTS].value):
        status = row.get("status")
        if status not in ("succeeded", "quarantined"):
            continue  # superseded: a newer batch's run reports the document
        event = OutcomeEvent(
            document_id=row["document_id"], stage=stage, status=status,
            reason=row.get("reason") or None, detail=row.get("detail") or None,
            run_id=record.run_id, at=_iso(record.timestamp), source_id=str(record.storage_id))
        facts.append(_Fact(record.storage_id, tenant, event))
        if stage == LAST_STAGE:
            # A quarantined document passes its reason down to the last stage, so the last
            # stage's result is always the document's final state.
            facts.append(_Fact(record.storage_id, tenant,
                               event.model_copy(update={"stage": FINAL})))
    return facts


def _failure_facts(record: EventLogRecord, instance: DagsterInstance,
                   catalog: DocumentCatalog) -> list[_Fact]:
    """A run that failed ends each document of its batch that did not reach the last stage
    in this run as `failed`, until it is re-executed (doc_runs.defs.run_failures)."""
    run = instance.get_run_by_id(record.run_id)
    if run is None:
        return []
    failed = record_failed_run(
        catalog, run,
        record.event_log_entry.dagster_event.message
        if record.event_log_entry.dagster_event else None, record.timestamp)
    if failed is None:
        return []
    facts = []
    for document_id in failed.documents:
        facts.append(_Fact(record.storage_id, failed.batch.tenant, OutcomeEvent(
            document_id=document_id, stage=FINAL, status="failed", reason="run_failed",
            detail=failed.message, run_id=run.run_id, at=_iso(record.timestamp),
            source_id=str(record.storage_id))))
        log_fact(f"run {run.run_id} failed before document {document_id} finished",
                 level=logging.WARNING, run_id=run.run_id, document_id=document_id,
                 tenant=failed.batch.tenant, stage=FINAL, outcome="failed",
                 reason="run_failed", detail=failed.message)
    return facts


def collect_outcome_events(instance: DagsterInstance, catalog: DocumentCatalog, after: int,
                           limit: int = _BATCH) -> tuple[list[_Fact], int]:
    """The facts recorded after storage id `after`, in the order they were recorded, and the
    storage id to continue after. Every source is read after the same id and the merged list
    is cut at `limit` records, so nothing between two ticks is skipped."""
    records: list[tuple[int, str, EventLogRecord]] = []
    for stage in STAGES:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(stage), after_storage_id=after),
            limit=limit, ascending=True)
        records.extend((r.storage_id, "stage", r) for r in result.records)
    failures = instance.fetch_run_status_changes(
        RunStatusChangeRecordsFilter(event_type=DagsterEventType.RUN_FAILURE,
                                     after_storage_id=after),
        limit=limit, ascending=True)
    records.extend((r.storage_id, "failure", r) for r in failures.records)
    records.sort(key=lambda item: item[0])
    taken = records[:limit]
    facts: list[_Fact] = []
    for _, kind, record in taken:
        facts.extend(_stage_facts(record) if kind == "stage"
                     else _failure_facts(record, instance, catalog))
    return facts, (taken[-1][0] if taken else after)


@sensor(
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Publishes every document stage result and final state, as the runs recorded "
    "them, on each tenant's outbound Redis events stream.",
)
def outcome_events_sensor(context: SensorEvaluationContext, catalog: CatalogResource,
                          queue: QueueResource) -> SensorResult | SkipReason:
    after = int(json.loads(context.cursor)["after"]) if context.cursor else 0
    facts, upto = collect_outcome_events(context.instance, catalog.catalog(), after)
    if upto == after:
        return SkipReason(f"nothing recorded after storage id {after}")
    if facts:
        import redis  # here, not at the top: a run process loads these definitions too

        client = queue.client()
        try:
            publish_events(client, queue.names(), [(f.tenant, f.event) for f in facts],
                           queue.events_max_len)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RuntimeError(
                f"Redis at {redis_url_shown(queue.redis_url)} did not answer ({exc}); the "
                f"cursor stays after storage id {after}: the next tick publishes these "
                f"{len(facts)} events") from exc
        finally:
            client.close()
    return SensorResult(cursor=json.dumps({"after": upto}),
                        skip_reason=f"published {len(facts)} event(s) up to storage id {upto}")
