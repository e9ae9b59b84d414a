"""The corpus report of a day as a pandas DataFrame: every document whose latest batch is of
that day, from the catalog's rows and stage records, with the usage its calls recorded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where a report is built: every process that loads the definitions (code
    # server, each run worker) would otherwise pay about 0.3 s for it.
    import pandas as pd

from doc_runs.core.agent.ledger import CallRecord, totals
from doc_runs.core.catalog import DocumentCatalog, DocumentRow
from doc_runs.core.status import STAGES
from doc_runs.core.store import DocumentStore

USAGE_COLUMNS = ["model_calls", "cached_model_calls", "tool_calls", "tokens_in", "tokens_out",
                 "cost_usd"]
# What a reader needs first, then the rest; the preview in the UI shows the first ones.
PREVIEW_COLUMNS = ["source_name", "status", "reason", "detail", "pages", "chunks", "summary"]
COLUMNS = [
    *PREVIEW_COLUMNS, "document_id", "tenant", "media_type", "stage_reached", "characters",
    "pages_without_text", "fields_answered", "fields_uncited", "citations",
    *(f"{stage}_s" for stage in STAGES), *USAGE_COLUMNS, "last_run_id", "source_names",
    "last_recorded_at",
]
LEDGER_COLUMNS = ["document_id", "stage", "run_id", "attempt", "tenant", "kind", "name",
                  "cached", "tokens_in", "tokens_out", "latency_s", "cost_usd"]
FIELD_COLUMN = "field:"  # then the field's name: its normalized value(s)


def build_usage_ledger(store: DocumentStore, document_ids: Sequence[str]) -> pd.DataFrame:
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


def build_corpus_report(catalog: DocumentCatalog, documents: Sequence[DocumentRow],
                        ledger: pd.DataFrame, fields: Sequence[str] = ()) -> pd.DataFrame:
    """One row per document, in the order given (the most recently updated first);
    `source_name` is the first name the bytes came under, `source_names` all of them."""
    import pandas as pd

    usage = usage_by_document(ledger)
    records_of = catalog.records_of([d.document_id for d in documents])
    rows = []
    for document in documents:
        records = records_of[document.document_id]
        row: dict[str, object] = {
            "document_id": document.document_id, "tenant": document.tenant,
            "source_name": document.name, "source_names": document.names or "",
            "status": document.state, "reason": document.reason, "detail": document.detail,
            "stage_reached": document.stage_reached, "last_run_id": document.run_id,
            "summary": document.summary,
        }
        for stage in STAGES:
            record = records.get(stage, {})
            row[f"{stage}_s"] = record.get("duration_s")
            for field in ("media_type", "pages", "characters", "pages_without_text", "chunks",
                          "fields_answered", "citations"):
                if field in record:
                    row[field] = record[field]
            if "fields_uncited" in record:
                row["fields_uncited"] = ", ".join(record["fields_uncited"])
            if document.state == "succeeded":
                row.update({FIELD_COLUMN + name: value
                            for name, value in record.get("fields", {}).items()})
        if document.document_id in usage.index:
            row.update(usage.loc[document.document_id].to_dict())
        row["last_recorded_at"] = max((r.get("recorded_at") or 0 for r in records.values()),
                                      default=0) or None
        rows.append(row)
    # A column per field, after the fixed ones: those configured (`fields`, in their order)
    # whether or not any document answered them, then any other a document answered (a
    # message's own fields).
    configured = [FIELD_COLUMN + name for name in fields]
    answered = sorted({k for row in rows for k in row if k.startswith(FIELD_COLUMN)})
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *dict.fromkeys([*configured, *answered])])
    for column in ("pages", "characters", "pages_without_text", "chunks", "fields_answered",
                   "citations", "model_calls", "cached_model_calls", "tool_calls", "tokens_in",
                   "tokens_out"):
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame


def report_path(reports_dir: str, day: str, name: str = "corpus_report") -> Path:
    return Path(reports_dir) / f"{name}-{day}.csv"


def write_report(report: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    report.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
