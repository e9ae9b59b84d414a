"""Sensors: the inbox folder starts document runs; finished document runs refresh the report."""


import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)

from doc_runs.core.store import DocumentStore
from doc_runs.defs.jobs import corpus_report_job, document_pipeline
from doc_runs.defs.partitions import documents, range_tags
from doc_runs.defs.resources import DocumentStoreResource, InboxResource

# Well under the 60 s a sensor evaluation may take.
_TICK_BUDGET_S = 20.0


def _inbox_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not name.endswith((".part", ".tmp", ".crdownload")):
                yield Path(folder) / name


def ingest_inbox(
    store: DocumentStore, inbox: InboxResource, now: float
) -> tuple[list[str], list[str]]:
    """Store every new, settled file of the inbox (content-addressed) and return the document
    ids in arrival order, and the files that could not be read."""
    root = Path(inbox.path)
    if not root.is_dir():
        return [], []
    ids: list[str] = []
    unreadable: list[str] = []
    started = time.monotonic()
    for path in _inbox_files(root):
        if len(ids) >= inbox.max_files_per_tick or time.monotonic() - started > _TICK_BUDGET_S:
            break
        try:
            stat = path.stat()
            if now - stat.st_mtime < inbox.settle_seconds:
                continue
            fingerprint = f"inbox:{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}"
            if store.was_seen(fingerprint):
                continue
            document_id = store.put_file(path)
        except OSError as exc:
            unreadable.append(f"{path}: {exc.strerror or exc}")
            continue
        store.add_source_name(document_id, path.name)
        store.mark_seen(fingerprint, document_id)
        ids.append(document_id)
    return ids, unreadable


@sensor(
    job=document_pipeline,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Stores new files dropped in the inbox folder and starts a run per batch.",
)
def inbox_sensor(
    context: SensorEvaluationContext,
    document_store: DocumentStoreResource,
    inbox: InboxResource,
) -> SensorResult | SkipReason:
    store = document_store.store()
    arrived, unreadable = ingest_inbox(store, inbox, time.time())
    for problem in unreadable:
        context.log.warning(f"inbox file not readable, left in place: {problem}")
    new = [
        key
        for key in dict.fromkeys(arrived)
        if not context.instance.has_dynamic_partition(documents.name, key)
    ]
    if not new:
        return SkipReason(f"no new documents in {inbox.path}")
    size = inbox.max_documents_per_run
    requests = []
    for i in range(0, len(new), size):
        batch = new[i : i + size]
        # Same documents, same key: a repeated tick never starts a second run for them.
        run_key = "inbox:" + hashlib.sha256("\n".join(batch).encode()).hexdigest()[:20]
        tags = {"doc_runs/trigger": "inbox", "doc_runs/documents": str(len(batch))}
        if len(batch) == 1:
            requests.append(RunRequest(run_key=run_key, partition_key=batch[0], tags=tags))
        else:
            requests.append(
                RunRequest(run_key=run_key, tags={**tags, **range_tags(batch[0], batch[-1])})
            )
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[documents.build_add_request(new)],
    )


def _report_request(context: RunStatusSensorContext) -> RunRequest:
    return RunRequest(
        run_key=f"report-after:{context.dagster_run.run_id}",
        tags={"doc_runs/trigger": "document_run_finished"},
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[document_pipeline],
    request_job=corpus_report_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes the corpus report after a document run succeeds.",
)
def report_after_success(context: RunStatusSensorContext) -> RunRequest:
    return _report_request(context)


@run_status_sensor(
    run_status=DagsterRunStatus.FAILURE,
    monitored_jobs=[document_pipeline],
    request_job=corpus_report_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes the corpus report after a document run fails, so the failure shows.",
)
def report_after_failure(context: RunStatusSensorContext) -> RunRequest:
    return _report_request(context)
