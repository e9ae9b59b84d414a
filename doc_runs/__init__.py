"""doc_runs: document workflows (ingest, extract, chunk, summarize) as Dagster assets."""

__version__ = "0.1.0"
