from dagster import AssetSelection, define_asset_job, in_process_executor

# In-process: a step per process would cost seconds of start-up for milliseconds of work;
# PDF parsing is already isolated in worker processes of its own.
document_pipeline = define_asset_job(
    "document_pipeline",
    selection=AssetSelection.assets("document", "document_text", "document_chunks",
                                    "document_findings", "document_summary"),
    executor_def=in_process_executor,
    description="Ingest, extract, chunk, find and summarize one document or a range of them.",
)

corpus_report_job = define_asset_job(
    "corpus_report_job",
    selection=AssetSelection.assets("corpus_report"),
    executor_def=in_process_executor,
    description="Rebuild the corpus report from what the document runs recorded.",
)
