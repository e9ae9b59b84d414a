"""The document pipeline (document -> text -> chunks -> findings -> summary), each stage a
day-partitioned asset that a run materializes for its batch of documents, and the day's corpus
report."""

import json
from typing import TYPE_CHECKING

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    RunsFilter,
    asset,
)

from doc_runs.core.agent.backends import CallLimitedBackend, ModelBackend
from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.ledger import DocumentLedger
from doc_runs.core.stages import (
    DocumentFindings,
    DocumentSummary,
    chunk_stage,
    describe_document,
    extract_stage,
    findings_stage,
    summary_stage,
)
from doc_runs.defs.document_checks import DOCUMENT_CHECK_SPEC, batch_check_result
from doc_runs.defs.jobs import DOCUMENT_JOB
from doc_runs.defs.partitions import PARTITION_TAG, days
from doc_runs.defs.report import (
    PREVIEW_COLUMNS,
    build_corpus_report,
    build_usage_ledger,
    report_path,
    write_report,
)
from doc_runs.defs.resources import (
    AgentResource,
    CatalogResource,
    ChunkingResource,
    DocumentStoreResource,
    ExtractionResource,
    ModelResource,
    SummaryResource,
)
from doc_runs.defs.stage_facts import LedgerBook, run_budget
from doc_runs.defs.stage_runner import run_stage
from doc_runs.defs.stage_scope import StageScope, refuse_documents_of_other_tenants, stage_scope
from doc_runs.defs.tags import EXTRA_FIELDS_TAG

if TYPE_CHECKING:
    import pandas as pd  # only the report needs it; see report.py

# The stages' retry policy is their jobs' (doc_runs.defs.jobs.stage_retry_policy), from
# the settings.
_PER_DAY = {
    "partitions_def": days,
    "group_name": "documents",
}


def _scope(context: AssetExecutionContext, document_store: DocumentStoreResource,
           catalog: CatalogResource) -> StageScope:
    return stage_scope(context, document_store.store(), catalog.catalog())


@asset(**_PER_DAY, description="The batch's documents' bytes, stored once by content hash; "
       "media type sniffed from the bytes; size limit enforced.")
def document(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    extraction: ExtractionResource,
) -> MaterializeResult:
    scope = _scope(context, document_store, catalog)
    refuse_documents_of_other_tenants(scope)
    limits = extraction.limits()
    return run_stage(scope, "document",
                     lambda key: describe_document(scope.store, key, limits)).materialization()


@asset(**_PER_DAY, deps=[document],
       description="Per-page text (pypdf, or PDFium where configured, under a hard deadline "
       "and memory cap; text and Markdown pass through), ligatures normalized.")
def document_text(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    extraction: ExtractionResource,
) -> MaterializeResult:
    scope = _scope(context, document_store, catalog)
    stored = scope.load("document")
    limits = extraction.limits()
    return run_stage(
        scope, "document_text", lambda key: extract_stage(scope.store, stored[key], limits),
        workers=extraction.worker_count(),
    ).materialization()


@asset(**_PER_DAY, deps=[document_text],
       description="Sentence-aware chunks with page numbers and character offsets into the "
       "text.")
def document_chunks(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    chunking: ChunkingResource,
) -> MaterializeResult:
    scope = _scope(context, document_store, catalog)
    texts = scope.load("document_text")
    config = chunking.config()
    return run_stage(scope, "document_chunks",
                     lambda key: chunk_stage(texts[key], config)).materialization()


def _model_calls(scope: StageScope, stage: str, model: ModelResource, agent: AgentResource
                 ) -> tuple[ModelBackend, LedgerBook, int]:
    """The backend, the per-document ledgers (with the run's budget) of an LLM stage and how
    many documents it works on at once."""
    budget = run_budget(scope, agent.run_token_budget)
    backend = model.create_backend()
    documents_at_once = agent.document_concurrency
    if backend.name != "offline":  # the offline backend computes; it waits for nobody
        # As many documents as there are call slots, the slots shared by the whole step.
        documents_at_once = agent.calls_in_flight()
        backend = CallLimitedBackend(backend, documents_at_once)
    return backend, LedgerBook(
        scope, stage,
        lambda: DocumentLedger(model.pricing(), agent.document_token_budget, budget)
    ), documents_at_once


@asset(**_PER_DAY, deps=[document_chunks], pool="llm",
       description="An agent answers the configured fields by calling tools over each document "
       "(search_chunks, read_chunk, read_page, find_patterns); validated, every citation "
       "exists.")
def document_findings(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    model: ModelResource,
    agent: AgentResource,
) -> MaterializeResult:
    scope = _scope(context, document_store, catalog)
    texts, chunks = scope.load("document_text"), scope.load("document_chunks")
    backend, book, documents_at_once = _model_calls(scope, "document_findings", model, agent)
    per_run = json.loads(context.run.tags.get(EXTRA_FIELDS_TAG, "{}"))
    fields, limits = agent.fields(per_run), agent.limits()

    def compute(key: str) -> DocumentFindings:
        try:
            return findings_stage(texts[key], chunks[key],
                                  ModelClient(backend, scope.store, book.open(key)), fields,
                                  limits)
        finally:
            book.close(key)

    return run_stage(scope, "document_findings", compute, workers=documents_at_once,
                     rate_limit_retries=agent.rate_limit_retries,
                     extra_facts=book.facts).materialization()


@asset(
    **_PER_DAY,
    deps=[document_findings],
    pool="llm",
    description="Summary citing the chunks it drew from: extractive with the offline backend, "
    "map-reduce over chunks through the model otherwise.",
    check_specs=[DOCUMENT_CHECK_SPEC],
)
def document_summary(
    context: AssetExecutionContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    summarizing: SummaryResource,
    model: ModelResource,
    agent: AgentResource,
) -> MaterializeResult:
    scope = _scope(context, document_store, catalog)
    texts, chunks = scope.load("document_text"), scope.load("document_chunks")
    findings = scope.load("document_findings")
    config = summarizing.config()
    backend, book, documents_at_once = _model_calls(scope, "document_summary", model, agent)

    def compute(key: str) -> DocumentSummary:
        try:
            client = ModelClient(backend, scope.store, book.open(key))
            return summary_stage(texts[key], chunks[key], findings[key], client, config,
                                 agent.chunk_concurrency, agent.limits())
        finally:
            book.close(key)

    result = run_stage(scope, "document_summary", compute, workers=documents_at_once,
                       rate_limit_retries=agent.rate_limit_retries, extra_facts=book.facts)
    return result.materialization(check_results=[batch_check_result(result.rows)])


@asset(
    deps=[document_summary],
    partitions_def=days,
    group_name="reports",
    description="The day's documents (those whose latest batch is of that day) with their "
    "status, reason, counts, stage durations and model usage, from the catalog; written as "
    "CSV, with every model and tool call of theirs in a second one.",
)
def corpus_report(
    context: AssetExecutionContext, document_store: DocumentStoreResource,
    catalog: CatalogResource, agent: AgentResource,
) -> MaterializeResult:
    store, day = document_store.store(), context.partition_key
    documents = catalog.catalog().day_documents(day)
    ledger = build_usage_ledger(store, [d.document_id for d in documents])
    report = build_corpus_report(catalog.catalog(), documents, ledger,
                                 fields=[f.name for f in agent.fields()])
    path = write_report(report, report_path(document_store.reports_dir, day))
    ledger_path = write_report(ledger, report_path(document_store.reports_dir, day,
                                                   "usage_ledger"))
    counts = report["status"].value_counts().to_dict() if len(report) else {}
    reasons = report["reason"].dropna().value_counts().to_dict() if len(report) else {}
    models = ledger[ledger["kind"] == "model"]
    by_tenant = {
        tenant: {"model_calls": len(group), "cost_usd": round(float(group["cost_usd"].sum()), 6),
                 "tokens": int(group.loc[~group["cached"].astype(bool),
                                         ["tokens_in", "tokens_out"]].sum().sum())}
        for tenant, group in models.groupby("tenant")
    }
    # Cached calls send nothing and cost nothing; the day's latest document runs, newest first.
    spent = models[~models["cached"].astype(bool)]
    per_run = spent.groupby("run_id")[["tokens_in", "tokens_out", "cost_usd"]].sum()
    latest = context.instance.get_runs(
        RunsFilter(job_name=DOCUMENT_JOB, tags={PARTITION_TAG: day}), limit=20)
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
    nothing to say (never `nan`), long texts cut; the document id last, to search by."""
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
    table = shown.rename(columns={"source_name": "name"}).to_markdown(index=False)
    more = len(report) - len(shown)
    return table + (f"\n\n_{more} more rows in the CSV_" if more > 0 else "")
