"""A document's state, read from the per-stage records its runs wrote: one rule for the corpus
report, the schedules, the HTTP API and the command line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from doc_runs.core.stages import STAGE_OUTPUTS

STAGES = tuple(STAGE_OUTPUTS)  # in the order they run


class DocumentState(StrEnum):
    PENDING = "pending"  # stored (and enqueued or registered); no stage has recorded yet
    INCOMPLETE = "incomplete"  # some stages recorded, not the last: running, or its run
    # failed on a transient error and awaits re-execution (or the nightly schedule)
    SUCCEEDED = "succeeded"
    QUARANTINED = "quarantined"
    FAILED = "failed"  # its last run failed on a transient error before it finished; it awaits
    # re-execution from the UI (or the nightly schedule)

# The record a failed document run leaves for each document it did not finish.
RUN_FAILURE = "run_failure"


@dataclass(frozen=True)
class DocumentStatus:
    state: DocumentState
    reason: str | None = None
    detail: str | None = None
    stage_reached: str | None = None
    run_id: str | None = None


def document_status(records: dict[str, dict[str, Any]]) -> DocumentStatus:
    reached = [stage for stage in STAGES if stage in records]
    failure = records.get(RUN_FAILURE)
    latest = max((records[s].get("recorded_at", 0) for s in reached), default=0)
    if failure is not None and failure.get("recorded_at", 0) >= latest:
        return DocumentStatus(DocumentState.FAILED, failure.get("reason"), failure.get("detail"),
                              reached[-1] if reached else None, failure.get("run_id"))
    if not reached:
        return DocumentStatus(DocumentState.PENDING)
    last = records[reached[-1]]
    # A quarantine passes down to the last stage, so its record is the document's end and
    # wins over a stale quarantine an earlier run left on an earlier stage.
    if reached[-1] == STAGES[-1] or last.get("status") == "quarantined":
        state = (DocumentState.SUCCEEDED if last.get("status") == "succeeded"
                 else DocumentState.QUARANTINED)
        return DocumentStatus(state, last.get("reason"), last.get("detail"), reached[-1],
                              last.get("run_id"))
    return DocumentStatus(DocumentState.INCOMPLETE, stage_reached=reached[-1],
                          run_id=last.get("run_id"))
