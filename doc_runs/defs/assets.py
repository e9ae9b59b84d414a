"""The per-document pipeline (document -> text -> chunks -> summary) and the corpus report."""


import json
import os
import warnings
from typing import TYPE_CHECKING

from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    Jitter,
    MaterializeResult,
    MetadataValue,
    Output,
    RetryPolicy,
    RunsFilter,
    asset,
)

from doc_runs.core.agent.backends import CallLimitedBackend, ModelBackend
from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.ledger import DocumentLedger
from doc_runs.core.stages import (
    DocumentChunks,
    DocumentFindings,
    DocumentSummary,
    DocumentText,
    StoredDocument,
    chunk_stage,
    describe_document,
    extract_stage,
    findings_stage,
    summary_stage,
)
from doc_runs.core.store import DocumentStore
from doc_runs.defs.document_checks import DOCUMENT_CHECK_SPEC, document_check_evaluations
from doc_runs.defs.partitions import documents
from doc_runs.defs.report import (
    PREVIEW_COLUMNS,
    build_corpus_report,
    build_usage_ledger,
    write_report,
)
from doc_runs.defs.resources import (
    AgentResource,
    ChunkingResource,
    DocumentStoreResource,
    ExtractionResource,
    ModelResource,
    SummaryResource,
)
from doc_runs.defs.stage_runner import (
    LedgerBook,
    refuse_documents_of_other_tenants,
    run_budget,
    run_stage,
)

if TYPE_CHECKING:
    import pandas as pd  # only the report needs it; see report.py
from doc_runs.defs.tags import EXTRA_FIELDS_TAG

# Single-run backfills are what make ranged runs possible; the parameter is marked beta and
# warns in every process that loads the code, which would bury the CLI's output.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

# Only transient errors reach Dagster as retryable (see stage_runner.TRANSIENT_ERRORS).
# Read when the code location loads, like the resources' environment variables.
STAGE_RETRY = RetryPolicy(
    max_retries=int(os.environ.get("DOC_RUNS_STAGE_RETRIES", "3")),
    delay=float(os.environ.get("DOC_RUNS_RETRY_DELAY_S", "2")),
    backoff=Backoff.EXPONENTIAL,
    jitter=Jitter.PLUS_MINUS,
)
_PER_DOCUMENT = {
    "partitions_def": documents,
    "backfill_policy": BackfillPolicy.single_run(),
    "retry_policy": STAGE_RETRY,
    "io_manager_key": "artifact_io_manager",
    "group_name": "documents",
}


@asset(**_PER_DOCUMENT, description="The document's bytes, stored once by content hash; "
       "media type sniffed from the bytes; size limit enforced.")
def document(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    extraction: ExtractionResource,
) -> dict[str, StoredDocument]:
    store = document_store.store()
    refuse_documents_of_other_tenants(context, store)
    limits = extraction.limits()
    return run_stage(context, store, "document",
                     lambda key: describe_document(store, key, limits))  # type: ignore[return-value]


@asset(**_PER_DOCUMENT, description="Per-page text (pypdf, or PDFium where configured, under a "
       "hard deadline and memory cap; text and Markdown pass through), ligatures normalized.")
def document_text(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    extraction: ExtractionResource,
    document: dict[str, StoredDocument],
) -> dict[str, DocumentText]:
    store = document_store.store()
    limits = extraction.limits()
    return run_stage(  # type: ignore[return-value]
        context, store, "document_text",
        lambda key: extract_stage(store, document[key], limits),
        workers=extraction.worker_count(),
    )


@asset(**_PER_DOCUMENT, description="Sentence-aware chunks with page numbers and character "
       "offsets into the text.")
def document_chunks(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    chunking: ChunkingResource,
    document_text: dict[str, DocumentText],
) -> dict[str, DocumentChunks]:
    store = document_store.store()
    config = chunking.config()
    return run_stage(context, store, "document_chunks",  # type: ignore[return-value]
                     lambda key: chunk_stage(document_text[key], config))


def _model_calls(context: AssetExecutionContext, store: DocumentStore, stage: str,
                 model: ModelResource, agent: AgentResource
                 ) -> tuple[ModelBackend, LedgerBook, int]:
    """The backend, the per-document ledgers (with the run's budget) of an LLM stage and how
    many documents it works on at once."""
    budget = run_budget(context, store, agent.run_token_budget)
    backend = model.create_backend()
    documents_at_once = agent.document_concurrency
    if backend.name != "offline":  # the offline backend computes; it waits for nobody
        # As many documents as there are call slots, the slots shared by the whole step.
        documents_at_once = agent.calls_in_flight()
        backend = CallLimitedBackend(backend, documents_at_once)
    return backend, LedgerBook(
        context, store, stage,
        lambda: DocumentLedger(model.pricing(), agent.document_token_budget, budget)
    ), documents_at_once


@asset(**_PER_DOCUMENT, pool="llm",
       description="An agent answers the configured fields by calling tools over this document "
       "(search_chunks, read_chunk, read_page, find_patterns); validated, every citation exists.")
def document_findings(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    model: ModelResource,
    agent: AgentResource,
    document_text: dict[str, DocumentText],
    document_chunks: dict[str, DocumentChunks],
) -> dict[str, DocumentFindings]:
    store = document_store.store()
    backend, book, documents_at_once = _model_calls(context, store, "document_findings",
                                                    model, agent)
    per_run = json.loads(context.run.tags.get(EXTRA_FIELDS_TAG, "{}"))
    fields, limits = agent.fields(per_run), agent.limits()

    def compute(key: str) -> DocumentFindings:
        try:
            return findings_stage(document_text[key], document_chunks[key],
                                  ModelClient(backend, store, book.open(key)), fields, limits)
        finally:
            book.close(key)

    return run_stage(context, store, "document_findings", compute,  # type: ignore[return-value]
                     workers=documents_at_once,
                     rate_limit_retries=agent.rate_limit_retries, extra_facts=book.facts)


@asset(
    **_PER_DOCUMENT,
    pool="llm",
    description="Summary citing the chunks it drew from: extractive with the offline backend, "
    "map-reduce over chunks through the model otherwise.",
    check_specs=[DOCUMENT_CHECK_SPEC],
)
def document_summary(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    summarizing: SummaryResource,
    model: ModelResource,
    agent: AgentResource,
    document_text: dict[str, DocumentText],
    document_chunks: dict[str, DocumentChunks],
    document_findings: dict[str, DocumentFindings],
):  # type: ignore[no-untyped-def]
    store = document_store.store()
    config = summarizing.config()
    backend, book, documents_at_once = _model_calls(context, store, "document_summary",
                                                    model, agent)

    def compute(key: str) -> DocumentSummary:
        try:
            client = ModelClient(backend, store, book.open(key))
            return summary_stage(document_text[key], document_chunks[key],
                                 document_findings[key], client, config,
                                 agent.chunk_concurrency, agent.limits())
        finally:
            book.close(key)

    outputs = run_stage(context, store, "document_summary", compute,
                        workers=documents_at_once,
                        rate_limit_retries=agent.rate_limit_retries, extra_facts=book.facts)
    yield Output(outputs)
    yield from document_check_evaluations(context, AssetKey("document_summary"), outputs)


@asset(
    deps=[AssetKey("document_summary")],
    group_name="reports",
    retry_policy=STAGE_RETRY,
    description="Every document with its status, reason, counts and stage durations, as read "
    "from what the stages recorded; written as CSV.",
)
def corpus_report(
    context: AssetExecutionContext, document_store: DocumentStoreResource,
    agent: AgentResource,
) -> MaterializeResult:
    store = document_store.store()
    keys = context.instance.get_dynamic_partitions(documents.name)
    ledger = build_usage_ledger(store, keys)
    report = build_corpus_report(store, keys, ledger,
                                 fields=[f.name for f in agent.fields()])
    path = write_report(report, document_store.reports_dir)
    ledger_path = write_report(ledger, document_store.reports_dir, "usage_ledger.csv")
    counts = report["status"].value_counts().to_dict() if len(report) else {}
    reasons = report["reason"].dropna().value_counts().to_dict() if len(report) else {}
    models = ledger[ledger["kind"] == "model"]
    by_tenant = {
        tenant: {"model_calls": len(group), "cost_usd": round(float(group["cost_usd"].sum()), 6),
                 "tokens": int(group.loc[~group["cached"].astype(bool),
                                         ["tokens_in", "tokens_out"]].sum().sum())}
        for tenant, group in models.groupby("tenant")
    }
    # Cached calls send nothing and cost nothing; the latest document runs, newest first.
    spent = models[~models["cached"].astype(bool)]
    per_run = spent.groupby("run_id")[["tokens_in", "tokens_out", "cost_usd"]].sum()
    latest = context.instance.get_runs(RunsFilter(job_name="document_pipeline"), limit=20)
    by_run = {
        run.run_id: {column: (round(float(per_run.loc[run.run_id, column]), 6)
                              if run.run_id in per_run.index else 0)
                     for column in ("tokens_in", "tokens_out", "cost_usd")}
        for run in latest
    }
    return MaterializeResult(
        metadata={
            "documents": len(report),
            "by_status": MetadataValue.json(counts),
            "by_reason": MetadataValue.json(reasons),
            "usage_by_tenant": MetadataValue.json(by_tenant),
            "usage_by_run": MetadataValue.json(by_run),
            "csv_path": MetadataValue.path(str(path)),
            "usage_ledger_path": MetadataValue.path(str(ledger_path)),
            "preview": MetadataValue.md(_markdown_preview(report)),
        }
    )


def _markdown_preview(report: "pd.DataFrame", rows: int = 100) -> str:
    """The columns a reader needs first, newest documents first, empty where there is
    nothing to say (never `nan`), long texts cut; the partition key last, to search by."""
    if report.empty:
        return "_no documents yet_"
    shown = report.head(rows)[[*PREVIEW_COLUMNS, "document_id", "source_names"]] \
        .astype(object)
    shown = shown.where(shown.notna(), "")
    # Every name the bytes came under, so a search finds the document by any of them.
    shown["source_name"] = [names or first for first, names
                            in zip(shown["source_name"], shown["source_names"], strict=True)]
    shown = shown.drop(columns="source_names")
    for column in ("source_name", "detail", "summary"):
        shown[column] = [text if len(text) <= 120 else text[:119] + "…"
                         for text in shown[column].astype(str)]
    # A `|` in a name or a detail would split its Markdown cell.
    shown = shown.apply(lambda column: column.astype(str).str.replace("|", "\\|",
                                                                      regex=False))
    table = shown.rename(columns={"source_name": "name", "document_id": "partition"}) \
        .to_markdown(index=False)
    more = len(report) - len(shown)
    return table + (f"\n\n_{more} more rows in the CSV_" if more > 0 else "")
