"""`doc-runs api`: the HTTP app configured exactly as the runs see their resources."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from doc_runs.api.settings import ApiSettings, SecretsSource
from doc_runs.core.catalog import catalog_url

HEARTBEAT_VARIABLE = "DOC_RUNS_API_HEARTBEAT_S"
MAX_OPEN_VARIABLE = "DOC_RUNS_API_EVENTS_MAX_OPEN_S"


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None


def settings_from_resources(resources: Mapping[str, Any],
                            env: Mapping[str, str] = os.environ) -> ApiSettings:
    """ApiSettings from the Definitions' resources, their environment variables resolved."""
    def configured(name: str) -> Any:
        return resources[name].process_config_and_initialize()

    queue, secrets = configured("queue"), configured("secrets")
    watched = Path(secrets.secrets_file) if secrets.secrets_file else None
    return ApiSettings(
        store_root=Path(configured("document_store").root),
        catalog_url=catalog_url(env),
        redis_url=queue.redis_url,
        stream_prefix=queue.stream_prefix,
        secrets=SecretsSource(secrets.load, watched),
        max_upload_bytes=configured("extraction").max_bytes,
        events_heartbeat_s=_seconds(env, HEARTBEAT_VARIABLE, 15.0),
        events_max_open_s=_seconds(env, MAX_OPEN_VARIABLE, 3600.0),
        idempotency_ttl_s=float(queue.retention_seconds),
    )


def serve(host: str, port: int) -> None:
    import uvicorn

    from doc_runs.api.app import create_app
    from doc_runs.logs import configure_logging
    from doc_runs.project import ensure_dagster_home

    ensure_dagster_home()  # where the local default keeps the catalog
    from doc_runs.definitions import defs

    configure_logging("api")
    settings = settings_from_resources(defs.resources or {})
    # Loaded once here so a broken secrets file stops the start with its message.
    settings.secrets.current()
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True)
