"""What the runs leave in the store, written the way the stages write it: a record per stage
and the stage models' artifacts."""

from __future__ import annotations

from doc_runs.core.agent.findings import FieldAnswer, Findings, FoundValue
from doc_runs.core.outcomes import Outcome, Reason
from doc_runs.core.stages import STAGE_OUTPUTS, DocumentFindings, DocumentSummary
from doc_runs.core.store import DocumentStore
from doc_runs.core.summarize import Summary, SummarySentence

STAGES = list(STAGE_OUTPUTS)
SUMMARY_TEXT = "Revenue rose by ten percent in the third quarter."


def record(store: DocumentStore, document_id: str, stage: str, *, run_id: str = "run-1",
           reason: Reason | None = None, detail: str | None = None) -> None:
    store.write_record(document_id, stage, {
        "status": "quarantined" if reason else "succeeded",
        "reason": reason.value if reason else None,
        "detail": detail,
        "duration_s": 0.25,
        "attempt": 1,
        "stage": stage,
        "run_id": run_id,
    })


def succeed(store: DocumentStore, document_id: str, run_id: str = "run-1") -> None:
    findings = DocumentFindings(
        document_id=document_id, outcome=Outcome.succeeded(), backend="offline",
        model="offline", findings=Findings(fields={
            "title": FieldAnswer(values=[FoundValue(value="Quarterly report",
                                                    text="Quarterly Report", citations=["c0"])]),
            "parties": FieldAnswer(type="party", many=True, values=[
                FoundValue(value="Northwind", text="NORTHWIND", citations=["c0"]),
                FoundValue(value="Contoso", text="Contoso", citations=["p1"])]),
        }))
    summary = DocumentSummary(
        document_id=document_id, outcome=Outcome.succeeded(), summary=Summary(
            method="extractive", text=SUMMARY_TEXT, sentences=[
                SummarySentence(text=SUMMARY_TEXT, start=0, end=len(SUMMARY_TEXT),
                                chunk_id="c0")]))
    store.write_artifact("document_findings", DocumentFindings.VERSION, document_id,
                         findings.model_dump_json().encode())
    store.write_artifact("document_summary", DocumentSummary.VERSION, document_id,
                         summary.model_dump_json().encode())
    for stage in STAGES:
        record(store, document_id, stage, run_id=run_id)


def quarantine(store: DocumentStore, document_id: str, reason: Reason, detail: str) -> None:
    """Quarantined at text extraction: the reason passes down to every later stage."""
    record(store, document_id, "document")
    for stage in STAGES[1:]:
        record(store, document_id, stage, reason=reason, detail=detail)
