import os

from dagster import AssetSelection, define_asset_job, in_process_executor


def _max_runtime_seconds() -> str:
    """DOC_RUNS_MAX_RUNTIME_S (6 hours): the longest a document run may run before run
    monitoring stops it and marks it failed. 0 turns the limit off."""
    raw = os.environ.get("DOC_RUNS_MAX_RUNTIME_S", "21600").strip()
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"DOC_RUNS_MAX_RUNTIME_S must be a number of seconds, not {raw!r}"
                         ) from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"DOC_RUNS_MAX_RUNTIME_S must be 0 (no limit) or more, not {raw!r}")
    return f"{seconds:g}"


# Every run of the job carries these (Dagster merges a job's tags into each run's): where the
# instance retries failed runs (run_retries in dagster.yaml), a run whose process died or that
# could not launch is retried from its failed stage, not from the start; run monitoring stops
# a run past its maximum runtime.
RUN_POLICY_TAGS = {
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/max_runtime": _max_runtime_seconds(),
}

# In-process: a step per process would cost seconds of start-up for milliseconds of work;
# PDF parsing is already isolated in worker processes of its own.
document_pipeline = define_asset_job(
    "document_pipeline",
    selection=AssetSelection.assets("document", "document_text", "document_chunks",
                                    "document_findings", "document_summary"),
    executor_def=in_process_executor,
    description="Ingest, extract, chunk, find and summarize the documents of one batch (the "
    "run's doc_runs/batch tag), into the partition of the batch's day.",
    tags={key: value for key, value in RUN_POLICY_TAGS.items()
          if not (key == "dagster/max_runtime" and float(value) == 0)},
)

corpus_report_job = define_asset_job(
    "corpus_report_job",
    selection=AssetSelection.assets("corpus_report"),
    executor_def=in_process_executor,
    description="Rebuild a day's corpus report from what the document runs recorded.",
)
