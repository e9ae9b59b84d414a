"""The one Definitions object of doc_runs."""

from __future__ import annotations

import json
import os

from dagster import Definitions, EnvVar

from doc_runs.defs.assets import (
    corpus_report,
    document,
    document_chunks,
    document_findings,
    document_summary,
    document_text,
)
from doc_runs.defs.jobs import corpus_report_job, document_pipeline
from doc_runs.defs.resources import (
    AgentResource,
    ChunkingResource,
    DocumentArtifactIOManager,
    DocumentStoreResource,
    ExtractionResource,
    InboxResource,
    ModelResource,
    SummaryResource,
    project_path,
)
from doc_runs.defs.sensors import inbox_sensor, report_after_failure, report_after_success


def _setting(name: str, default: str) -> str | EnvVar:
    """An environment variable where it is set (shown as such in the UI), else the default."""
    return EnvVar(name) if name in os.environ else default


def _int_setting(name: str, default: int) -> int | EnvVar:
    return EnvVar.int(name) if name in os.environ else default  # type: ignore[return-value]


def _float_setting(name: str, default: float) -> float:
    # EnvVar has no float form; a malformed number fails loading with the variable's name.
    raw = os.environ.get(name)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


store_root = _setting("DOC_RUNS_STORE_DIR", project_path("data", "store"))

document_store = DocumentStoreResource(
    root=store_root,
    reports_dir=_setting("DOC_RUNS_REPORTS_DIR", project_path("data", "reports")),
)

defs = Definitions(
    assets=[document, document_text, document_chunks, document_findings, document_summary,
            corpus_report],
    jobs=[document_pipeline, corpus_report_job],
    sensors=[inbox_sensor, report_after_success, report_after_failure],
    resources={
        "document_store": document_store,
        "artifact_io_manager": DocumentArtifactIOManager(root=store_root),
        "inbox": InboxResource(path=_setting("DOC_RUNS_INBOX_DIR", project_path("data", "inbox"))),
        "extraction": ExtractionResource(
            max_bytes=_int_setting("DOC_RUNS_MAX_BYTES", 100 * 1024 * 1024),
            max_pages=_int_setting("DOC_RUNS_MAX_PAGES", 5000),
            deadline_seconds=_float_setting("DOC_RUNS_EXTRACT_DEADLINE_S", 60.0),
            memory_mb=_int_setting("DOC_RUNS_EXTRACT_MEMORY_MB", 2048),
        ),
        "chunking": ChunkingResource(
            chunk_size=_int_setting("DOC_RUNS_CHUNK_SIZE", 1200),
            chunk_overlap=_int_setting("DOC_RUNS_CHUNK_OVERLAP", 200),
        ),
        "summarizing": SummaryResource(),
        "model": ModelResource(
            backend=_setting("DOC_RUNS_MODEL_BACKEND", "offline"),
            base_url=_setting("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            api_key=_setting("OPENAI_API_KEY", ""),
            model=_setting("DOC_RUNS_MODEL", "gpt-4o-mini"),
            timeout_seconds=_float_setting("DOC_RUNS_MODEL_TIMEOUT_S", 60.0),
            input_price_per_mtok=_float_setting("DOC_RUNS_PRICE_IN_PER_MTOK", 0.0),
            output_price_per_mtok=_float_setting("DOC_RUNS_PRICE_OUT_PER_MTOK", 0.0),
        ),
        "agent": AgentResource(
            extra_fields=json.loads(os.environ.get("DOC_RUNS_EXTRA_FIELDS", "{}")),
            max_steps=_int_setting("DOC_RUNS_AGENT_MAX_STEPS", 12),
            document_token_budget=_int_setting("DOC_RUNS_DOCUMENT_TOKEN_BUDGET", 200_000),
            run_token_budget=_int_setting("DOC_RUNS_RUN_TOKEN_BUDGET", 2_000_000),
            chunk_concurrency=_int_setting("DOC_RUNS_CHUNK_CONCURRENCY", 4),
        ),
    },
)
