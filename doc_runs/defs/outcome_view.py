"""What a run's materializations show a person in the Dagster UI: a table of the batch's
documents (file name, document id, status, reason, detail; the summary's first sentence on
the last stage), which the outcome events sensor reads back too; and for a run of one document
its summary with citations and its answered fields, cut where long with a note where the full
text lives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from doc_runs.core.stages import DocumentFindings, DocumentSummary, StageOutput
from doc_runs.core.store import DocumentStore

MAX_TEXT = 3000  # characters of Markdown per value; the UI shows it inline
MAX_VALUE = 300  # characters of one findings value in the table
MAX_CELL = 200  # characters of a name, detail or sentence in the documents table
DOCUMENTS = "documents"  # the metadata entry that holds the table

_BASE_COLUMNS = (
    TableColumn("name", "string", description="the first name the file arrived under"),
    TableColumn("document_id", "string"),
    TableColumn("status", "string",
                description="succeeded, quarantined, or superseded (a newer request for the "
                "document took over before this run recorded it)"),
    TableColumn("reason", "string"),
    TableColumn("detail", "string"),
)
# What each stage adds to its table, from the stage's facts.
STAGE_COLUMNS: dict[str, tuple[TableColumn, ...]] = {
    "document": (TableColumn("media_type", "string"),),
    "document_text": (TableColumn("pages", "int"),),
    "document_chunks": (TableColumn("chunks", "int"),),
    "document_findings": (TableColumn("fields_answered", "int"),),
    "document_summary": (TableColumn("summary", "string",
                                     description="the summary's first sentence"),),
}
_FACT_OF_COLUMN = {"summary": "summary_first_sentence"}


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit].rstrip() + "…", True)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def documents_table(stage: str, rows: Sequence[dict[str, Any]]) -> MetadataValue:
    """The batch's documents as a table: one row per document, in the batch's order."""
    columns = (*_BASE_COLUMNS, *STAGE_COLUMNS.get(stage, ()))
    records = []
    for row in rows:
        values: dict[str, Any] = {}
        for column in columns:
            value = row.get(_FACT_OF_COLUMN.get(column.name, column.name))
            if isinstance(value, str):
                value = _cut(value, MAX_CELL)[0]
            values[column.name] = value if value is not None else (
                None if column.type == "int" else "")
        records.append(TableRecord(values))
    return MetadataValue.table(records, schema=TableSchema(columns=list(columns)))


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a documents table read back from a materialization's metadata."""
    return [dict(record.data) for record in getattr(value, "records", None) or []]


def outcome_metadata(store: DocumentStore, stage: str, output: StageOutput
                     ) -> dict[str, MetadataValue]:
    full = store.artifact_path(stage, type(output).VERSION, output.document_id)
    if isinstance(output, DocumentSummary) and output.summary is not None:
        lines = [f"{s.text} `[{s.chunk_id}]`" for s in output.summary.sentences]
        text, cut = _cut("\n\n".join(lines), MAX_TEXT)
        if cut:
            text += f"\n\n_Cut here; the whole summary is in `{full}`._"
        return {"summary": MetadataValue.md(text)}
    if isinstance(output, DocumentFindings) and output.findings is not None:
        rows, any_cut = [], False
        for name, answer in output.findings.fields.items():
            if not answer.answered:
                continue
            value, cut = _cut(answer.display(), MAX_VALUE)
            any_cut = any_cut or cut
            citations = ", ".join(answer.citations) or "_not cited_"
            rows.append(f"| {name} | {answer.type} | {_cell(value)} | {citations} |")
        if not rows:
            return {"findings": MetadataValue.md("_No field answered._")}
        table = ("| field | type | value | citations |\n|---|---|---|---|\n"
                 + "\n".join(rows))
        if any_cut:
            table += f"\n\n_Long values are cut; all of them are in `{full}`._"
        return {"findings": MetadataValue.md(table)}
    return {}


def describe_named(documents: Sequence[tuple[str, Sequence[str]]], shown: int = 3) -> str:
    """What a run covers, in words, for its tags: the first names and the count."""
    names = [next(iter(found), key[:12]) for key, found in documents[:shown]]
    text = ", ".join(_cut(name, 60)[0] for name in names)
    more = len(documents) - len(names)
    if more:
        text += f" and {more} more"
    return f"{text} ({len(documents)} document{'s' if len(documents) != 1 else ''})"
