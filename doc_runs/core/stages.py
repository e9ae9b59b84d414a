"""The pipeline's stages as plain functions: each turns the previous stage's output into its
own, and a quarantined input passes through as a quarantined output with the same reason.

These are what the Dagster assets run for each document and what a plain loop can run too.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.findings import FieldSpec, Findings
from doc_runs.core.agent.loop import AgentLimits, FindingsAgent
from doc_runs.core.agent.summaries import ModelSummarizer
from doc_runs.core.agent.tools import DocumentTools
from doc_runs.core.chunking import Chunk, ChunkingConfig, PagedText, chunk_text
from doc_runs.core.extract import ExtractionLimits, PageText, extract_document_text
from doc_runs.core.outcomes import DocumentRejected, Outcome, Reason
from doc_runs.core.sniff import claimed_media_type, sniff_media_type
from doc_runs.core.store import DocumentStore
from doc_runs.core.summarize import Summary, SummaryConfig, extractive_summary

_SNIFF_BYTES = 64 * 1024


class StageOutput(BaseModel):
    VERSION: ClassVar[int] = 1  # bump when a stage's output changes for the same input
    document_id: str
    outcome: Outcome


class StoredDocument(StageOutput):
    VERSION: ClassVar[int] = 1
    source_name: str | None = None
    media_type: str | None = None
    claimed_media_type: str | None = None
    size_bytes: int = 0


class DocumentText(StageOutput):
    VERSION: ClassVar[int] = 1
    media_type: str | None = None
    pages: list[PageText] = []
    pages_without_text: list[int] = []
    pages_failed: list[int] = []
    pdf_warnings: int = 0
    # Optional, so artifacts written before they existed still validate (VERSION unchanged).
    pdf_engine: str | None = None  # pypdf or pdfium: the engine whose text was kept
    pdf_engine_note: str | None = None  # why that is not the configured engine

    @property
    def chars(self) -> int:
        return sum(len(p.text) for p in self.pages)

    def paged(self) -> PagedText:
        return PagedText([(p.number, p.text) for p in self.pages])


class DocumentChunks(StageOutput):
    VERSION: ClassVar[int] = 1
    chunk_size: int = 0
    chunk_overlap: int = 0
    chunks: list[Chunk] = []


class DocumentFindings(StageOutput):
    VERSION: ClassVar[int] = 2  # 2: typed, normalized values with the words they came from
    backend: str | None = None
    model: str | None = None
    findings: Findings | None = None


class DocumentSummary(StageOutput):
    VERSION: ClassVar[int] = 2
    summary: Summary | None = None


def _bytes_missing() -> Outcome:
    # Permanent, not an I/O error to retry: the bytes were deleted or lost from the store
    # (a restored backup, a hand-cleaned folder). Quarantining the one document keeps its
    # batch going; storing the file again and re-running it brings it back.
    return Outcome.quarantined(Reason.UNREADABLE, "the stored bytes of this document are "
                               "missing from the store; submit the file again")


def describe_document(store: DocumentStore, document_id: str, limits: ExtractionLimits
                      ) -> StoredDocument:
    names = store.source_names(document_id)
    try:
        size = store.blob_path(document_id).stat().st_size
    except FileNotFoundError:
        return StoredDocument(document_id=document_id,
                              source_name=names[0] if names else None,
                              outcome=_bytes_missing())
    claimed = next((c for c in map(claimed_media_type, names) if c), None)
    base = {"document_id": document_id, "source_name": names[0] if names else None,
            "claimed_media_type": claimed, "size_bytes": size}
    try:
        if size > limits.max_bytes:
            raise DocumentRejected(Reason.TOO_LARGE, f"{size} bytes, limit {limits.max_bytes}")
        # A PDF claim wins over other names the same bytes arrived under.
        name = next((n for n in names if claimed_media_type(n) == claimed), None)
        media_type = sniff_media_type(store.read_head(document_id, _SNIFF_BYTES), name)
    except DocumentRejected as rejected:
        return StoredDocument(**base, outcome=Outcome.quarantined(rejected.reason,
                                                                  rejected.detail))
    return StoredDocument(**base, media_type=media_type, outcome=Outcome.succeeded())


def extract_stage(store: DocumentStore, document: StoredDocument, limits: ExtractionLimits
                  ) -> DocumentText:
    if not document.outcome.ok or document.media_type is None:
        return DocumentText(document_id=document.document_id, outcome=document.outcome)
    if not store.blob_path(document.document_id).is_file():
        return DocumentText(document_id=document.document_id, media_type=document.media_type,
                            outcome=_bytes_missing())
    try:
        extracted = extract_document_text(
            store.blob_path(document.document_id), document.media_type, limits
        )
    except DocumentRejected as rejected:
        return DocumentText(
            document_id=document.document_id,
            media_type=document.media_type,
            outcome=Outcome.quarantined(rejected.reason, rejected.detail),
        )
    return DocumentText(
        document_id=document.document_id,
        outcome=Outcome.succeeded(),
        media_type=extracted.media_type,
        pages=extracted.pages,
        pages_without_text=extracted.pages_without_text,
        pages_failed=extracted.pages_failed,
        pdf_warnings=extracted.warnings,
        pdf_engine=extracted.engine,
        pdf_engine_note=extracted.engine_note,
    )


def chunk_stage(text: DocumentText, config: ChunkingConfig) -> DocumentChunks:
    if not text.outcome.ok:
        return DocumentChunks(document_id=text.document_id, outcome=text.outcome)
    return DocumentChunks(
        document_id=text.document_id,
        outcome=Outcome.succeeded(),
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        chunks=chunk_text(text.document_id, text.paged(), config),
    )


def findings_stage(text: DocumentText, chunks: DocumentChunks, client: ModelClient,
                   fields: list[FieldSpec], limits: AgentLimits) -> DocumentFindings:
    """The agent's validated findings; no partial findings are ever returned."""
    base = {"document_id": chunks.document_id, "backend": client.backend.name,
            "model": client.backend.model}
    if not chunks.outcome.ok:
        return DocumentFindings(**base, outcome=chunks.outcome)
    tools = DocumentTools(chunks.chunks, {p.number: p.text for p in text.pages})
    agent = FindingsAgent(client, tools, fields, limits, chunks.document_id)
    try:
        findings = agent.run()
    except DocumentRejected as rejected:
        return DocumentFindings(**base,
                                outcome=Outcome.quarantined(rejected.reason, rejected.detail))
    return DocumentFindings(**base, findings=findings, outcome=Outcome.succeeded())


def summary_stage(text: DocumentText, chunks: DocumentChunks, findings: DocumentFindings,
                  client: ModelClient, config: SummaryConfig, concurrency: int,
                  limits: AgentLimits) -> DocumentSummary:
    """Extractive with the offline backend (no calls); map-reduce through the model else."""
    if not findings.outcome.ok:
        return DocumentSummary(document_id=chunks.document_id, outcome=findings.outcome)
    try:
        if client.backend.name == "offline":
            summary = extractive_summary(text.paged(), chunks.chunks, config)
        else:
            summary = ModelSummarizer(client, config, concurrency, limits.max_reprompts,
                                      limits.max_tokens).summarize(chunks.chunks)
    except DocumentRejected as rejected:
        return DocumentSummary(document_id=chunks.document_id,
                               outcome=Outcome.quarantined(rejected.reason, rejected.detail))
    return DocumentSummary(document_id=chunks.document_id, outcome=Outcome.succeeded(),
                           summary=summary)


STAGE_OUTPUTS: dict[str, type[StageOutput]] = {
    "document": StoredDocument,
    "document_text": DocumentText,
    "document_chunks": DocumentChunks,
    "document_findings": DocumentFindings,
    "document_summary": DocumentSummary,
}
