"""Sensors: the inbox folder starts document runs; finished document runs refresh the report."""

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogRecord,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from doc_runs.auth import valid_tenant
from doc_runs.core.intake import FolderEntry, IntakeRefused, scan_watched_folder, store_file
from doc_runs.core.store import DocumentStore
from doc_runs.defs.batches import PlannedBatch, already_requested, chunked, request_runs
from doc_runs.defs.jobs import DOCUMENT_JOB, REPORT_JOB
from doc_runs.defs.partitions import PARTITION_TAG
from doc_runs.defs.resources import (
    CatalogResource,
    DocumentStoreResource,
    ExtractionResource,
    InboxResource,
)
from doc_runs.defs.tags import DOCUMENT_RUNS_TAG, TRIGGER_TAG
from doc_runs.logs import log_fact

# Well under the 60 s a sensor evaluation may take.
_TICK_BUDGET_S = 20.0


@dataclass(frozen=True)
class InboxCursor:
    """How far the inbox has been handled: the last file, by (change time, path below the
    inbox), and the sub-folders known then. Files sort by when they arrived, so everything at
    or before the cursor was handled and anything that arrives or changes later sorts after
    it; a folder moved in whole keeps its files' old change times, so a folder not known yet
    has all its files handled. A tick that fails leaves the cursor where it was."""

    changed_ns: int = -1
    relative: bytes = b""
    folders: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str | None) -> "InboxCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(int(data["changed_ns"]), bytes.fromhex(data["path_hex"]),
                   frozenset(data.get("folders", ())))

    def dump(self) -> str:
        return json.dumps({"changed_ns": self.changed_ns, "path_hex": self.relative.hex(),
                           "folders": sorted(self.folders)})

    def before(self, entry: FolderEntry) -> bool:
        return (self.changed_ns, self.relative) < (entry.changed_ns, entry.relative)


@dataclass
class InboxTick:
    arrived: list[str]  # document ids, in arrival order
    refused: list[IntakeRefused]
    cursor: InboxCursor


def ingest_inbox(store: DocumentStore, inbox: InboxResource, max_bytes: int,
                 after: InboxCursor, now_ns: int) -> InboxTick:
    """Store the settled files that arrived after the cursor (or in a folder moved in since),
    oldest first, within the tick's budget. Refused files stay where they are and count as
    handled: the reason is logged, and a file that is fixed (chmod, rewritten, moved in
    again) changes its ctime and comes back. An error writing the store (a full disk)
    propagates, so the tick fails and the same files are tried again."""
    if not valid_tenant(inbox.tenant):
        raise ValueError(f"the inbox's tenant {inbox.tenant!r} is not a tenant name "
                         "(DOC_RUNS_INBOX_TENANT: lower-case letters, digits, - and _)")
    root = Path(inbox.path)
    if not root.is_dir():
        return InboxTick([], [], after)
    settled_before = now_ns - int(inbox.settle_seconds * 1e9)
    entries = scan_watched_folder(root)
    real_root = os.path.realpath(root)
    present = {e.folder for e in entries if e.folder}
    new_folders = present - after.folders
    pending = sorted(
        (e for e in entries if e.changed_ns <= settled_before
         and (after.before(e) or e.folder in new_folders)),
        key=lambda e: (e.changed_ns, e.relative),
    )
    tick = InboxTick([], [], after)
    position = InboxCursor(after.changed_ns, after.relative)
    started = time.monotonic()
    done = 0
    for entry in pending:
        if done >= inbox.max_files_per_tick or time.monotonic() - started > _TICK_BUDGET_S:
            break
        try:
            if entry.problem is not None:
                raise entry.problem
            # Still inside, with no more hard links than the scan found in the folder, as
            # the file is opened (queue_sensor's path messages open theirs the same way).
            vetted = entry.info
            tick.arrived.append(store_file(store, entry.path, tenant=inbox.tenant,
                                           max_bytes=max_bytes, expected=vetted,
                                           shown_as=entry.relative, inside=real_root,
                                           max_links=vetted.st_nlink if vetted else 1))
        except IntakeRefused as refused:
            tick.refused.append(refused)
        done += 1
        if position.before(entry):
            position = InboxCursor(entry.changed_ns, entry.relative)
    # A new folder becomes known once every file in it was handled; until then the files
    # handled already are handled again (the same bytes are the same document).
    unfinished = {e.folder for e in pending[done:]}
    unfinished |= {e.folder for e in entries
                   if e.folder in new_folders and e.changed_ns > settled_before}
    tick.cursor = InboxCursor(position.changed_ns, position.relative,
                              frozenset((after.folders & present) | (new_folders - unfinished)))
    return tick


@sensor(
    job_name=DOCUMENT_JOB,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Stores new files dropped in the inbox folder and starts a run per batch.",
)
def inbox_sensor(
    context: SensorEvaluationContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    inbox: InboxResource,
    extraction: ExtractionResource,
) -> SensorResult:
    store = document_store.store()
    tick = ingest_inbox(store, inbox, extraction.max_bytes, InboxCursor.parse(context.cursor),
                        time.time_ns())
    for refused in tick.refused:
        context.log.warning(f"inbox file refused, left in place ({refused.reason.value}): "
                            f"{refused.detail}")
    arrived = list(dict.fromkeys(tick.arrived))
    # A file whose bytes are already a document was handled before (or by another initiator).
    known = already_requested(context.instance, catalog.catalog(), arrived, "inbox")
    new = [key for key in arrived if key not in known]
    # Same documents, same key: a repeated tick never starts a second run for them.
    planned = [PlannedBatch("inbox:" + hashlib.sha256("\n".join(batch).encode()).hexdigest()[:20],
                            inbox.tenant, batch, "inbox")
               for batch in chunked(new, inbox.max_documents_per_run)]
    requests = request_runs(catalog.catalog(), store, planned, "inbox_sensor")
    for refused in tick.refused:
        log_fact(f"inbox file refused: {refused.detail}", level=logging.WARNING,
                 tenant=inbox.tenant, stage="intake", outcome="refused",
                 reason=refused.reason.value)
    return SensorResult(
        run_requests=requests,
        cursor=tick.cursor.dump(),
        skip_reason=None if requests else
        f"no new documents in {inbox.path} ({len(tick.refused)} refused)",
    )


# -- the corpus report: one refresh for many finished document runs ------------------------

# Every way a run can end. A failed or canceled document run changes the report too: its
# documents show as incomplete, with the stage they reached.
_FINISH_EVENTS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE,
                  DagsterEventType.RUN_CANCELED)
# A report run in these statuses has not read the store yet, so it will show every document
# run that finished before it starts: a second one waiting beside it would add nothing.
REPORT_PENDING_STATUSES = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED,
                           DagsterRunStatus.STARTING]


def pending_report_runs(instance: DagsterInstance, day: str | None = None) -> list[str]:
    """Ids of `corpus_report_job` runs (of `day`'s partition, where given) that wait to start
    (at most a few). A report run in progress is not pending: it may have read the catalog
    before the latest document run finished, so it does not stand in for a new one."""
    return list(instance.get_run_ids(
        RunsFilter(job_name=REPORT_JOB, statuses=REPORT_PENDING_STATUSES,
                   tags={PARTITION_TAG: day} if day else {}),
        limit=5,
    ))


@dataclass(frozen=True)
class FinishScan:
    document_runs: int  # document_pipeline runs seen ending
    days: frozenset[str]  # their partitions: the days whose reports changed
    upto: int | None  # every run-end event with a storage id up to this one was read


def scan_run_finishes(instance: DagsterInstance, after: int | None, page: int = 500,
                      max_pages: int = 10) -> FinishScan:
    """Read the run-end events (success, failure, cancel) stored after the event-log storage
    id `after`, oldest first and at most `max_pages` pages of each kind per call, and collect
    the days of the document runs among them. The event log cannot filter by job name in
    open-source storage, so other jobs' events (the report runs' own) are read and passed
    over.

    Without `after` (the sensor's first tick) only the newest page of each kind is read:
    older document runs were reported by whatever refreshed the report before (the hourly
    schedule at the latest), and reading years of history in one tick would not fit."""
    run_ids: set[str] = set()
    newest = after
    truncated_at: list[int] = []
    for event_type in _FINISH_EVENTS:
        records: list[EventLogRecord] = []
        more = False
        if after is None:
            records.extend(instance.fetch_run_status_changes(event_type, limit=page).records)
        else:
            cursor = None
            for _ in range(max_pages):
                result = instance.fetch_run_status_changes(
                    RunStatusChangeRecordsFilter(event_type, after_storage_id=after),
                    limit=page, cursor=cursor, ascending=True,
                )
                records.extend(result.records)
                more, cursor = result.has_more, result.cursor
                if not more:
                    break
        run_ids.update(r.run_id for r in records
                       if r.event_log_entry.job_name == DOCUMENT_JOB)
        ids = [r.storage_id for r in records]
        if more:
            truncated_at.append(max(ids))
        elif ids:
            newest = max(ids) if newest is None else max(newest, *ids)
    days = set()
    for chunk in (sorted(run_ids)[i:i + 500] for i in range(0, len(run_ids), 500)):
        days.update(run.tags[PARTITION_TAG] for run in instance.get_runs(
            RunsFilter(run_ids=chunk)) if PARTITION_TAG in run.tags)
    # A kind read only part of the way bounds what is known to be read; the rest comes in
    # the next tick.
    return FinishScan(len(run_ids), frozenset(days),
                      min(truncated_at) if truncated_at else newest)


@sensor(
    job_name=REPORT_JOB,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes the corpus report of each day whose document runs (succeeded, "
    "failed or canceled) ended since its last request, once for all of them, with at most "
    "one report run of a day waiting to start at a time.",
)
def report_refresh_sensor(context: SensorEvaluationContext) -> SensorResult:
    """The cursor is the event-log storage id up to which run-end events have been read and
    answered. It moves when every day they touched got a report run (to the last event read,
    which names the run key, so a repeated tick asks for the same runs) and when nothing but
    other jobs' runs ended (so those are not read again). While a day's report run waits to
    start, the cursor stays, so the document runs that ended meanwhile ask for one more
    report run of that day once it has started: at most one extra report per wait, and the
    report stays right when the waiting run is canceled or fails before it reads."""
    after = int(context.cursor) if context.cursor else None
    scan = scan_run_finishes(context.instance, after)
    unchanged = context.cursor
    if not scan.days or scan.upto is None:
        return SensorResult(
            skip_reason="no document run ended "
            + (f"after event {after}" if after is not None else "among the latest runs"),
            cursor=str(scan.upto) if scan.upto is not None else unchanged,
        )
    requests, waiting = [], []
    for day in sorted(scan.days):
        pending = pending_report_runs(context.instance, day)
        if pending:
            waiting.append(f"{day} (report run {pending[0]} has not started yet and will "
                           "show them)")
            continue
        requests.append(RunRequest(
            run_key=f"report-refresh:{day}:{scan.upto}", partition_key=day,
            tags={TRIGGER_TAG: "document_runs_finished",
                  DOCUMENT_RUNS_TAG: str(scan.document_runs)}))
    return SensorResult(
        run_requests=requests,
        cursor=unchanged if waiting else str(scan.upto),
        skip_reason=None if requests else
        f"{scan.document_runs} document run(s) ended; waiting: {'; '.join(waiting)}",
    )
