"""A document run that failed (a transient error outlived its retries) ends each document of
its batch that did not reach the last stage in that run as `failed`: the status, the report
and the nightly schedule read it. The outcome events sensor records it with the daemon; a
command that ran the run itself and waited for it records it at once, the same record."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance, DagsterRun

from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.defs.jobs import DOCUMENT_JOB
from doc_runs.defs.partitions import run_batch


@dataclass(frozen=True)
class FailedRun:
    batch: Batch
    message: str
    documents: list[str]  # those it ended as failed


def record_failed_run(catalog: DocumentCatalog, run: DagsterRun, message: str | None,
                      at: float) -> FailedRun | None:
    """Records the failure of `run` (its RUN_FAILURE event's message and time) for its
    batch's documents; None for a run that is not a batch's document run."""
    if run.job_name != DOCUMENT_JOB:
        return None
    batch = run_batch(catalog, run.tags)
    if batch is None:
        return None
    text = (message or "the run failed")[:500]
    return FailedRun(batch, text, catalog.record_run_failure(batch, run.run_id, text, at))


def record_failure_of_run(instance: DagsterInstance, catalog: DocumentCatalog, run_id: str
                          ) -> FailedRun | None:
    """The same, for a run that ended FAILURE, read from its event (a command that waited
    for the run: no daemon may be there to do it)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    entries = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    if not entries:
        return None
    entry = entries[-1]
    return record_failed_run(catalog, run,
                             entry.dagster_event.message if entry.dagster_event else None,
                             entry.timestamp)
