"""Runs one stage over the documents of a run's batch and records the facts of each: outcome,
reason, duration, attempt and the stage's counts, as a record per document in the catalog (which
the status, the report and the schedules read), as a table of the batch's documents in the
step's materialization, and as one JSON log line per step."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    DagsterRunStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
)

from doc_runs.core.agent.protocol import ModelRateLimited, ModelUnavailable
from doc_runs.core.isolation import stop_isolated_calls
from doc_runs.core.outcomes import TransientStageError
from doc_runs.core.stages import StageOutput
from doc_runs.defs.outcome_view import DOCUMENTS, documents_table, outcome_metadata
from doc_runs.defs.stage_facts import stage_facts
from doc_runs.defs.stage_scope import StageScope
from doc_runs.defs.tags import PROGRESS_TAG
from doc_runs.logs import facts_enabled, log_fact

# Raised for these, a step is retried by its RetryPolicy; anything else is a bug or a
# permanent condition and fails without retries.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientStageError,
    ModelUnavailable,
    ModelRateLimited,  # turned into RetryRequested with the server's wait below
    OSError,
    TimeoutError,
    ConnectionError,
)


def run_is_terminating(context: AssetExecutionContext) -> bool:
    """Whether this run was asked to end or was ended from outside: the UI's Terminate, a
    canceled command (CANCELING, CANCELED), or run monitoring past the maximum runtime, which
    may mark it FAILURE before its interrupt arrives here."""
    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and run.status not in (DagsterRunStatus.STARTED,
                                                  DagsterRunStatus.STARTING)


@dataclass
class StageResult:
    outputs: dict[str, StageOutput]  # of the documents this run recorded
    metadata: dict[str, Any]  # the materialization's
    rows: list[dict[str, Any]]  # the documents table's rows, in the batch's order

    def materialization(self, **extra: Any) -> MaterializeResult:
        return MaterializeResult(metadata=self.metadata, **extra)


def run_stage(
    scope: StageScope,
    stage: str,
    compute: Callable[[str], StageOutput],
    *,
    workers: int = 1,
    rate_limit_retries: int = 5,
    extra_facts: Callable[[str], dict[str, Any]] | None = None,
) -> StageResult:
    context, store = scope.context, scope.store
    keys = scope.documents
    attempt = context.retry_number + 1
    run_id = context.run.run_id
    # Only the command's own runs: a re-execution or run retry inherits the tag, and no
    # command reads (and deletes) its journal.
    journal = context.run.tags.get(PROGRESS_TAG) == "journal" and \
        context.run.parent_run_id is None

    facts_on = facts_enabled()

    def one(key: str) -> tuple[str, StageOutput, float, dict[str, Any]]:
        started = time.perf_counter()
        try:
            return stage_one(key, started)
        except BaseException as exc:
            if facts_on:
                cause = exc.__cause__ or exc
                log_fact(f"{stage} failed on document {key}", level=logging.WARNING,
                         run_id=run_id, document_id=key, tenant=scope.tenant, stage=stage,
                         attempt=attempt,
                         duration_ms=round((time.perf_counter() - started) * 1000),
                         outcome="failed", reason=f"{type(cause).__name__}: {cause}"[:500])
            raise

    def stage_one(key: str, started: float) -> tuple[str, StageOutput, float, dict[str, Any]]:
        try:
            output = compute(key)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            raise Failure(
                description=f"{stage} failed on document {key}: {type(exc).__name__}: {exc}",
                metadata={"document_id": key, "stage": stage, "error": type(exc).__name__},
                allow_retries=False,
            ) from exc
        duration = time.perf_counter() - started
        outcome = output.outcome
        facts = {
            "status": outcome.status.value,
            "reason": outcome.reason.value if outcome.reason else None,
            "detail": outcome.detail,
            "duration_s": round(duration, 4),
            "attempt": attempt,
            **stage_facts(output),
            **(extra_facts(key) if extra_facts else {}),
        }
        # The output is stored as each document finishes (content-addressed: a retry writes
        # the same bytes), and a watcher of the run hears of it at once; the record that
        # says the stage succeeded waits for the step (below). A document a newer request
        # took over meanwhile is that request's run's to store (its settings may differ):
        # this run's output is not written over it. (A takeover between this check and the
        # write leaves this write first: the newer run, seconds from starting, writes after.)
        if not scope.catalog.is_current(scope.batch, key):
            return key, output, duration, facts
        store.write_artifact(stage, type(output).VERSION, key,
                             output.model_dump_json().encode())
        if facts_on:
            log_fact(f"{stage} {facts['status']} for document {key}", run_id=run_id,
                     document_id=key, tenant=scope.tenant, stage=stage,
                     attempt=attempt, duration_ms=round(duration * 1000),
                     outcome=facts["status"], reason=facts["reason"], detail=facts["detail"])
        if journal:
            store.append_progress(run_id, {"stage": stage, "document_id": key,
                                           "status": facts["status"],
                                           "reason": facts["reason"]})
        return key, output, duration, facts

    results: list[tuple[str, StageOutput, float, dict[str, Any]]]
    try:
        if workers > 1 and len(keys) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
                try:
                    results = list(pool.map(one, keys))
                except BaseException as stopped:
                    # Dagster raises a run's termination in this thread; leaving the `with`
                    # waits for the pool's threads, which would each wait for its parser
                    # (minutes for a spinning PDF) unless their workers are stopped first.
                    if not isinstance(stopped, Exception):
                        pool.shutdown(wait=False, cancel_futures=True)
                        stop_isolated_calls(f"{stage} interrupted ({type(stopped).__name__})")
                    raise
        else:
            results = [one(key) for key in keys]
    except ModelRateLimited as limited:
        # The call cache keeps every completed call: the retry re-sends only the rest.
        context.log.warning(f"{stage}: {limited}; retrying the step after the wait")
        raise RetryRequested(max_retries=rate_limit_retries,
                             seconds_to_wait=limited.retry_after_s) from limited
    except BaseException as stopped:
        if not isinstance(stopped, Exception) and run_is_terminating(context):
            # Dagster retries a step its interrupt stopped when the step has a retry policy
            # (it takes the interrupt for a preemption), and the in-process executor would
            # then start this stage again in a run asked to end. A failure that allows no
            # retry ends the step; the run then ends CANCELED (FAILURE where run monitoring
            # stopped it past its maximum runtime).
            raise Failure(description=f"{stage} stopped: the run was asked to terminate",
                          metadata={"stage": stage}, allow_retries=False) from stopped
        raise

    # Recorded once every document of the step is done, in one transaction: a step that
    # fails on one document (and is retried or re-executed as a whole) leaves no record
    # claiming the others finished a stage Dagster never saw materialized.
    now = round(time.time(), 3)
    recorded = set(scope.catalog.write_stage_records(scope.batch, stage, {
        key: {**facts, "stage": stage, "run_id": run_id, "recorded_at": now}
        for key, _, _, facts in results}))
    outputs: dict[str, StageOutput] = {}
    outcomes: Counter[str] = Counter()
    by_key = {key: facts for key, _, _, facts in results}
    rows = []
    for key in scope.batch.documents:
        names = store.source_names(key)
        row: dict[str, Any] = {"document_id": key, "name": names[0] if names else key[:12]}
        facts = by_key.get(key)
        if key not in recorded or facts is None:
            row.update(status="superseded", detail="a newer request for this document took "
                       "over before this run recorded it")
            outcomes["superseded"] += 1
        else:
            row.update(facts)
            status, reason = facts["status"], facts["reason"]
            outcomes[f"quarantined:{reason}" if status != "succeeded" and reason
                     else status] += 1
        rows.append(row)
    for key, output, _, _ in results:
        if key in recorded:
            outputs[key] = output
    duration = round(sum(d for _, _, d, _ in results), 4)
    context.log.info(json.dumps({"stage": stage, "documents": len(keys), "attempt": attempt,
                                 "outcomes": dict(outcomes), "duration_s": duration},
                                sort_keys=True))
    metadata: dict[str, Any] = {
        "batch": scope.batch.batch_id, "tenant": scope.tenant,
        "document_count": len(scope.batch.documents), "attempt": attempt,
        "outcomes": MetadataValue.json(dict(outcomes)), "duration_s": duration,
        DOCUMENTS: documents_table(stage, rows),
    }
    if extra_facts is not None:
        spent = Counter()
        for key in recorded:
            spent.update({k: v for k, v in extra_facts(key).items()
                          if isinstance(v, int | float)})
        metadata.update({k: round(v, 8) for k, v in spent.items()})
    if len(scope.batch.documents) == 1 and outputs:
        (output,) = outputs.values()
        metadata.update(outcome_metadata(store, stage, output))
    return StageResult(outputs, metadata, rows)
