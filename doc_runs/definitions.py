"""The one Definitions object of doc_runs, built from the settings when Dagster loads the code
location (or a run worker its job), not when this module is imported."""

from __future__ import annotations

from dagster import ConfigurableResource, Definitions, EnvVar, definitions, in_process_executor

from doc_runs.defs.assets import (
    corpus_report,
    document,
    document_chunks,
    document_findings,
    document_summary,
    document_text,
)
from doc_runs.defs.events_sensor import outcome_events_sensor
from doc_runs.defs.jobs import build_corpus_report_job, build_document_pipeline
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
from doc_runs.defs.schedules import (
    build_corpus_report_schedule,
    build_unfinished_documents_schedule,
)
from doc_runs.defs.sensors import inbox_sensor, report_refresh_sensor
from doc_runs.defs.starting_runs import starting_runs_sensor
from doc_runs.logs import configure_logging
from doc_runs.project import default_stream_prefix
from doc_runs.settings import Settings, load_settings


def _secret(settings: Settings, variable: str, value: str) -> str | EnvVar:
    """A secret read from this process's environment goes to Dagster as an EnvVar: resolved
    in the run's own process, and shown in the UI by its name, never its value. One given
    otherwise (a test's explicit settings) is passed as it is."""
    return EnvVar(variable) if settings.from_process_environment(variable) else value


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources, their values from `settings`."""
    return {
        "document_store": DocumentStoreResource(root=settings.store_dir,
                                                reports_dir=settings.reports_dir),
        "catalog": CatalogResource(
            url=_secret(settings, "DOC_RUNS_DATABASE_URL", settings.database_url)),
        "inbox": InboxResource(
            path=settings.inbox_dir,
            tenant=settings.inbox_tenant,
            max_documents_per_run=settings.max_documents_per_run,
        ),
        "queue": QueueResource(
            redis_url=_secret(settings, "DOC_RUNS_REDIS_URL", settings.redis_url),
            stream_prefix=settings.stream_prefix or default_stream_prefix(settings.dagster_home),
            retention_seconds=settings.stream_retention_s,
            events_max_len=settings.events_max_len,
            allowed_roots={name: root.path for name, root in settings.allowed_roots.items()},
            root_tenants={name: sorted(root.tenants)
                          for name, root in settings.allowed_roots.items()
                          if root.tenants is not None},
            max_documents_per_run=settings.max_documents_per_run,
        ),
        "secrets": SecretsResource(
            secrets_file=settings.secrets_file_or_default(),
            file_must_exist=bool(settings.secrets_file),
            api_tokens=_secret(settings, "DOC_RUNS_API_TOKENS", settings.api_tokens),
            signing_keys=_secret(settings, "DOC_RUNS_SIGNING_KEYS", settings.signing_keys),
        ),
        "extraction": ExtractionResource(
            max_bytes=settings.max_bytes,
            max_pages=settings.max_pages,
            deadline_seconds=settings.extract_deadline_s,
            memory_mb=settings.extract_memory_mb,
            pdf_engine=settings.pdf_engine,
            pdf_second_opinion=settings.pdf_second_opinion,
        ),
        "chunking": ChunkingResource(chunk_size=settings.chunk_size,
                                     chunk_overlap=settings.chunk_overlap),
        "summarizing": SummaryResource(),
        "model": ModelResource(
            backend=settings.model_backend,
            base_url=settings.openai_base_url,
            api_key=_secret(settings, "OPENAI_API_KEY", settings.openai_api_key),
            model=settings.model,
            timeout_seconds=settings.model_timeout_s,
            input_price_per_mtok=settings.price_in_per_mtok,
            output_price_per_mtok=settings.price_out_per_mtok,
        ),
        "agent": AgentResource(
            extra_fields=settings.extra_fields,
            max_steps=settings.agent_max_steps,
            document_token_budget=settings.document_token_budget,
            run_token_budget=settings.run_token_budget,
            chunk_concurrency=settings.chunk_concurrency,
        ),
    }


def build_definitions(settings: Settings) -> Definitions:
    return Definitions(
        assets=[document, document_text, document_chunks, document_findings, document_summary,
                corpus_report],
        jobs=[build_document_pipeline(settings), build_corpus_report_job(settings)],
        sensors=[inbox_sensor, queue_sensor, outcome_events_sensor, report_refresh_sensor,
                 starting_runs_sensor],
        schedules=[build_unfinished_documents_schedule(settings),
                   build_corpus_report_schedule(settings)],
        # Every run in one process, also those the UI's Materialize buttons make: a run's
        # steps are a chain whose work is milliseconds against a process's seconds of
        # start-up, and a run with one process is one the run launcher can tell is alive
        # (run_launcher.py).
        executor=in_process_executor,
        resources=build_resources(settings),
    )


@definitions
def defs() -> Definitions:
    """What Dagster loads: this process's settings (a bad one stops the load, naming its
    variable), and, where DOC_RUNS_LOG_FORMAT asks for them, structured log lines from every
    process that loads it (the code server with its sensors, each run worker)."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    return build_definitions(settings)
