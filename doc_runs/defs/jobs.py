"""The two jobs, built from the settings: their run tags and retry policy are settings."""

from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    Backoff,
    Jitter,
    RetryPolicy,
    define_asset_job,
    in_process_executor,
)

from doc_runs.core.stages import STAGE_OUTPUTS
from doc_runs.settings import Settings

if TYPE_CHECKING:  # what define_asset_job returns; Dagster exports no name for it
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

DOCUMENT_JOB = "document_pipeline"
REPORT_JOB = "corpus_report_job"


def stage_retry_policy(settings: Settings) -> RetryPolicy:
    """Every stage's. Only transient errors reach Dagster as retryable
    (see stage_runner.TRANSIENT_ERRORS)."""
    return RetryPolicy(max_retries=settings.stage_retries, delay=settings.retry_delay_s,
                       backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def run_policy_tags(settings: Settings) -> dict[str, str]:
    """Every document run carries these (Dagster merges a job's tags into each run's): where
    the instance retries failed runs (run_retries in dagster.yaml), a run whose process died
    or that could not launch is retried from its failed stage, not from the start; run
    monitoring stops a run past its maximum runtime (none where DOC_RUNS_MAX_RUNTIME_S is 0)."""
    tags = {"dagster/retry_strategy": "FROM_FAILURE"}
    if settings.max_runtime_s:
        tags["dagster/max_runtime"] = f"{settings.max_runtime_s:g}"
    return tags


def build_document_pipeline(settings: Settings) -> "UnresolvedAssetJobDefinition":
    # In-process: a step per process would cost seconds of start-up for milliseconds of work;
    # PDF parsing is already isolated in worker processes of its own.
    return define_asset_job(
        DOCUMENT_JOB,
        selection=AssetSelection.assets(*STAGE_OUTPUTS),
        executor_def=in_process_executor,
        description="Ingest, extract, chunk, find and summarize the documents of one batch "
        "(the run's doc_runs/batch tag), into the partition of the batch's day.",
        tags=run_policy_tags(settings),
        op_retry_policy=stage_retry_policy(settings),
    )


def build_corpus_report_job(settings: Settings) -> "UnresolvedAssetJobDefinition":
    return define_asset_job(
        REPORT_JOB,
        selection=AssetSelection.assets("corpus_report"),
        executor_def=in_process_executor,
        description="Rebuild a day's corpus report from what the document runs recorded.",
        op_retry_policy=stage_retry_policy(settings),
    )
