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

from doc_runs.auth import may_access
from doc_runs.core.agent.ledger import DocumentLedger, RunBudget, UsageTotals, totals
from doc_runs.core.agent.protocol import ModelRateLimited, ModelUnavailable
from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.core.isolation import stop_isolated_calls
from doc_runs.core.outcomes import TransientStageError
from doc_runs.core.stages import (
    STAGE_OUTPUTS,
    DocumentChunks,
    DocumentFindings,
    DocumentSummary,
    DocumentText,
    StageOutput,
    StoredDocument,
)
from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import DOCUMENTS, documents_table, outcome_metadata
from doc_runs.defs.partitions import BATCH_TAG, run_batch
from doc_runs.defs.tags import PROGRESS_TAG, TENANT_TAG
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


MAX_FIELD_CHARS = 1000  # of one field's values as the report shows them


def stage_facts(output: StageOutput) -> dict[str, Any]:
    """The counts each stage reports for one document."""
    if isinstance(output, StoredDocument):
        return {
            "media_type": output.media_type,
            "size_bytes": output.size_bytes,
            "source_name": output.source_name,
        }
    if isinstance(output, DocumentText):
        return {
            "pages": len(output.pages),
            "characters": output.chars,
            "pages_without_text": len(output.pages_without_text),
            "pages_failed": len(output.pages_failed),
            "pdf_warnings": output.pdf_warnings,
            # Which engine's text was kept, where a PDF was read (see the second opinion).
            **({"pdf_engine": output.pdf_engine} if output.pdf_engine else {}),
            **({"pdf_engine_note": output.pdf_engine_note} if output.pdf_engine_note else {}),
        }
    if isinstance(output, DocumentChunks):
        return {"chunks": len(output.chunks)}
    if isinstance(output, DocumentFindings):
        answers = output.findings.fields if output.findings else {}
        answered = [name for name, answer in answers.items() if answer.answered]
        return {"backend": output.backend, "model": output.model,
                "fields_answered": len(answered),
                "fields_uncited": [n for n in answered if not answers[n].cited],
                # What the report shows per field, kept with the record so that reading a
                # day's documents needs no artifact.
                "fields": {n: answers[n].display()[:MAX_FIELD_CHARS] for n in answered}}
    if isinstance(output, DocumentSummary):
        summary = output.summary
        return {
            "summary_sentences": len(summary.sentences) if summary else 0,
            "citations": len(summary.citations) if summary else 0,
            "summary_first_sentence": summary.sentences[0].text
            if summary and summary.sentences else None,
        }
    return {}


class LedgerBook:
    """One ledger per document of a step; their totals become the documents' usage facts."""

    def __init__(self, scope: StageScope, stage: str,
                 make: Callable[[], DocumentLedger]) -> None:
        self.scope, self.stage, self.make = scope, stage, make
        self.ledgers: dict[str, DocumentLedger] = {}

    def open(self, key: str) -> DocumentLedger:
        self.ledgers[key] = self.make()
        return self.ledgers[key]

    def close(self, key: str) -> None:
        if key in self.ledgers:  # not opened when the stage failed before its first call
            write_ledger(self.scope, key, self.stage, self.ledgers[key])

    def facts(self, key: str) -> dict[str, Any]:
        ledger = self.ledgers.get(key)
        return usage_facts(totals(ledger.records if ledger else []))


def usage_facts(usage: UsageTotals) -> dict[str, Any]:
    return {
        "model_calls": usage.model_calls,
        "cached_model_calls": usage.cached_model_calls,
        "tool_calls": usage.tool_calls,
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "cost_usd": usage.cost_usd,
    }


@dataclass
class StageScope:
    """What a stage works on in this run: its batch and, of the batch's documents, those
    whose latest batch it still is (a document named by a newer batch is that batch's to
    work on; see doc_runs.core.catalog)."""

    context: AssetExecutionContext
    store: DocumentStore
    catalog: DocumentCatalog
    batch: Batch
    documents: list[str]

    @property
    def tenant(self) -> str:
        return self.batch.tenant

    def load(self, stage: str) -> dict[str, Any]:
        """The outputs an earlier stage stored for this scope's documents."""
        model = STAGE_OUTPUTS[stage]
        return {key: model.model_validate_json(
                    self.store.read_artifact(stage, model.VERSION, key))
                for key in self.documents}


def stage_scope(context: AssetExecutionContext, store: DocumentStore,
                catalog: DocumentCatalog) -> StageScope:
    """The run's batch, or a failure without retries for a run that names none: a run
    launched by hand from the UI has no documents of its own (`doc-runs rerun` starts one
    for a document, the sensors and schedules for theirs)."""
    batch = run_batch(catalog, context.run.tags)
    if batch is None:
        named = context.run.tags.get(BATCH_TAG)
        raise Failure(
            description=(f"run names batch {named!r}, which the catalog does not hold"
                         if named else "run names no batch of documents (no "
                         f"{BATCH_TAG} tag): document runs are started per batch by the "
                         "sensors, the nightly schedule and `doc-runs process` or "
                         "`doc-runs rerun DOCUMENT_ID`; re-execute a failed run to redo "
                         "its batch"),
            metadata={"batch": named or ""}, allow_retries=False)
    return StageScope(context, store, catalog, batch, catalog.current_documents(batch))


def run_tenant(context: AssetExecutionContext) -> str | None:
    """The tenant a run acts for (its tag; a run without one acts for its batch's)."""
    return context.run.tags.get(TENANT_TAG)


def refuse_documents_of_other_tenants(scope: StageScope) -> None:
    """The worker's half of the one auth rule (doc_runs.auth.may_access): a run acting for a
    tenant touches only that tenant's documents, and its batch is that tenant's. Checked
    before any stage work, and fatal: retrying cannot change ownership, and nothing is
    recorded for the other tenant's document."""
    tenant = run_tenant(scope.context) or scope.batch.tenant
    foreign = [key for key in scope.batch.documents
               if not may_access(tenant, scope.store.owner(key))]
    if tenant != scope.batch.tenant or foreign:
        raise Failure(
            description=f"run acts for tenant {tenant!r} but "
            + (f"its batch belongs to tenant {scope.batch.tenant!r}"
               if tenant != scope.batch.tenant
               else f"{len(foreign)} of its documents belong to another tenant or do not "
               "exist") + "; nothing was processed",
            metadata={"tenant": tenant, "refused_documents": foreign[:20]},
            allow_retries=False,
        )


def run_is_terminating(context: AssetExecutionContext) -> bool:
    """Whether this run was asked to end or was ended from outside: the UI's Terminate, a
    canceled command (CANCELING, CANCELED), or run monitoring past the maximum runtime, which
    may mark it FAILURE before its interrupt arrives here."""
    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and run.status not in (DagsterRunStatus.STARTED,
                                                  DagsterRunStatus.STARTING)


def write_ledger(scope: StageScope, key: str, stage: str, ledger: DocumentLedger) -> None:
    """Every call made for the document in this attempt, kept per attempt so a failed
    attempt's spend is never overwritten by its retry."""
    run_id = scope.context.run.run_id
    attempt = scope.context.retry_number + 1
    rows = [
        {**record.model_dump(), "document_id": key, "stage": stage, "run_id": run_id,
         "attempt": attempt, "tenant": scope.tenant}
        for record in ledger.records
    ]
    scope.store.write_ledger(key, f"{stage}-{run_id}-{attempt}", rows)


def run_budget(scope: StageScope, max_tokens: int) -> RunBudget:
    """The step's share of the run's token budget: what this run already spent on these
    documents (earlier stages, earlier attempts) counts."""
    run_id = scope.context.run.run_id
    spent = sum(
        row["tokens_in"] + row["tokens_out"]
        for key in scope.documents
        for row in scope.store.read_ledger(key)
        if row["run_id"] == run_id and row["kind"] == "model" and not row["cached"]
    )
    return RunBudget(max_tokens, spent)


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
