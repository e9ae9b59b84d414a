"""The one Definitions object of doc_runs."""

from __future__ import annotations

import json
import os
from typing import Any, get_args

from dagster import Definitions, EnvVar, in_process_executor

from doc_runs.core.agent.findings import extra_field_specs
from doc_runs.core.extract import PdfEngine
from doc_runs.core.fields.spec import FieldSpecInvalid
from doc_runs.defs.assets import (
    corpus_report,
    document,
    document_chunks,
    document_findings,
    document_summary,
    document_text,
)
from doc_runs.defs.events_sensor import outcome_events_sensor
from doc_runs.defs.jobs import corpus_report_job, document_pipeline
from doc_runs.defs.queue_sensor import queue_sensor
from doc_runs.defs.resources import (
    AgentResource,
    CatalogResource,
    ChunkingResource,
    DocumentStoreResource,
    ExtractionResource,
    InboxResource,
    ModelResource,
    QueueResource,
    SecretsResource,
    SummaryResource,
)
from doc_runs.defs.schedules import corpus_report_schedule, unfinished_documents_schedule
from doc_runs.defs.sensors import inbox_sensor, report_refresh_sensor
from doc_runs.defs.starting_runs import starting_runs_sensor
from doc_runs.logs import configure_logging
from doc_runs.project import default_stream_prefix, project_path


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


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _choice_setting(name: str, default: str, choices: tuple[str, ...]) -> str:
    # Checked here, when the definitions load, so that a typo is a configuration error of the
    # command (or the code location) instead of a failure of every run.
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={os.environ.get(name)!r}: use one of {', '.join(choices)}")
    return value


def _bool_setting(name: str, default: bool) -> bool:
    # EnvVar has no bool form either; a value that is neither fails loading with its name.
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"{name}={raw!r} is not a yes/no value: use 1/true or 0/false")


store_root = _setting("DOC_RUNS_STORE_DIR", project_path("data", "store"))

document_store = DocumentStoreResource(
    root=store_root,
    reports_dir=_setting("DOC_RUNS_REPORTS_DIR", project_path("data", "reports")),
)

def _json_setting(name: str, default: dict[str, str]) -> dict[str, str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{name} must be a JSON object of names to strings")
    return value


def _fields_setting(name: str) -> dict[str, Any]:
    """Extra findings fields, checked here so that a wrong one (an unknown type, an enum
    without choices) stops the code location from loading, naming the field."""
    raw = os.environ.get(name)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    try:
        extra_field_specs(value)
    except FieldSpecInvalid as exc:
        raise ValueError(f"{name}: {exc}") from None
    return value


# Every process that loads the definitions (the code server with its sensors, each run
# worker) writes the same structured lines when DOC_RUNS_LOG_FORMAT asks for them.
configure_logging()

# The local default keeps tenants' secrets in the project (git-ignored); `bin/up` makes it.
_default_secrets_file = project_path(".secrets", "tenants.json")

defs = Definitions(
    assets=[document, document_text, document_chunks, document_findings, document_summary,
            corpus_report],
    jobs=[document_pipeline, corpus_report_job],
    sensors=[inbox_sensor, queue_sensor, outcome_events_sensor, report_refresh_sensor,
             starting_runs_sensor],
    schedules=[unfinished_documents_schedule, corpus_report_schedule],
    # Every run in one process, also those the UI's Materialize buttons make: a run's steps
    # are a chain whose work is milliseconds against a process's seconds of start-up, and a
    # run with one process is one the run launcher can tell is alive (run_launcher.py).
    executor=in_process_executor,
    resources={
        "document_store": document_store,
        "catalog": CatalogResource(url=_setting("DOC_RUNS_DATABASE_URL", "")),
        "inbox": InboxResource(
            path=_setting("DOC_RUNS_INBOX_DIR", project_path("data", "inbox")),
            tenant=_setting("DOC_RUNS_INBOX_TENANT", "default"),
            max_documents_per_run=_int_setting("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", 50),
        ),
        "queue": QueueResource(
            redis_url=_setting("DOC_RUNS_REDIS_URL", "redis://127.0.0.1:6379/0"),
            stream_prefix=_setting("DOC_RUNS_STREAM_PREFIX", default_stream_prefix()),
            retention_seconds=_int_setting("DOC_RUNS_STREAM_RETENTION_S", 7 * 86400),
            events_max_len=_int_setting("DOC_RUNS_EVENTS_MAX_LEN", 100_000),
            allowed_roots=_json_setting("DOC_RUNS_ALLOWED_ROOTS", {}),
            max_documents_per_run=_int_setting("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", 50),
        ),
        "secrets": SecretsResource(
            secrets_file=_setting("DOC_RUNS_SECRETS_FILE", _default_secrets_file),
            file_must_exist="DOC_RUNS_SECRETS_FILE" in os.environ,
            api_tokens=_setting("DOC_RUNS_API_TOKENS", ""),
            signing_keys=_setting("DOC_RUNS_SIGNING_KEYS", ""),
        ),
        "extraction": ExtractionResource(
            max_bytes=_int_setting("DOC_RUNS_MAX_BYTES", 100 * 1024 * 1024),
            max_pages=_int_setting("DOC_RUNS_MAX_PAGES", 5000),
            deadline_seconds=_float_setting("DOC_RUNS_EXTRACT_DEADLINE_S", 60.0),
            memory_mb=_int_setting("DOC_RUNS_EXTRACT_MEMORY_MB", 2048),
            pdf_engine=_choice_setting("DOC_RUNS_PDF_ENGINE", "pypdf", get_args(PdfEngine)),
            pdf_second_opinion=_bool_setting("DOC_RUNS_PDF_SECOND_OPINION", False),
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
            extra_fields=_fields_setting("DOC_RUNS_EXTRA_FIELDS"),
            max_steps=_int_setting("DOC_RUNS_AGENT_MAX_STEPS", 12),
            document_token_budget=_int_setting("DOC_RUNS_DOCUMENT_TOKEN_BUDGET", 200_000),
            run_token_budget=_int_setting("DOC_RUNS_RUN_TOKEN_BUDGET", 2_000_000),
            chunk_concurrency=_int_setting("DOC_RUNS_CHUNK_CONCURRENCY", 4),
        ),
    },
)
