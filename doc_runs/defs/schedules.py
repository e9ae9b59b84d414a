"""Schedules: a nightly pass that restarts every document left unfinished, and an hourly
corpus report in case no document run asked for one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from doc_runs.core.catalog import DocumentCatalog, batch_day
from doc_runs.core.status import DocumentState
from doc_runs.core.store import DocumentStore
from doc_runs.defs.batches import (
    PlannedBatch,
    chunked,
    fields_requested,
    request_runs,
)
from doc_runs.defs.jobs import DOCUMENT_JOB, REPORT_JOB
from doc_runs.defs.resources import CatalogResource, DocumentStoreResource
from doc_runs.defs.sensors import pending_report_runs
from doc_runs.defs.tags import BATCH_TAG, TRIGGER_TAG
from doc_runs.settings import Settings

# A document run in one of these has not ended (a suspended run resumes): its documents are
# left to it rather than run twice at once.
ACTIVE_DOCUMENT_RUN_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.SUSPENDED,
    DagsterRunStatus.CANCELING,
]


def active_batch_seqs(instance: DagsterInstance, catalog: DocumentCatalog) -> set[int]:
    """The batches of document runs that have not ended (re-executions and retries carry
    their parent's batch): their documents are left to them."""
    # By status alone, the job checked here: with the job's name too, SQLite's run storage
    # walks every run of the job (its index by job), 30 ms at 20,000 runs and growing; by
    # status it reads the few active runs (1 ms).
    runs = instance.get_runs(RunsFilter(statuses=ACTIVE_DOCUMENT_RUN_STATUSES))
    batch_ids = [run.tags[BATCH_TAG] for run in runs
                 if run.job_name == DOCUMENT_JOB and BATCH_TAG in run.tags]
    return set(catalog.batch_seqs(batch_ids).values())


# What one nightly tick takes on at most: the oldest first, the rest the next night. A backlog
# this large is an outage to look into, not work for one tick (each run request is written
# to the instance before the tick ends).
MAX_UNFINISHED_PER_TICK = 10_000
MAX_RUNS_ALONE_PER_TICK = 500


@dataclass
class UnfinishedPlan:
    batches: list[tuple[str, list[str]]]  # (tenant, documents), oldest batch first
    unfinished: int = 0  # documents pending, incomplete or failed (up to the tick's limit)
    busy: int = 0  # unfinished but in a run that has not ended
    ownerless: list[str] = field(default_factory=list)  # catalogued, no bytes in the store
    more_left: bool = False  # over the tick's limits; the next tick takes the rest
    # Each document's extra fields where its last run asked for some (a batch asks for one
    # set: documents are grouped by them).
    fields: dict[str, str] = field(default_factory=dict)


def plan_unfinished_runs(instance: DagsterInstance, catalog: DocumentCatalog,
                         store: DocumentStore, max_documents: int,
                         max_per_tick: int = MAX_UNFINISHED_PER_TICK,
                         max_alone: int = MAX_RUNS_ALONE_PER_TICK) -> UnfinishedPlan:
    """Runs for the documents that have not finished and that no run in progress covers: one
    tenant per run, at most `max_documents` each. A document whose last run failed runs
    alone: whatever failed that run (a parser that crashes its worker, a document the model
    API refuses every time) then fails no other document's run. Reads the unfinished
    documents by an indexed query and the active runs, never the whole corpus."""
    busy = active_batch_seqs(instance, catalog)
    plan = UnfinishedPlan(batches=[], busy=catalog.count_unfinished_in(busy))
    # Enough rows for the tick's share besides those left to runs in progress.
    unfinished = [row for row in catalog.unfinished(limit=max_per_tick + plan.busy + 1)
                  if row.batch_seq not in busy]
    if len(unfinished) > max_per_tick:
        plan.more_left = True
        unfinished = unfinished[:max_per_tick]
    plan.unfinished = len(unfinished) + plan.busy
    fields = fields_requested(instance, catalog, [row.document_id for row in unfinished])
    plan.fields = {key: value for key, value in fields.items() if value != "{}"}
    groups: dict[tuple[str, str], list[str]] = {}
    for row in unfinished:
        if store.owner(row.document_id) != row.tenant:
            plan.ownerless.append(row.document_id)
            continue
        if row.state == DocumentState.FAILED.value:
            if len(plan.batches) >= max_alone:
                plan.more_left = True
                continue
            plan.batches.append((row.tenant, [row.document_id]))
            continue
        groups.setdefault((row.tenant, fields[row.document_id]), []).append(row.document_id)
    plan.batches += [(tenant, batch) for (tenant, _), wanted in groups.items()
                     for batch in chunked(wanted, max_documents)]
    return plan


def _tick_time(context: ScheduleEvaluationContext) -> datetime:
    # Evaluated by hand (the UI's "test schedule" gives a time; a bare context may not).
    return (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)


def _tick_stamp(context: ScheduleEvaluationContext) -> str:
    return _tick_time(context).strftime("%Y%m%dT%H%M%SZ")


def _tick_day(context: ScheduleEvaluationContext) -> str:
    """The partition of what the tick asks for: its own day, which Dagster, checking keys as
    of the tick's time, knows (a tick evaluated just after midnight has no key for the new
    day yet)."""
    return batch_day(_tick_time(context).timestamp())


def unfinished_batches(plan: UnfinishedPlan, stamp: str, day: str) -> list[PlannedBatch]:
    planned = []
    for tenant, batch in plan.batches:
        # The tick's time and the batch: a retried tick asks for the same runs, the next
        # night's tick for new ones.
        digest = hashlib.sha256("\n".join([tenant, *batch]).encode()).hexdigest()[:20]
        planned.append(PlannedBatch(f"unfinished:{stamp}:{digest}", tenant, batch,
                                    "schedule", fields=plan.fields.get(batch[0], "{}"),
                                    day=day))
    return planned


def build_unfinished_documents_schedule(settings: Settings) -> ScheduleDefinition:
    max_documents = settings.max_documents_per_run

    @schedule(
        name="unfinished_documents_schedule",
        job_name=DOCUMENT_JOB,
        cron_schedule=settings.nightly_cron,
        execution_timezone=settings.schedule_tz,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Runs every document that has not finished (pending, or stopped before "
        "its summary without a quarantine) and that no run in progress covers, by tenant, "
        f"at most {max_documents} documents a run.",
    )
    def unfinished_documents_schedule(
        context: ScheduleEvaluationContext, document_store: DocumentStoreResource,
        catalog: CatalogResource,
    ) -> list[RunRequest] | SkipReason:
        """Documents of a batch whose run has not ended are left to that run, and only those:
        skipping the whole tick whenever any document run is active would starve this
        schedule on a busy instance, where the inbox keeps some run going most of the time.
        A document whose run ends unfinished after the tick waits for the next night (or a
        re-execution from the UI)."""
        store = document_store.store()
        plan = plan_unfinished_runs(context.instance, catalog.catalog(), store, max_documents)
        for key in plan.ownerless[:20]:
            context.log.warning(f"document {key} is in the catalog but not in the store "
                                "for its tenant; not scheduled")
        if plan.more_left:
            context.log.warning(
                f"more unfinished documents than one tick takes ({MAX_UNFINISHED_PER_TICK} "
                f"documents, {MAX_RUNS_ALONE_PER_TICK} documents whose last run failed, "
                "each run alone): the oldest are asked for now, the rest at the next tick")
        requests = request_runs(catalog.catalog(), store,
                                unfinished_batches(plan, _tick_stamp(context),
                                                   _tick_day(context)),
                                "unfinished_documents_schedule")
        if requests:
            return requests
        if not plan.unfinished:
            return SkipReason("no unfinished documents")
        return SkipReason(
            f"{plan.unfinished} unfinished documents, none to start: {plan.busy} in runs "
            f"that have not ended, {len(plan.ownerless)} not in the store"
        )

    return unfinished_documents_schedule


def build_corpus_report_schedule(settings: Settings) -> ScheduleDefinition:
    @schedule(
        name="corpus_report_schedule",
        job_name=REPORT_JOB,
        cron_schedule=settings.report_cron,
        execution_timezone=settings.schedule_tz,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Rebuilds the day's corpus report, unless a report run of that day is "
        "already waiting to start.",
    )
    def corpus_report_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        day = _tick_day(context)
        pending = pending_report_runs(context.instance, day)
        if pending:
            return SkipReason(f"report run {pending[0]} of {day} has not started yet; it will "
                              "show everything recorded until it starts")
        return RunRequest(run_key=f"report-schedule:{_tick_stamp(context)}", partition_key=day,
                          tags={TRIGGER_TAG: "schedule"})

    return corpus_report_schedule

