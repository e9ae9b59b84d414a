"""What a stage's step shows once its records are written: the materialization's metadata (a
table of the batch's documents, the counts of their outcomes, the model usage, a lone
document's summary or findings) and one JSON log line."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagster import MaterializeResult, MetadataValue

from doc_runs.core.catalog import Batch
from doc_runs.core.stages import StageOutput
from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import DOCUMENTS, documents_table, outcome_metadata
from doc_runs.defs.stage_records import DocumentDone, StageRecorder
from doc_runs.defs.stage_scope import StageScope

ExtraFacts = Callable[[str], dict[str, Any]]  # a document's facts the caller adds (model usage)
SUPERSEDED = {"status": "superseded",
              "detail": "a newer request for this document took over before this run "
              "recorded it"}


@dataclass
class StageResult:
    outputs: dict[str, StageOutput]  # of the documents this run recorded
    metadata: dict[str, Any]  # the materialization's
    rows: list[dict[str, Any]]  # the documents table's rows, in the batch's order

    def materialization(self, **extra: Any) -> MaterializeResult:
        return MaterializeResult(metadata=self.metadata, **extra)


def step_result(scope: StageScope, recorder: StageRecorder, done: list[DocumentDone],
                recorded: set[str], extra_facts: ExtraFacts | None) -> StageResult:
    """The step's metadata, its rows and the outputs of the documents it recorded; its log
    line written."""
    stage, attempt = recorder.stage, recorder.attempt
    rows = document_rows(scope.store, scope.batch, done, recorded)
    outcomes = outcome_counts(rows)
    duration = round(sum(d.duration_s for d in done), 4)
    scope.context.log.info(json.dumps({"stage": stage, "documents": len(scope.documents),
                                       "attempt": attempt, "outcomes": outcomes,
                                       "duration_s": duration}, sort_keys=True))
    outputs = {d.key: d.output for d in done if d.key in recorded}
    metadata: dict[str, Any] = {
        "batch": scope.batch.batch_id, "tenant": scope.tenant,
        "document_count": len(scope.batch.documents), "attempt": attempt,
        "outcomes": MetadataValue.json(outcomes), "duration_s": duration,
        DOCUMENTS: documents_table(stage, rows),
        **(usage_totals(recorded, extra_facts) if extra_facts is not None else {}),
    }
    if len(scope.batch.documents) == 1 and outputs:
        (output,) = outputs.values()
        metadata.update(outcome_metadata(scope.store, stage, output))
    return StageResult(outputs, metadata, rows)


def document_rows(store: DocumentStore, batch: Batch, done: list[DocumentDone],
                  recorded: set[str]) -> list[dict[str, Any]]:
    """A row per document of the batch, in its order: the facts this run recorded, or
    superseded where it recorded none."""
    facts_of = {d.key: d.facts for d in done if d.key in recorded}
    rows = []
    for key in batch.documents:
        names = store.source_names(key)
        rows.append({"document_id": key, "name": names[0] if names else key[:12],
                     **facts_of.get(key, SUPERSEDED)})
    return rows


def outcome_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many documents ended each way: succeeded, superseded, or quarantined with each
    reason."""
    counts: Counter[str] = Counter()
    for row in rows:
        status, reason = row["status"], row.get("reason")
        counts[f"quarantined:{reason}" if status != "succeeded" and reason else status] += 1
    return dict(counts)


def usage_totals(recorded: set[str], extra_facts: ExtraFacts) -> dict[str, float]:
    """The numeric facts the caller adds (model usage), summed over the recorded documents."""
    spent: Counter[str] = Counter()
    for key in recorded:
        spent.update({k: v for k, v in extra_facts(key).items() if isinstance(v, int | float)})
    return {k: round(v, 8) for k, v in spent.items()}
