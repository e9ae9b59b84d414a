"""Configuration of the pipeline as Dagster resources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast, get_args

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from doc_runs.core.agent.backends import ModelBackend, OpenAIBackend
from doc_runs.core.agent.findings import DEFAULT_FIELDS, FieldSpec, extra_field_specs
from doc_runs.core.agent.ledger import Pricing
from doc_runs.core.agent.loop import AgentLimits
from doc_runs.core.agent.offline import OfflineBackend
from doc_runs.core.catalog import DocumentCatalog, catalog_url
from doc_runs.core.chunking import ChunkingConfig
from doc_runs.core.extract import ExtractionLimits, PdfEngine
from doc_runs.core.store import DocumentStore
from doc_runs.core.summarize import SummaryConfig
from doc_runs.defs.run_heartbeat import RunHeartbeat
from doc_runs.queue.roots import AllowedRoot
from doc_runs.settings import Settings, load_settings

# Numeric fields carry no pydantic bounds here: a field set from an environment variable holds
# a placeholder until the run resolves it. The core models built from them (ExtractionLimits,
# ChunkingConfig, AgentLimits, SummaryConfig, Pricing) carry the bounds and check them at use.


class DocumentStoreResource(ConfigurableResource):
    """Where document bytes, stage artifacts, per-stage records and reports live."""

    root: str = Field(description="Folder of the content-addressed store.")
    reports_dir: str = Field(description="Folder the corpus report CSV is written to.")

    def store(self) -> DocumentStore:
        return DocumentStore(self.root)


class InboxResource(ConfigurableResource):
    path: str = Field(description="Folder watched for new documents.")
    tenant: str = Field("default", description="Tenant the inbox's documents belong to.")
    max_files_per_tick: int = Field(500)
    max_documents_per_run: int = Field(50)
    settle_seconds: float = Field(
        2.0, description="Files modified more recently are still being written; wait."
    )


class ExtractionResource(ConfigurableResource):
    max_bytes: int = Field(100 * 1024 * 1024)
    max_pages: int = Field(5000)
    deadline_seconds: float = Field(60.0, description="Hard limit per document.")
    memory_mb: int = Field(2048, description="Address-space cap of a worker process.")
    workers: int = Field(
        0, description="Documents extracted at once; 0 means one per CPU core."
    )
    pdf_engine: str = Field(
        "pypdf", description="pypdf | pdfium (DOC_RUNS_PDF_ENGINE); pdfium needs the "
        "`pdfium` extra (pypdfium2).")
    pdf_second_opinion: bool = Field(
        False, description="With pypdf, reread a PDF it finds corrupt with pdfium where "
        "installed (DOC_RUNS_PDF_SECOND_OPINION).")

    def limits(self) -> ExtractionLimits:
        if self.pdf_engine not in get_args(PdfEngine):
            raise ValueError(f"unknown PDF engine {self.pdf_engine!r}: use pypdf or pdfium")
        return ExtractionLimits(
            max_bytes=self.max_bytes,
            max_pages=self.max_pages,
            deadline_s=self.deadline_seconds,
            memory_bytes=self.memory_mb * 1024 * 1024,
            pdf_engine=cast(PdfEngine, self.pdf_engine),
            second_opinion=self.pdf_second_opinion,
        )

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


class ChunkingResource(ConfigurableResource):
    chunk_size: int = Field(1200)
    chunk_overlap: int = Field(200)

    def config(self) -> ChunkingConfig:
        return ChunkingConfig(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)


class SummaryResource(ConfigurableResource):
    max_sentences: int = Field(5)
    max_chars: int = Field(900)

    def config(self) -> SummaryConfig:
        return SummaryConfig(max_sentences=self.max_sentences, max_chars=self.max_chars)


class ModelResource(ConfigurableResource):
    """The model backend: `offline` (default; extractive, no network) or `openai` (any
    OpenAI-compatible chat-completions endpoint with tool calling)."""

    backend: str = Field("offline", description="offline | openai (DOC_RUNS_MODEL_BACKEND)")
    base_url: str = Field("https://api.openai.com/v1", description="OPENAI_BASE_URL")
    api_key: str = Field("", description="OPENAI_API_KEY")
    model: str = Field("gpt-4o-mini", description="DOC_RUNS_MODEL")
    timeout_seconds: float = Field(60.0, description="Hard limit per model call.")
    max_response_bytes: int = Field(2 * 1024 * 1024)
    input_price_per_mtok: float = Field(0.0, description="Dollars per 1M prompt tokens.")
    output_price_per_mtok: float = Field(0.0,
                                         description="Dollars per 1M completion tokens.")

    def create_backend(self) -> ModelBackend:
        if self.backend not in ("offline", "openai"):
            raise ValueError(f"unknown model backend {self.backend!r}: use offline or openai")
        if self.timeout_seconds <= 0:
            raise ValueError("the model timeout must be positive")
        if self.backend == "openai":
            return OpenAIBackend(self.base_url, self.api_key, self.model, self.timeout_seconds,
                                 self.max_response_bytes)
        return OfflineBackend()

    def pricing(self) -> Pricing:
        return Pricing(input_per_mtok=self.input_price_per_mtok,
                       output_per_mtok=self.output_price_per_mtok)


class AgentResource(ConfigurableResource):
    """What the agent answers and the bounds it works in."""

    extra_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Your own fields, answered after the defaults (DOC_RUNS_EXTRA_FIELDS as "
        "JSON): name -> description (a text field), or name -> {description, type, many, "
        "choices, hint}.",
    )
    max_steps: int = Field(12, description="Most model calls per document.")
    max_reprompts: int = Field(2)
    max_tool_errors: int = Field(6)
    max_tokens: int = Field(1024, description="Most tokens per model reply.")
    document_token_budget: int = Field(200_000, description="0 means no budget.")
    run_token_budget: int = Field(2_000_000, description="Per step; 0 means none.")
    chunk_concurrency: int = Field(4, description="A document's chunk-level calls at once.")
    document_concurrency: int = Field(
        2, description="Times chunk_concurrency: the model calls a step has in flight at once, "
        "and the documents it works on at once through the model (the offline backend works "
        "on this many).")
    rate_limit_retries: int = Field(5, description="Retries after HTTP 429.")

    def fields(self, per_run: dict[str, Any] | None = None) -> list[FieldSpec]:
        """The default fields, the configured extra ones, then those a message asked for
        (a run's `doc_runs/extra_fields` tag); of those, a later spec of a name wins.
        FieldSpecInvalid names a field that is wrong (checked before: where the
        configuration loads, and where a message or an upload comes in)."""
        return [*DEFAULT_FIELDS,
                *extra_field_specs({**self.extra_fields, **(per_run or {})})]

    def calls_in_flight(self) -> int:
        """Model calls one step has in flight at most (its documents share them)."""
        if self.document_concurrency < 1 or self.chunk_concurrency < 1:
            raise ValueError("document_concurrency and chunk_concurrency must be at least 1")
        return self.document_concurrency * self.chunk_concurrency

    def limits(self) -> AgentLimits:
        return AgentLimits(max_steps=self.max_steps, max_reprompts=self.max_reprompts,
                           max_tool_errors=self.max_tool_errors, max_tokens=self.max_tokens)


class CatalogResource(ConfigurableResource):
    """The document catalog (doc_runs.core.catalog): batches, documents' states, stage
    records, kept in the instance's database. Opened when the resource is set up for a run
    or a tick, closed after it."""

    url: str = Field(
        "", description="DOC_RUNS_DATABASE_URL; empty: the instance's own database (its "
        "PostgreSQL, or a SQLite file beside its SQLite storage in DAGSTER_HOME).")
    _opened: DocumentCatalog | None = PrivateAttr(default=None)
    _heartbeat: RunHeartbeat | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._opened = DocumentCatalog(self.url or instance_catalog_url(context.instance))
        if context.run is not None and context.instance is not None:
            # Set up for a run: its process says which it is while it works, so a run whose
            # process died with its host is recognized (run_launcher.py).
            heartbeat = RunHeartbeat.in_run_process(self._opened, context.instance,
                                                    context.run.run_id)
            self._heartbeat = heartbeat.start() if heartbeat is not None else None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def catalog(self) -> DocumentCatalog:
        if self._opened is None:  # used outside a run or tick (a test, a script)
            self._opened = DocumentCatalog(self.url or load_settings().catalog_url())
        return self._opened


def instance_catalog_url(instance: Any, settings: Settings | None = None) -> str:
    """The catalog of `instance`: DOC_RUNS_DATABASE_URL where set, else the instance's own
    PostgreSQL, else a SQLite file in its folder. Processes without an instance (the HTTP API)
    find the same one by Settings.catalog_url: the shipped PostgreSQL instance file reads
    DAGSTER_POSTGRES_URL, and DAGSTER_HOME is the instance's folder. Without `settings`, this
    process's (the instance's own plugins, which Dagster builds, have no others)."""
    settings = settings or load_settings()
    if settings.database_url or instance is None:
        return settings.catalog_url()
    from dagster_postgres import PostgresRunStorage

    if isinstance(instance.run_storage, PostgresRunStorage):
        return instance.run_storage.postgres_url
    return catalog_url({"DAGSTER_HOME": instance.root_directory})


class QueueResource(ConfigurableResource):
    """The Redis streams: where messages arrive, where poison ones go, how long entries are
    kept behind the cursor, and the roots a message may name a path under."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="DOC_RUNS_REDIS_URL")
    stream_prefix: str = Field("doc_runs:", description="Prefix of every key (DOC_RUNS_"
                               "STREAM_PREFIX): several deployments can share one Redis.")
    retention_seconds: int = Field(
        7 * 86400, description="Handled entries older than this are trimmed, and only behind "
        "the sensor's cursor (DOC_RUNS_STREAM_RETENTION_S); also how long an idempotency key "
        "is remembered.")
    events_max_len: int = Field(
        100_000, description="Outcome events kept per tenant stream, about "
        "(DOC_RUNS_EVENTS_MAX_LEN); a reader further behind reads the status instead.")
    max_messages_per_tick: int = Field(
        1000, description="Each accepted message may be a new document, and the daemon writes "
        "every run's planned events after the tick: small ticks keep it responsive.")
    max_documents_per_run: int = Field(50)
    allowed_roots: dict[str, str] = Field(
        default_factory=dict, description="Name -> folder: a message may name a file under "
        "one of these (DOC_RUNS_ALLOWED_ROOTS as JSON), if its tenant may use it.")
    root_tenants: dict[str, list[str]] = Field(
        default_factory=dict, description="Name -> the tenants that may use the root; a root "
        "not named here is shared (DOC_RUNS_ALLOWED_ROOTS says which).")

    def roots(self) -> dict[str, AllowedRoot]:
        """Each allowed root by its name."""
        return {name: AllowedRoot(path, frozenset(self.root_tenants[name])
                                  if name in self.root_tenants else None)
                for name, path in self.allowed_roots.items()}

    def client(self) -> Any:
        from doc_runs.queue.streams import connect_redis

        return connect_redis(self.redis_url)

    def names(self) -> Any:
        from doc_runs.queue.streams import StreamNames

        return StreamNames(self.stream_prefix)


class SecretsResource(ConfigurableResource):
    """Tenants' API tokens and signing keys (see doc_runs.auth): a secrets file and/or
    environment variables, never committed."""

    secrets_file: str = Field("", description="DOC_RUNS_SECRETS_FILE")
    file_must_exist: bool = Field(
        True, description="False for the local default file, which `bin/up` creates.")
    api_tokens: str = Field("", description="DOC_RUNS_API_TOKENS: tenant=token,...")
    signing_keys: str = Field("", description="DOC_RUNS_SIGNING_KEYS: tenant=key,...")

    def load(self) -> Any:
        from doc_runs.auth import load_secrets

        use_file = self.secrets_file and (self.file_must_exist
                                          or Path(self.secrets_file).exists())
        return load_secrets({name: value for name, value in (
            ("DOC_RUNS_SECRETS_FILE", self.secrets_file if use_file else ""),
            ("DOC_RUNS_API_TOKENS", self.api_tokens),
            ("DOC_RUNS_SIGNING_KEYS", self.signing_keys)) if value})
