"""What a stage records of one document besides its outcome: the stage's own counts, and the
model and tool calls made for it (each attempt's kept in the store, their totals as facts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doc_runs.core.agent.ledger import DocumentLedger, RunBudget, UsageTotals, totals
from doc_runs.core.stages import (
    DocumentChunks,
    DocumentFindings,
    DocumentSummary,
    DocumentText,
    StageOutput,
    StoredDocument,
)
from doc_runs.defs.stage_records import StageRecorder
from doc_runs.defs.stage_scope import StageScope

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


def document_facts(output: StageOutput, duration_s: float, attempt: int,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """What the stage's record of the document holds: its outcome, time and attempt, the
    stage's counts and what the caller adds (model usage)."""
    outcome = output.outcome
    return {
        "status": outcome.status.value,
        "reason": outcome.reason.value if outcome.reason else None,
        "detail": outcome.detail,
        "duration_s": round(duration_s, 4),
        "attempt": attempt,
        **stage_facts(output),
        **extra,
    }


class LedgerBook:
    """One ledger per document of a step; their totals become the documents' usage facts."""

    def __init__(self, scope: StageScope, stage: str,
                 make: Callable[[], DocumentLedger]) -> None:
        self.recorder, self.make = StageRecorder.of(scope, stage), make
        self.ledgers: dict[str, DocumentLedger] = {}

    def open(self, key: str) -> DocumentLedger:
        self.ledgers[key] = self.make()
        return self.ledgers[key]

    def close(self, key: str) -> None:
        if key in self.ledgers:  # not opened when the stage failed before its first call
            self.recorder.document_calls(key, self.ledgers[key])

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


def run_budget(scope: StageScope, max_tokens: int) -> RunBudget:
    """The step's share of the run's token budget: what this run already spent on these
    documents (earlier stages, earlier attempts) counts."""
    run_id = scope.run_id
    spent = sum(
        row["tokens_in"] + row["tokens_out"]
        for key in scope.documents
        for row in scope.store.read_ledger(key)
        if row["run_id"] == run_id and row["kind"] == "model" and not row["cached"]
    )
    return RunBudget(max_tokens, spent)
