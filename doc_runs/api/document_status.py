"""A document's state as the runs recorded it in the catalog; read, never re-derived."""

from __future__ import annotations

from typing import Any

from doc_runs.api.schemas import (
    DocumentState,
    DocumentStatus,
    FieldView,
    StageState,
    SummaryView,
)
from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.stages import DocumentFindings, DocumentSummary
from doc_runs.core.status import STAGES, document_status
from doc_runs.core.store import DocumentStore

LAST_STAGE = STAGES[-1]


def overall_state(records: dict[str, dict[str, Any]]
                  ) -> tuple[DocumentState, str | None, str | None]:
    """(state, reason, detail) from the per-stage records (doc_runs.core.status)."""
    status = document_status(records)
    return DocumentState(status.state.value), status.reason, status.detail


def _stage_state(record: dict[str, Any] | None) -> StageState | None:
    if record is None:
        return None
    return StageState.model_validate(
        {k: record.get(k) for k in StageState.model_fields})


def _summary(store: DocumentStore, document_id: str) -> SummaryView | None:
    try:
        raw = store.read_artifact(LAST_STAGE, DocumentSummary.VERSION, document_id)
    except FileNotFoundError:
        return None
    summary = DocumentSummary.model_validate_json(raw).summary
    return SummaryView(text=summary.text, citations=summary.citations) if summary else None


def _findings(store: DocumentStore, document_id: str) -> dict[str, FieldView] | None:
    try:
        raw = store.read_artifact("document_findings", DocumentFindings.VERSION, document_id)
    except FileNotFoundError:
        return None
    found = DocumentFindings.model_validate_json(raw).findings
    if found is None:
        return None
    return {name: FieldView.model_validate(answer.view())
            for name, answer in found.fields.items()}


def describe(store: DocumentStore, catalog: DocumentCatalog, document_id: str
             ) -> DocumentStatus:
    """Everything the status endpoint shows about one (owned) document: the records of its
    latest batch only (doc_runs.core.catalog), never a mix of two runs'."""
    records = catalog.read_records(document_id)
    state, reason, detail = overall_state(records)
    summary = findings = None
    if state is DocumentState.succeeded:
        summary, findings = _summary(store, document_id), _findings(store, document_id)
        if summary is None or findings is None:
            # A stage records its result just before Dagster stores its output: for those
            # milliseconds the document is still finishing, and says so.
            state = DocumentState.incomplete
    return DocumentStatus(
        document_id=document_id,
        status=state,
        reason=reason,
        detail=detail,
        source_names=store.source_names(document_id),
        stages={stage: _stage_state(records.get(stage)) for stage in STAGES},
        summary=summary,
        findings=findings,
    )
