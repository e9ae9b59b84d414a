"""Every setting of doc_runs in one place: its variable, type, default and meaning.

Read once per process, when something first asks (`load_settings`), never at import: from the
environment and, where DOC_RUNS_SETTINGS_FILE names one, a TOML file of the same names (the
environment wins). A bad value stops whoever asked (the code location, the API, the CLI) with
one message naming the variable and what it accepts. Plain Python: no Dagster here.
"""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from doc_runs.project import project_path
from doc_runs.setting_values import (
    AllowedRoots,
    Cron,
    FieldSpecs,
    LogFormat,
    LogLevel,
    ModelBackend,
    PdfEngine,
    Seconds,
    Tenant,
    TimeZone,
    describe_problems,
)

SETTINGS_FILE_VARIABLE = "DOC_RUNS_SETTINGS_FILE"

# Read by the shell scripts, the compose file and the image build, not by Python; known here
# so that they are not warned about as misspelled settings.
DEPLOYMENT_VARIABLES = frozenset({
    SETTINGS_FILE_VARIABLE, "DOC_RUNS_HOST", "DOC_RUNS_PORT", "DOC_RUNS_API_HOST",
    "DOC_RUNS_API_PORT", "DOC_RUNS_UI_PORT", "DOC_RUNS_API_BIND", "DOC_RUNS_UID",
    "DOC_RUNS_IMAGE_TAG", "DOC_RUNS_POSTGRES_PASSWORD", "DOC_RUNS_CODE_SERVER_HOST",
    "DOC_RUNS_CODE_SERVER_PORT", "DOC_RUNS_SECRETS_FILE_HOST",
    # The test suite's own.
    "DOC_RUNS_CHROMIUM", "DOC_RUNS_TEST_ARTIFACTS", "DOC_RUNS_TEST_WORKERS",
})

_log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable, never a secret's value."""


def setting(default: Any = None, *, name: str, meaning: str, secret: bool = False,
            factory: Any = None, shown: str | None = None, **constraints: Any) -> Any:
    """A field read from the variable `name`. A secret is taken from the environment only
    (never the settings file), and is handed to Dagster as an EnvVar: resolved in the run's
    own process and shown in the UI by its name, never its value."""
    extra: dict[str, Any] = {"secret": secret, "shown": shown}
    if factory is not None:
        return Field(default_factory=factory, alias=name, description=meaning,
                     json_schema_extra=extra, **constraints)
    return Field(default, alias=name, description=meaning, json_schema_extra=extra,
                 **constraints)


class Settings(BaseModel):
    """What an operator can set. Field names are Python's; aliases are the variables."""

    # No protected namespaces: `model_backend` and `model_timeout_s` are settings' names, and
    # pydantic before 2.10 warns about fields starting with "model_".
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True,
                              protected_namespaces=())

    # -- where things are kept --
    store_dir: str = setting(name="DOC_RUNS_STORE_DIR", factory=lambda: project_path(
        "data", "store"), shown="`data/store`",
        meaning="blobs, stage artifacts, per-stage records")
    reports_dir: str = setting(name="DOC_RUNS_REPORTS_DIR", factory=lambda: project_path(
        "data", "reports"), shown="`data/reports`",
        meaning="`corpus_report-<day>.csv`, `usage_ledger-<day>.csv`")
    database_url: str = setting(
        "", name="DOC_RUNS_DATABASE_URL", secret=True,
        meaning="the catalog; unset: the instance's PostgreSQL (`DAGSTER_POSTGRES_URL`) or "
        "`doc_runs.sqlite` in `DAGSTER_HOME`")
    dagster_home: str = setting(
        name="DAGSTER_HOME", factory=lambda: project_path(".dagster_home"),
        shown="`.dagster_home`", meaning="Dagster's instance folder")
    dagster_postgres_url: str = setting(
        "", name="DAGSTER_POSTGRES_URL", secret=True,
        meaning="the instance's PostgreSQL, as the shipped PostgreSQL instance file reads it")
    secrets_file: str = setting(
        "", name="DOC_RUNS_SECRETS_FILE", shown="`.secrets/tenants.json`",
        meaning="tenants' token hashes and signing keys; the default one is made by `bin/up`, "
        "one named here must exist")
    # -- the inbox, the queue and runs --
    inbox_dir: str = setting(name="DOC_RUNS_INBOX_DIR", factory=lambda: project_path(
        "data", "inbox"), shown="`data/inbox`", meaning="folder the inbox sensor watches")
    inbox_tenant: Tenant = setting(
        "default", name="DOC_RUNS_INBOX_TENANT", meaning="tenant of the inbox's documents")
    max_documents_per_run: int = setting(
        50, name="DOC_RUNS_MAX_DOCUMENTS_PER_RUN", ge=1,
        meaning="documents in one run (inbox, queue, schedule)")
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0", name="DOC_RUNS_REDIS_URL", secret=True,
        meaning="queue, dead letters, events")
    stream_prefix: str = setting(
        "", name="DOC_RUNS_STREAM_PREFIX", shown="`doc_runs:<deployment id>:`",
        meaning="prefix of every Redis key (the id is kept in `DAGSTER_HOME`); set it when a "
        "deployment spans machines")
    stream_retention_s: int = setting(
        7 * 86400, name="DOC_RUNS_STREAM_RETENTION_S", ge=1,
        meaning="handled entries older than this are trimmed (behind the cursor only); "
        "idempotency keys are kept as long")
    events_max_len: int = setting(
        100_000, name="DOC_RUNS_EVENTS_MAX_LEN", ge=1,
        meaning="outcome events kept per tenant, about")
    allowed_roots: AllowedRoots = setting(
        "{}", name="DOC_RUNS_ALLOWED_ROOTS",
        meaning="JSON: root name to its folder and the tenants that may use it, for messages "
        "that name a path (`{\"NAME\": {\"path\": \"/folder\", \"tenants\": [\"acme\"]}}`, "
        "or `\"shared\": true` instead of `tenants`)")
    api_tokens: str = setting(
        "", name="DOC_RUNS_API_TOKENS", secret=True,
        meaning="`tenant=token,...`, added to the secrets file's")
    signing_keys: str = setting(
        "", name="DOC_RUNS_SIGNING_KEYS", secret=True,
        meaning="`tenant=key,...`; a key here replaces the secrets file's")
    stage_retries: int = setting(
        3, name="DOC_RUNS_STAGE_RETRIES", ge=0, meaning="the stages' `RetryPolicy`: retries")
    retry_delay_s: Seconds = setting(
        2.0, name="DOC_RUNS_RETRY_DELAY_S", ge=0,
        meaning="the stages' `RetryPolicy`: first delay (exponential, jittered)")
    max_runtime_s: Seconds = setting(
        21600.0, name="DOC_RUNS_MAX_RUNTIME_S", ge=0,
        meaning="a document run's `dagster/max_runtime` tag; 0: none")
    nightly_cron: Cron = setting(
        "0 2 * * *", name="DOC_RUNS_NIGHTLY_CRON", meaning="the unfinished documents' schedule")
    report_cron: Cron = setting(
        "0 * * * *", name="DOC_RUNS_REPORT_CRON", meaning="the corpus report's schedule")
    schedule_tz: TimeZone = setting(
        "UTC", name="DOC_RUNS_SCHEDULE_TZ", meaning="time zone of both schedules")
    # -- extraction and chunking --
    max_bytes: int = setting(
        100 * 1024 * 1024, name="DOC_RUNS_MAX_BYTES", ge=1,
        meaning="larger documents are `too_large`; also the API's upload limit")
    max_pages: int = setting(5000, name="DOC_RUNS_MAX_PAGES", ge=1,
                             meaning="more pages are `too_large`")
    extract_deadline_s: Seconds = setting(
        60.0, name="DOC_RUNS_EXTRACT_DEADLINE_S", gt=0, meaning="hard limit per document")
    extract_memory_mb: int = setting(
        2048, name="DOC_RUNS_EXTRACT_MEMORY_MB", ge=1,
        meaning="address-space cap of a PDF worker")
    pdf_engine: PdfEngine = setting(
        "pypdf", name="DOC_RUNS_PDF_ENGINE", meaning="`pypdf` or `pdfium`")
    pdf_second_opinion: bool = setting(
        False, name="DOC_RUNS_PDF_SECOND_OPINION",
        meaning="1: PDFium rereads PDFs pypdf calls `corrupt`")
    chunk_size: int = setting(1200, name="DOC_RUNS_CHUNK_SIZE", ge=1,
                              meaning="characters per chunk")
    chunk_overlap: int = setting(200, name="DOC_RUNS_CHUNK_OVERLAP", ge=0,
                                 meaning="characters two chunks share")
    # -- the model and the agent --
    model_backend: ModelBackend = setting(
        "offline", name="DOC_RUNS_MODEL_BACKEND", meaning="`offline` or `openai`")
    openai_base_url: str = setting(
        "https://api.openai.com/v1", name="OPENAI_BASE_URL",
        meaning="any OpenAI-compatible chat-completions endpoint")
    openai_api_key: str = setting("", name="OPENAI_API_KEY", secret=True,
                                  meaning="the endpoint's key")
    model: str = setting("gpt-4o-mini", name="DOC_RUNS_MODEL", meaning="the model's name")
    model_timeout_s: Seconds = setting(
        60.0, name="DOC_RUNS_MODEL_TIMEOUT_S", gt=0,
        meaning="hard limit per model call; an abandoned call's connection is shut down")
    price_in_per_mtok: Seconds = setting(
        0.0, name="DOC_RUNS_PRICE_IN_PER_MTOK", ge=0, meaning="dollars per 1M prompt tokens")
    price_out_per_mtok: Seconds = setting(
        0.0, name="DOC_RUNS_PRICE_OUT_PER_MTOK", ge=0,
        meaning="dollars per 1M completion tokens")
    agent_max_steps: int = setting(12, name="DOC_RUNS_AGENT_MAX_STEPS", ge=1,
                                   meaning="most model calls per document")
    extra_fields: FieldSpecs = setting(
        "{}", name="DOC_RUNS_EXTRA_FIELDS",
        meaning="JSON: your own fields, name to a description or to "
        "`{description, type, many, choices, hint}`")
    document_token_budget: int = setting(
        200_000, name="DOC_RUNS_DOCUMENT_TOKEN_BUDGET", ge=0,
        meaning="most tokens per document; 0: none")
    run_token_budget: int = setting(2_000_000, name="DOC_RUNS_RUN_TOKEN_BUDGET", ge=0,
                                    meaning="most tokens per step of a run; 0: none")
    chunk_concurrency: int = setting(
        4, name="DOC_RUNS_CHUNK_CONCURRENCY", ge=1,
        meaning="a document's chunk-level model calls at once; twice this is a step's calls "
        "in flight and documents at once")
    # -- the HTTP API --
    api_heartbeat_s: Seconds = setting(
        15.0, name="DOC_RUNS_API_HEARTBEAT_S", gt=0,
        meaning="a comment line this often keeps an idle event stream open")
    api_events_max_open_s: Seconds = setting(
        3600.0, name="DOC_RUNS_API_EVENTS_MAX_OPEN_S", gt=0,
        meaning="longest an event stream stays open without `final`")
    # -- logs --
    log_format: LogFormat = setting(
        "off", name="DOC_RUNS_LOG_FORMAT",
        meaning="`json` or `text`: structured log lines on standard error")
    log_level: LogLevel = setting(
        "INFO", name="DOC_RUNS_LOG_LEVEL", meaning="of the structured log lines")

    # Where each value came from, by variable: "environment", "file" or absent (default).
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Variable name -> field name, for every setting."""
        return {info.alias: name for name, info in cls.model_fields.items() if info.alias}

    @classmethod
    def is_secret(cls, variable: str) -> bool:
        info = cls.model_fields[cls.variables()[variable]]
        return bool((info.json_schema_extra or {}).get("secret"))  # type: ignore[union-attr]

    @classmethod
    def from_sources(cls, environ: Mapping[str, str],
                     file_values: Mapping[str, Any] | None = None,
                     *, environment_label: str = "environment") -> Settings:
        """Settings from `environ` over `file_values`. Empty values count as unset (a compose
        file passes an unset variable on as an empty one)."""
        known = cls.variables()
        given: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for origin, values in (("file", file_values or {}),
                               (environment_label, environ)):
            for variable, raw in values.items():
                if variable not in known:
                    continue
                value = raw.strip() if isinstance(raw, str) else raw
                if value == "":
                    continue
                given[variable] = value
                sources[variable] = origin
        try:
            return cls.model_validate({**given, "sources": sources})
        except ValidationError as exc:
            raise SettingsError(describe_problems(exc, given, sources, cls.is_secret)) from None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from an explicit mapping (a test's, a child process's environment), with
        the settings file it names, if any."""
        return cls.from_sources(environ, read_settings_file(environ.get(
            SETTINGS_FILE_VARIABLE, "")), environment_label="given")

    def from_process_environment(self, variable: str) -> bool:
        """Whether `variable` was read from this process's environment, where a process it
        starts (a run worker) finds it too."""
        return self.sources.get(variable) == "environment"

    def catalog_url(self) -> str:
        """Where the catalog lives (doc_runs.core.catalog.catalog_url's one rule)."""
        from doc_runs.core.catalog import catalog_url

        return catalog_url({"DOC_RUNS_DATABASE_URL": self.database_url,
                            "DAGSTER_POSTGRES_URL": self.dagster_postgres_url,
                            "DAGSTER_HOME": self.dagster_home})

    def secrets_file_or_default(self) -> str:
        """The secrets file: the one named, else the project's own (git-ignored), which
        `bin/up` makes."""
        return self.secrets_file or project_path(".secrets", "tenants.json")

    def secrets_variables(self) -> dict[str, str]:
        """The tenants' secrets as doc_runs.auth.load_secrets reads them: a file named by the
        setting must exist, the default one is used where it does."""
        path = self.secrets_file_or_default()
        use_file = bool(self.secrets_file) or Path(path).exists()
        return {"DOC_RUNS_SECRETS_FILE": path if use_file else "",
                "DOC_RUNS_API_TOKENS": self.api_tokens,
                "DOC_RUNS_SIGNING_KEYS": self.signing_keys}


def read_settings_file(path: str) -> dict[str, Any]:
    """The settings file's values: TOML whose keys are the variables' names. A key that is no
    setting, or a secret (those come from the environment only), is an error."""
    if not path.strip():
        return {}
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={path!r}: cannot read it "
                            f"({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={path!r} is not TOML: {exc}") from None
    known = Settings.variables()
    unknown = sorted(key for key in values if key not in known)
    if unknown:
        raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={path!r}: {', '.join(unknown)} "
                            f"{'is not a setting' if len(unknown) == 1 else 'are not settings'}")
    secret = sorted(key for key in values if Settings.is_secret(key))
    if secret:
        raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={path!r}: {', '.join(secret)} "
                            "may only be set in the environment (Dagster resolves it in the "
                            "run's process and never shows its value)")
    # JSON settings may be written as TOML tables; numbers and booleans as TOML's own.
    return {key: _as_text(value) for key, value in values.items()}


def _as_text(value: Any) -> Any:
    import json

    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """DOC_RUNS_* variables that name no setting: a misspelled setting should not be silent."""
    known = set(Settings.variables()) | DEPLOYMENT_VARIABLES
    return sorted(name for name in environ
                  if name.startswith("DOC_RUNS_") and name not in known)


@cache
def load_settings() -> Settings:
    """This process's settings, read from its environment the first time they are asked for."""
    environ = dict(os.environ)
    settings = Settings.from_sources(environ, read_settings_file(
        environ.get(SETTINGS_FILE_VARIABLE, "")))
    for name in unknown_variables(environ):
        _log.warning("%s is set but is no doc_runs setting (misspelled?); it is ignored", name)
    return settings


def settings_table() -> str:
    """The README's settings table, generated from the fields (a test keeps them equal)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for info in Settings.model_fields.values():
        if not info.alias:
            continue
        extra = info.json_schema_extra or {}
        if extra.get("shown"):  # type: ignore[union-attr]
            default = str(extra["shown"])  # type: ignore[index]
        elif info.default in ("", None):
            default = "unset"
        elif isinstance(info.default, bool):
            default = f"`{int(info.default)}`"
        elif isinstance(info.default, float):
            default = f"`{info.default:g}`"
        else:
            default = f"`{info.default}`"
        secret = " (environment only)" if Settings.is_secret(info.alias) else ""
        rows.append(f"| `{info.alias}` | {default} | {info.description}{secret} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    """`python -m doc_runs.settings`: the README's table; `--check`: this environment's
    settings can be used (else the message, exit 2); `--stream-prefix`: the Redis key prefix
    this environment's processes use."""
    if not argv:
        print(settings_table())
        return 0
    try:
        settings = load_settings()
    except SettingsError as problem:
        print(f"doc_runs: configuration: {problem}", file=sys.stderr)
        return 2
    if argv == ["--stream-prefix"]:
        from doc_runs.project import default_stream_prefix

        print(settings.stream_prefix or default_stream_prefix(settings.dagster_home))
    elif argv != ["--check"]:
        print(main.__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
