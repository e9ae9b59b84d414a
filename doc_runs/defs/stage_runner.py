"""Runs one stage over every document of a step and records the facts of each: outcome,
reason, duration, attempt and the stage's counts, as asset metadata per document, as a record
in the store (which the corpus report reads) and as one JSON log line per step."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagster import AssetExecutionContext, DagsterRunStatus, Failure, RetryRequested

from doc_runs.auth import may_access
from doc_runs.core.agent.ledger import DocumentLedger, RunBudget, UsageTotals, totals
from doc_runs.core.agent.protocol import ModelRateLimited, ModelUnavailable
from doc_runs.core.isolation import stop_isolated_calls
from doc_runs.core.outcomes import TransientStageError
from doc_runs.core.stages import (
    DocumentChunks,
    DocumentFindings,
    DocumentSummary,
    DocumentText,
    StageOutput,
    StoredDocument,
)
from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import names_metadata, outcome_metadata
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
                "fields_uncited": [n for n in answered if not answers[n].cited]}
    if isinstance(output, DocumentSummary):
        summary = output.summary
        return {
            "summary_sentences": len(summary.sentences) if summary else 0,
            "citations": len(summary.citations) if summary else 0,
        }
    return {}


class LedgerBook:
    """One ledger per document of a step; their totals become the documents' usage facts."""

    def __init__(self, context: AssetExecutionContext, store: DocumentStore, stage: str,
                 make: Callable[[], DocumentLedger]) -> None:
        self.context, self.store, self.stage, self.make = context, store, stage, make
        self.ledgers: dict[str, DocumentLedger] = {}

    def open(self, key: str) -> DocumentLedger:
        self.ledgers[key] = self.make()
        return self.ledgers[key]

    def close(self, key: str) -> None:
        if key in self.ledgers:  # not opened when the stage failed before its first call
            write_ledger(self.context, self.store, key, self.stage, self.ledgers[key])

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


def run_tenant(context: AssetExecutionContext) -> str | None:
    """The tenant a run acts for; None for a run an operator launched in the UI without one,
    which acts for each document's owner."""
    return context.run.tags.get(TENANT_TAG)


def refuse_documents_of_other_tenants(context: AssetExecutionContext,
                                      store: DocumentStore) -> None:
    """The worker's half of the one auth rule (doc_runs.auth.may_access): a run acting for a
    tenant touches only that tenant's documents. Checked before any stage work, and fatal:
    retrying cannot change ownership, and nothing is recorded for the other tenant's
    document."""
    tenant = run_tenant(context)
    if tenant is None:
        return
    foreign = [key for key in context.partition_keys
               if not may_access(tenant, store.owner(key))]
    if foreign:
        raise Failure(
            description=f"run acts for tenant {tenant!r} but {len(foreign)} of its documents "
            "belong to another tenant or do not exist; nothing was processed",
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


def tenant_of(context: AssetExecutionContext, store: DocumentStore, key: str) -> str:
    return run_tenant(context) or store.owner(key) or "default"


def write_ledger(context: AssetExecutionContext, store: DocumentStore, key: str, stage: str,
                 ledger: DocumentLedger) -> None:
    """Every call made for the document in this attempt, kept per attempt so a failed
    attempt's spend is never overwritten by its retry."""
    run_id = context.run.run_id
    attempt = context.retry_number + 1
    rows = [
        {**record.model_dump(), "document_id": key, "stage": stage, "run_id": run_id,
         "attempt": attempt, "tenant": tenant_of(context, store, key)}
        for record in ledger.records
    ]
    store.write_ledger(key, f"{stage}-{run_id}-{attempt}", rows)


def run_budget(context: AssetExecutionContext, store: DocumentStore, max_tokens: int
               ) -> RunBudget:
    """The step's share of the run's token budget: what this run already spent on these
    documents (earlier stages, earlier attempts) counts."""
    run_id = context.run.run_id
    spent = sum(
        row["tokens_in"] + row["tokens_out"]
        for key in context.partition_keys
        for row in store.read_ledger(key)
        if row["run_id"] == run_id and row["kind"] == "model" and not row["cached"]
    )
    return RunBudget(max_tokens, spent)


def add_partition_metadata(context: AssetExecutionContext, partition_key: str,
                           metadata: dict[str, Any]) -> None:
    """`context.add_asset_metadata(metadata, partition_key=...)` without its check that the key
    is one the step targets: that check reads every key of the `documents` partitions from
    the instance on each call (8 ms a call with a few thousand documents, and growing with
    them), and run_stage passes only keys of `context.partition_keys`. Uses the step
    context's metadata accumulator, as add_asset_metadata does (pinned Dagster release)."""
    step = context.op_execution_context._step_execution_context
    step._metadata_accumulator = (
        step._metadata_accumulator.with_additional_asset_metadata(
            asset_key=context.asset_key, partition_key=partition_key, metadata=metadata))


class StoredOutputs(dict[str, StageOutput]):
    """A stage's outputs, each already written to the store by run_stage."""

    already_stored = True


def run_stage(
    context: AssetExecutionContext,
    store: DocumentStore,
    stage: str,
    compute: Callable[[str], StageOutput],
    *,
    workers: int = 1,
    rate_limit_retries: int = 5,
    extra_facts: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, StageOutput]:
    keys = list(context.partition_keys)
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
                         run_id=run_id, document_id=key,
                         tenant=tenant_of(context, store, key), stage=stage, attempt=attempt,
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
        # says the stage succeeded waits for the step (below).
        store.write_artifact(stage, type(output).VERSION, key,
                             output.model_dump_json().encode())
        if facts_on:
            log_fact(f"{stage} {facts['status']} for document {key}", run_id=run_id,
                     document_id=key, tenant=tenant_of(context, store, key), stage=stage,
                     attempt=attempt, duration_ms=round(duration * 1000),
                     outcome=facts["status"], reason=facts["reason"], detail=facts["detail"])
        if journal:
            store.append_progress(run_id, {"stage": stage, "document_id": key,
                                           "status": facts["status"],
                                           "reason": facts["reason"]})
        return key, output, duration, facts

    results: Iterable[tuple[str, StageOutput, float, dict[str, Any]]]
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

    outputs: dict[str, StageOutput] = StoredOutputs()
    outcomes: Counter[str] = Counter()
    for key, output, _, facts in results:
        outcome = output.outcome
        # Written once every document of the step is done: a step that fails on one
        # document (and is retried or re-executed as a whole) leaves no record claiming the
        # others finished a stage Dagster never saw materialized.
        store.write_record(key, stage, {**facts, "stage": stage, "run_id": run_id,
                                        "recorded_at": round(time.time(), 3)})
        shown = {**facts, **names_metadata(store, key), **outcome_metadata(store, stage, output)}
        add_partition_metadata(context, key, {k: v for k, v in shown.items() if v is not None})
        if not outcome.ok and outcome.reason:
            outcomes[f"quarantined:{outcome.reason.value}"] += 1
        else:
            outcomes[outcome.status.value] += 1
        outputs[key] = output
    context.log.info(
        json.dumps(
            {
                "stage": stage,
                "documents": len(keys),
                "attempt": attempt,
                "outcomes": dict(outcomes),
                "duration_s": round(sum(d for _, _, d, _ in results), 4),
            },
            sort_keys=True,
        )
    )
    return outputs
