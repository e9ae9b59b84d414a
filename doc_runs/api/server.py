"""`doc-runs api`: the HTTP app, configured from the same settings the runs' resources get."""

from __future__ import annotations

from pathlib import Path

from doc_runs.api.settings import ApiSettings, SecretsSource
from doc_runs.auth import load_secrets
from doc_runs.project import default_stream_prefix
from doc_runs.settings import Settings


def api_settings(settings: Settings) -> ApiSettings:
    """What the HTTP app needs, from the settings: the same store, catalog, Redis keys,
    secrets and upload limit as the runs."""
    watched = Path(settings.secrets_file_or_default())
    return ApiSettings(
        store_root=Path(settings.store_dir),
        catalog_url=settings.catalog_url(),
        redis_url=settings.redis_url,
        stream_prefix=settings.stream_prefix or default_stream_prefix(settings.dagster_home),
        secrets=SecretsSource(lambda: load_secrets(settings.secrets_variables()), watched),
        max_upload_bytes=settings.max_bytes,
        events_heartbeat_s=settings.api_heartbeat_s,
        events_max_open_s=settings.api_events_max_open_s,
        idempotency_ttl_s=float(settings.stream_retention_s),
    )


def serve(host: str, port: int, settings: Settings) -> None:
    import uvicorn

    from doc_runs.api.app import create_app
    from doc_runs.logs import configure_logging
    from doc_runs.project import ensure_dagster_home

    ensure_dagster_home(settings.dagster_home)  # where the local default keeps the catalog
    configure_logging(settings.log_format, settings.log_level, "api")
    app_settings = api_settings(settings)
    # Loaded once here so a broken secrets file stops the start with its message.
    app_settings.secrets.current()
    uvicorn.run(create_app(app_settings), host=host, port=port, proxy_headers=True)
