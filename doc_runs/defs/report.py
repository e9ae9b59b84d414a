"""The corpus report as a pandas DataFrame, built from the per-stage records in the store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from doc_runs.core.store import DocumentStore

STAGES = ("document", "document_text", "document_chunks", "document_summary")
COLUMNS = [
    "document_id", "source_name", "media_type", "status", "reason", "detail", "stage_reached",
    "pages", "characters", "pages_without_text", "chunks", "citations",
    *(f"{stage}_s" for stage in STAGES), "last_run_id",
]


def build_corpus_report(store: DocumentStore, document_ids: list[str]) -> pd.DataFrame:
    rows = []
    for document_id in document_ids:
        records = store.read_records(document_id)
        row: dict[str, object] = {"document_id": document_id}
        reached = [stage for stage in STAGES if stage in records]
        last = records[reached[-1]] if reached else {}
        row["stage_reached"] = reached[-1] if reached else None
        if not reached:
            row["status"] = "pending"
        elif last.get("status") == "quarantined" or reached[-1] == STAGES[-1]:
            row["status"] = last.get("status")
        else:
            # A stage after the last recorded one has not finished (still running, or failed
            # on a transient error and awaiting re-execution).
            row["status"] = "incomplete"
        row["reason"] = last.get("reason")
        row["detail"] = last.get("detail")
        row["last_run_id"] = last.get("run_id")
        for stage in STAGES:
            record = records.get(stage, {})
            row[f"{stage}_s"] = record.get("duration_s")
            for field in ("source_name", "media_type", "pages", "characters",
                          "pages_without_text", "chunks", "citations"):
                if field in record:
                    row[field] = record[field]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("pages", "characters", "pages_without_text", "chunks", "citations"):
        frame[column] = frame[column].astype("Int64")
    return frame


def write_report(report: pd.DataFrame, reports_dir: str) -> Path:
    folder = Path(reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus_report.csv"
    tmp = path.with_suffix(".csv.tmp")
    report.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
