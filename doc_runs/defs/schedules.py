"""Schedules: a nightly pass that restarts every document left unfinished, and an hourly
corpus report in case no document run asked for one."""

from __future__ import annotations

import hashlib
import os
import zoneinfo
from collections import Counter
from collections.abc import Callable, Mapping
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

# The check ScheduleDefinition itself applies, run earlier so that the message can name the
# environment variable. Not public API; dagster's version is pinned.
from dagster._utils.schedules import is_valid_cron_string

from doc_runs.core.status import document_status
from doc_runs.core.store import DocumentStore
from doc_runs.defs.jobs import corpus_report_job, document_pipeline
from doc_runs.defs.outcome_view import DESCRIPTION_TAG, describe_documents
from doc_runs.defs.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    contiguous_batches,
    documents,
    range_tags,
)
from doc_runs.defs.resources import DocumentStoreResource
from doc_runs.defs.sensors import pending_report_runs
from doc_runs.defs.tags import TENANT_TAG
from doc_runs.logs import log_run_requested

# The tag a single-partition run carries (a RunRequest's partition_key becomes it).
PARTITION_TAG = "dagster/partition"
UNFINISHED = frozenset({"pending", "incomplete", "failed"})
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


@dataclass(frozen=True)
class ScheduleSettings:
    nightly_cron: str = "0 2 * * *"
    report_cron: str = "0 * * * *"
    timezone: str = "UTC"
    max_documents_per_run: int = 50

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScheduleSettings:
        """The settings from the environment, checked so that a bad value fails loading the
        code location with the variable's name rather than a tick at 2 a.m."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def cron(name: str, default: str) -> str:
            value = env.get(name, default).strip()
            if not is_valid_cron_string(value):
                raise ValueError(f"{name}={value!r} is not a valid cron string "
                                 "(five fields, e.g. '0 2 * * *')")
            return value

        timezone = env.get("DOC_RUNS_SCHEDULE_TZ", defaults.timezone).strip()
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"DOC_RUNS_SCHEDULE_TZ={timezone!r} is not an IANA time zone "
                             "(e.g. 'UTC', 'Europe/Berlin')") from None
        raw_max = env.get("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", str(defaults.max_documents_per_run))
        try:
            max_documents = int(raw_max)
        except ValueError:
            max_documents = 0
        if max_documents < 1:
            raise ValueError(f"DOC_RUNS_MAX_DOCUMENTS_PER_RUN={raw_max!r} is not a positive "
                             "whole number")
        return cls(
            nightly_cron=cron("DOC_RUNS_NIGHTLY_CRON", defaults.nightly_cron),
            report_cron=cron("DOC_RUNS_REPORT_CRON", defaults.report_cron),
            timezone=timezone,
            max_documents_per_run=max_documents,
        )


def document_statuses(store: DocumentStore, keys: list[str]) -> dict[str, str]:
    """Each document's state by the one rule (doc_runs.core.status): pending, incomplete,
    succeeded or quarantined."""
    return {key: document_status(store.read_records(key)).state.value for key in keys}


def documents_in_active_runs(instance: DagsterInstance, keys: list[str]) -> set[str]:
    """The documents a document run that has not ended will work on: its partition, or every
    key of its range by the keys' real order (re-executions keep the range tags)."""
    position = {key: i for i, key in enumerate(keys)}
    busy: set[str] = set()
    runs = instance.get_runs(RunsFilter(job_name=document_pipeline.name,
                                        statuses=ACTIVE_DOCUMENT_RUN_STATUSES))
    for run in runs:
        single = run.tags.get(PARTITION_TAG)
        if single is not None:
            busy.add(single)
        first = position.get(run.tags.get(RANGE_START_TAG, ""))
        last = position.get(run.tags.get(RANGE_END_TAG, ""))
        if first is not None and last is not None:
            busy.update(keys[first:last + 1])
    return busy


@dataclass
class UnfinishedPlan:
    batches: list[tuple[str, list[str]]]  # (tenant, contiguous keys), in key order
    statuses: Counter[str] = field(default_factory=Counter)
    busy: int = 0  # unfinished but in a run that has not ended
    ownerless: list[str] = field(default_factory=list)  # registered, no bytes in the store

    @property
    def unfinished(self) -> int:
        return sum(self.statuses[status] for status in UNFINISHED)


def plan_unfinished_runs(instance: DagsterInstance, store: DocumentStore,
                         max_documents: int) -> UnfinishedPlan:
    """Runs for the registered documents that have not finished and that no run in progress
    covers: one tenant per run, at most `max_documents` keys each, every run a range of
    neighbouring keys in the keys' real (insertion) order so that it covers nothing else."""
    keys = list(instance.get_dynamic_partitions(documents.name))
    statuses = document_statuses(store, keys)
    busy = documents_in_active_runs(instance, keys)
    plan = UnfinishedPlan(batches=[], statuses=Counter(statuses.values()))
    by_tenant: dict[str, list[str]] = {}
    for key in keys:
        if statuses[key] not in UNFINISHED:
            continue
        if key in busy:
            plan.busy += 1
            continue
        owner = store.owner(key)
        if owner is None:
            plan.ownerless.append(key)
            continue
        by_tenant.setdefault(owner, []).append(key)
    position = {key: i for i, key in enumerate(keys)}
    plan.batches = sorted(
        ((tenant, batch) for tenant, wanted in by_tenant.items()
         for batch in contiguous_batches(keys, wanted, max_documents)),
        key=lambda item: position[item[1][0]],
    )
    return plan


def _tick_stamp(context: ScheduleEvaluationContext) -> str:
    # Evaluated by hand (the UI's "test schedule" gives a time; a bare context may not).
    tick = context.scheduled_execution_time or datetime.now(UTC)
    return tick.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def unfinished_run_requests(plan: UnfinishedPlan, stamp: str,
                            describe: Callable[[list[str]], str] | None = None
                            ) -> list[RunRequest]:
    requests = []
    for tenant, batch in plan.batches:
        # The tick's time and the batch: a retried tick asks for the same runs, the next
        # night's tick for new ones.
        digest = hashlib.sha256("\n".join([tenant, *batch]).encode()).hexdigest()[:20]
        tags = {TENANT_TAG: tenant, "doc_runs/trigger": "schedule",
                "doc_runs/documents": str(len(batch))}
        if describe is not None:
            tags[DESCRIPTION_TAG] = describe(batch)
        run_key = f"unfinished:{stamp}:{digest}"
        if len(batch) == 1:
            requests.append(RunRequest(run_key=run_key, partition_key=batch[0], tags=tags))
        else:
            requests.append(RunRequest(run_key=run_key,
                                       tags={**tags, **range_tags(batch[0], batch[-1])}))
        log_run_requested("unfinished_documents_schedule", run_key, batch, tenant)
    return requests


def build_unfinished_documents_schedule(settings: ScheduleSettings) -> ScheduleDefinition:
    max_documents = settings.max_documents_per_run

    @schedule(
        name="unfinished_documents_schedule",
        job=document_pipeline,
        cron_schedule=settings.nightly_cron,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Runs every document that has not finished (pending, or stopped before "
        "its summary without a quarantine) and that no run in progress covers, by tenant, "
        f"at most {max_documents} neighbouring documents a run.",
    )
    def unfinished_documents_schedule(
        context: ScheduleEvaluationContext, document_store: DocumentStoreResource
    ) -> list[RunRequest] | SkipReason:
        """Documents covered by a document run that has not ended (by its partition tag or its
        range) are left to that run, and only those: skipping the whole tick whenever any
        document run is active would starve this schedule on a busy instance, where the inbox
        keeps some run going most of the time. A document whose run ends unfinished after
        the tick waits for the next night (or a re-execution from the UI)."""
        store = document_store.store()
        plan = plan_unfinished_runs(context.instance, store, max_documents)
        for key in plan.ownerless:
            context.log.warning(f"document {key} is registered but not in the store; "
                                "not scheduled")
        requests = unfinished_run_requests(plan, _tick_stamp(context),
                                           lambda batch: describe_documents(store, batch))
        if requests:
            return requests
        counts = ", ".join(f"{n} {status}" for status, n in sorted(plan.statuses.items()))
        if not plan.unfinished:
            total = sum(plan.statuses.values())
            return SkipReason(f"no unfinished documents: all {total} finished"
                              + (f" ({counts})" if counts else ""))
        return SkipReason(
            f"{plan.unfinished} unfinished documents, none to start: {plan.busy} in runs "
            f"that have not ended, {len(plan.ownerless)} not in the store ({counts})"
        )

    return unfinished_documents_schedule


def build_corpus_report_schedule(settings: ScheduleSettings) -> ScheduleDefinition:
    @schedule(
        name="corpus_report_schedule",
        job=corpus_report_job,
        cron_schedule=settings.report_cron,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Rebuilds the corpus report, unless a report run is already waiting to "
        "start.",
    )
    def corpus_report_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        pending = pending_report_runs(context.instance)
        if pending:
            return SkipReason(f"report run {pending[0]} has not started yet; it will show "
                              "everything recorded until it starts")
        return RunRequest(run_key=f"report-schedule:{_tick_stamp(context)}",
                          tags={"doc_runs/trigger": "schedule"})

    return corpus_report_schedule


# Read when the code location loads, like the resources' environment variables.
SETTINGS = ScheduleSettings.from_env()
unfinished_documents_schedule = build_unfinished_documents_schedule(SETTINGS)
corpus_report_schedule = build_corpus_report_schedule(SETTINGS)
