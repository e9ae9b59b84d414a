"""The corpus report as a pandas DataFrame, built from the per-stage records in the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where a report is built: every process that loads the definitions (code
    # server, each run worker) would otherwise pay about 0.3 s for it.
    import pandas as pd

from doc_runs.core.agent.ledger import CallRecord, totals
from doc_runs.core.stages import DocumentFindings, DocumentSummary
from doc_runs.core.status import STAGES, document_status
from doc_runs.core.store import DocumentStore

USAGE_COLUMNS = ["model_calls", "cached_model_calls", "tool_calls", "tokens_in", "tokens_out",
                 "cost_usd"]
# What a reader needs first, then the rest; the preview in the UI shows the first ones.
PREVIEW_COLUMNS = ["source_name", "status", "reason", "detail", "pages", "chunks", "summary"]
COLUMNS = [
    *PREVIEW_COLUMNS, "document_id", "media_type", "stage_reached", "characters",
    "pages_without_text", "fields_answered", "fields_uncited", "citations",
    *(f"{stage}_s" for stage in STAGES), *USAGE_COLUMNS, "last_run_id", "source_names",
    "last_recorded_at",
]
LEDGER_COLUMNS = ["document_id", "stage", "run_id", "attempt", "tenant", "kind", "name",
                  "cached", "tokens_in", "tokens_out", "latency_s", "cost_usd"]


def build_usage_ledger(store: DocumentStore, document_ids: list[str]) -> pd.DataFrame:
    """Every model and tool call ever made for these documents, one row each."""
    import pandas as pd

    rows = [row for document_id in document_ids for row in store.read_ledger(document_id)]
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS)


def usage_by_document(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per document, the one usage figure (doc_runs.core.agent.ledger.totals)."""
    import pandas as pd

    rows = {
        document_id: totals([CallRecord.model_validate(r)
                             for r in group.to_dict(orient="records")]).model_dump()
        for document_id, group in ledger.groupby("document_id")
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=USAGE_COLUMNS).fillna(0)


def first_sentence(store: DocumentStore, document_id: str) -> str | None:
    try:
        raw = store.read_artifact("document_summary", DocumentSummary.VERSION, document_id)
    except FileNotFoundError:
        return None
    summary = DocumentSummary.model_validate_json(raw).summary
    return summary.sentences[0].text if summary and summary.sentences else None


FIELD_COLUMN = "field:"  # then the field's name: its normalized value(s)


def field_values(store: DocumentStore, document_id: str) -> dict[str, str]:
    """`field:<name>` -> the field's normalized value(s), `; `-joined, for every answered
    field of the document's findings."""
    try:
        raw = store.read_artifact("document_findings", DocumentFindings.VERSION, document_id)
    except FileNotFoundError:
        return {}
    findings = DocumentFindings.model_validate_json(raw).findings
    if findings is None:
        return {}
    return {FIELD_COLUMN + name: answer.display()
            for name, answer in findings.fields.items() if answer.answered}


def build_corpus_report(store: DocumentStore, document_ids: list[str],
                        ledger: pd.DataFrame | None = None,
                        fields: list[str] | None = None) -> pd.DataFrame:
    """One row per document, the most recently processed first (then the last registered);
    `source_name` is the first name the bytes came under, `source_names` all of them."""
    import pandas as pd

    ledger = build_usage_ledger(store, document_ids) if ledger is None else ledger
    usage = usage_by_document(ledger)
    rows = []
    for document_id in reversed(document_ids):
        records = store.read_records(document_id)
        row: dict[str, object] = {"document_id": document_id}
        status = document_status(records)
        row["stage_reached"] = status.stage_reached
        row["status"] = status.state.value
        row["reason"] = status.reason
        row["detail"] = status.detail
        row["last_run_id"] = status.run_id
        if status.state.value == "succeeded":
            row["summary"] = first_sentence(store, document_id)
            row.update(field_values(store, document_id))
        for stage in STAGES:
            record = records.get(stage, {})
            row[f"{stage}_s"] = record.get("duration_s")
            for field in ("source_name", "media_type", "pages", "characters",
                          "pages_without_text", "chunks", "fields_answered", "citations"):
                if field in record:
                    row[field] = record[field]
            if "fields_uncited" in record:
                row["fields_uncited"] = ", ".join(record["fields_uncited"])
        if document_id in usage.index:
            row.update(usage.loc[document_id].to_dict())
        names = store.source_names(document_id)
        row["source_name"] = names[0] if names else row.get("source_name")
        row["source_names"] = "; ".join(names)
        row["last_recorded_at"] = max((r.get("recorded_at") or 0 for r in records.values()),
                                      default=0) or None
        rows.append(row)
    # A column per field, after the fixed ones: those configured (`fields`, in their order)
    # whether or not any document answered them, then any other a document answered (a
    # message's own fields).
    configured = [FIELD_COLUMN + name for name in fields or []]
    answered = sorted({k for row in rows for k in row if k.startswith(FIELD_COLUMN)})
    columns = [*COLUMNS, *dict.fromkeys([*configured, *answered])]
    frame = pd.DataFrame(rows, columns=columns)
    # Stable: documents never processed keep the newest-registered-first order.
    frame = frame.sort_values("last_recorded_at", ascending=False, kind="stable",
                              na_position="last").reset_index(drop=True)
    for column in ("pages", "characters", "pages_without_text", "chunks", "fields_answered",
                   "citations", "model_calls", "cached_model_calls", "tool_calls", "tokens_in",
                   "tokens_out"):
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame


def write_report(report: pd.DataFrame, reports_dir: str,
                 name: str = "corpus_report.csv") -> Path:
    folder = Path(reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(".csv.tmp")
    report.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
