"""Everything a stage's step writes of its documents, in one place: as each document finishes,
its output in the store, its fact line and its line in the run's progress journal; the model
and tool calls made for it; and once every document is done, the step's records in the
catalog."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from dagster import DagsterRun

from doc_runs.core.agent.ledger import DocumentLedger
from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.core.stages import StageOutput
from doc_runs.core.store import DocumentStore
from doc_runs.defs.stage_scope import StageScope
from doc_runs.defs.tags import PROGRESS_TAG
from doc_runs.logs import facts_enabled, log_fact


@dataclass(frozen=True)
class DocumentDone:
    """A document the stage finished: its output, the time the stage took on it and the facts
    its record holds."""

    key: str
    output: StageOutput
    duration_s: float
    facts: dict[str, Any]


def keeps_progress_journal(run: DagsterRun) -> bool:
    """Only the command's own runs: a re-execution or run retry inherits the tag, and no
    command reads (and deletes) its journal."""
    return run.tags.get(PROGRESS_TAG) == "journal" and run.parent_run_id is None


@dataclass(frozen=True)
class StageRecorder:
    """Writes what one step of a stage leaves behind, for one run and attempt."""

    store: DocumentStore
    catalog: DocumentCatalog
    batch: Batch
    stage: str
    run_id: str
    attempt: int
    journal: bool = False  # see keeps_progress_journal
    facts_on: bool = False  # whether fact lines go anywhere (doc_runs.logs.facts_enabled)

    @classmethod
    def of(cls, scope: StageScope, stage: str) -> StageRecorder:
        return cls(scope.store, scope.catalog, scope.batch, stage, scope.run_id, scope.attempt,
                   keeps_progress_journal(scope.context.run), facts_enabled())

    @property
    def tenant(self) -> str:
        return self.batch.tenant

    def document_finished(self, done: DocumentDone) -> None:
        """The output is stored as each document finishes (content-addressed: a retry writes
        the same bytes), and a watcher of the run hears of it at once; the record that says
        the stage succeeded waits for the step (step_finished). A document a newer request
        took over meanwhile is that request's run's to store (its settings may differ): this
        run's output is not written over it. (A takeover between this check and the write
        leaves this write first: the newer run, seconds from starting, writes after.)"""
        if not self.catalog.is_current(self.batch, done.key):
            return
        self.store.write_artifact(self.stage, type(done.output).VERSION, done.key,
                                  done.output.model_dump_json().encode())
        status, reason = done.facts["status"], done.facts["reason"]
        if self.facts_on:
            log_fact(f"{self.stage} {status} for document {done.key}", run_id=self.run_id,
                     document_id=done.key, tenant=self.tenant, stage=self.stage,
                     attempt=self.attempt, duration_ms=round(done.duration_s * 1000),
                     outcome=status, reason=reason, detail=done.facts["detail"])
        if self.journal:
            self.store.append_progress(self.run_id, {"stage": self.stage,
                                                     "document_id": done.key,
                                                     "status": status, "reason": reason})

    def document_failed(self, key: str, error: BaseException, duration_s: float) -> None:
        if self.facts_on:
            cause = error.__cause__ or error
            log_fact(f"{self.stage} failed on document {key}", level=logging.WARNING,
                     run_id=self.run_id, document_id=key, tenant=self.tenant,
                     stage=self.stage, attempt=self.attempt,
                     duration_ms=round(duration_s * 1000), outcome="failed",
                     reason=f"{type(cause).__name__}: {cause}"[:500])

    def document_calls(self, key: str, ledger: DocumentLedger) -> None:
        """Kept per attempt, so a failed attempt's spend is never overwritten by its retry."""
        rows = [
            {**record.model_dump(), "document_id": key, "stage": self.stage,
             "run_id": self.run_id, "attempt": self.attempt, "tenant": self.tenant}
            for record in ledger.records
        ]
        self.store.write_ledger(key, f"{self.stage}-{self.run_id}-{self.attempt}", rows)

    def step_finished(self, done: list[DocumentDone]) -> set[str]:
        """The records of the documents that are still this run's, in one transaction, once
        every document of the step is done: a step that fails on one document (and is retried
        or re-executed as a whole) leaves no record claiming the others finished a stage
        Dagster never saw materialized. Returns the documents recorded."""
        now = round(time.time(), 3)
        return set(self.catalog.write_stage_records(self.batch, self.stage, {
            d.key: {**d.facts, "stage": self.stage, "run_id": self.run_id, "recorded_at": now}
            for d in done}))
