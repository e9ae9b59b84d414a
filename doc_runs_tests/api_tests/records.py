"""What the runs leave behind, written the way the stages write it: a record per stage in the
catalog (for the document's batch) and the stage models' artifacts in the store."""

from __future__ import annotations

import uuid

from doc_runs.core.agent.findings import FieldAnswer, Findings, FoundValue
from doc_runs.core.catalog import Batch, DocumentCatalog, NewDocument
from doc_runs.core.outcomes import Outcome, Reason
from doc_runs.core.stages import STAGE_OUTPUTS, DocumentFindings, DocumentSummary
from doc_runs.core.store import DocumentStore
from doc_runs.core.summarize import Summary, SummarySentence

STAGES = list(STAGE_OUTPUTS)
SUMMARY_TEXT = "Revenue rose by ten percent in the third quarter."


def current_batch(catalog: DocumentCatalog, store: DocumentStore, document_id: str) -> Batch:
    """The document's latest batch; a new one of its own where no batch named it yet."""
    found = catalog.batches_of(document_id, limit=1)
    if found:
        return found[0]
    tenant = store.owner(document_id) or "default"
    return catalog.register_batch(f"test-{uuid.uuid4().hex}", tenant,
                                  [NewDocument(document_id, store.source_names(document_id))],
                                  "test")


def record(store: DocumentStore, catalog: DocumentCatalog, document_id: str, stage: str, *,
           run_id: str = "run-1", reason: Reason | None = None, detail: str | None = None,
           **facts: object) -> None:
    written = catalog.write_stage_records(current_batch(catalog, store, document_id), stage, {
        document_id: {
            "status": "quarantined" if reason else "succeeded",
            "reason": reason.value if reason else None,
            "detail": detail,
            "duration_s": 0.25,
            "attempt": 1,
            "stage": stage,
            "run_id": run_id,
            **facts,
        }})
    assert written == [document_id]


def succeed(store: DocumentStore, catalog: DocumentCatalog, document_id: str,
            run_id: str = "run-1") -> None:
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
    facts: dict[str, dict[str, object]] = {
        "document_findings": {"fields": {name: answer.display() for name, answer
                                         in findings.findings.fields.items()}},
        "document_summary": {"summary_first_sentence": SUMMARY_TEXT}}
    for stage in STAGES:
        record(store, catalog, document_id, stage, run_id=run_id, **facts.get(stage, {}))


def quarantine(store: DocumentStore, catalog: DocumentCatalog, document_id: str,
               reason: Reason, detail: str) -> None:
    """Quarantined at text extraction: the reason passes down to every later stage."""
    record(store, catalog, document_id, "document")
    for stage in STAGES[1:]:
        record(store, catalog, document_id, stage, reason=reason, detail=detail)
