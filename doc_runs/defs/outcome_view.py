"""What a stage's per-document metadata shows a person in the Dagster UI besides the counts:
the names the document arrived under, and for the last two stages the outcome itself (the
summary with its citations, the answered fields), cut where long with a note where the full
text lives."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from doc_runs.core.stages import DocumentFindings, DocumentSummary, StageOutput
from doc_runs.core.store import DocumentStore

MAX_TEXT = 3000  # characters of Markdown per value; the UI shows it inline
MAX_VALUE = 300  # characters of one findings value in the table


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit].rstrip() + "…", True)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def names_metadata(store: DocumentStore, document_id: str) -> dict[str, Any]:
    names = store.source_names(document_id)
    shown: dict[str, Any] = {"source_name": names[0] if names else None}
    if len(names) > 1:
        shown["source_names"] = MetadataValue.json(names)
    return shown


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


DESCRIPTION_TAG = "doc_runs/description"


def describe_documents(store: DocumentStore, document_ids: list[str], shown: int = 3) -> str:
    """What a run covers, in words, for its tags: the first names and the count."""
    names = [next(iter(store.source_names(k)), k[:12]) for k in document_ids[:shown]]
    text = ", ".join(_cut(name, 60)[0] for name in names)
    more = len(document_ids) - len(names)
    if more:
        text += f" and {more} more"
    return f"{text} ({len(document_ids)} document{'s' if len(document_ids) != 1 else ''})"
