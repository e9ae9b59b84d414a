"""The server entry point's settings come from the same settings as the runs' resources;
`doc-runs api` runs the app on uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from doc_runs.api.server import api_settings
from doc_runs.auth import add_tenant
from doc_runs.settings import Settings, SettingsError
from doc_runs_tests.servers import free_port


def test_the_api_settings_come_from_the_settings(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.json"
    add_tenant(secrets_file, "acme")
    given = {"DOC_RUNS_STORE_DIR": str(tmp_path / "store"),
             "DOC_RUNS_REDIS_URL": "redis://127.0.0.1:6390/2", "DOC_RUNS_STREAM_PREFIX": "svc:",
             "DOC_RUNS_SECRETS_FILE": str(secrets_file), "DOC_RUNS_MAX_BYTES": "12345",
             "DOC_RUNS_API_HEARTBEAT_S": "2.5", "DAGSTER_HOME": str(tmp_path / "home")}
    settings = api_settings(Settings.from_sources(given))

    assert settings.store_root == tmp_path / "store"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'home' / 'doc_runs.sqlite'}"
    # The instance's PostgreSQL where the shipped instance file names one; an explicit one
    # over both.
    pg = "postgresql+psycopg2://dagster@db:5432/dagster"
    assert api_settings(Settings.from_sources({**given, "DAGSTER_POSTGRES_URL": pg})
                        ).catalog_url == pg
    assert api_settings(Settings.from_sources({
        **given, "DAGSTER_POSTGRES_URL": pg, "DOC_RUNS_DATABASE_URL": "sqlite:////x.db"})
    ).catalog_url == "sqlite:////x.db"
    assert (settings.redis_url, settings.stream_prefix) == ("redis://127.0.0.1:6390/2", "svc:")
    assert settings.max_upload_bytes == 12345
    assert settings.events_heartbeat_s == 2.5
    assert settings.secrets.current().tenants() == ["acme"]
    add_tenant(secrets_file, "beta")
    assert settings.secrets.current().tenants() == ["acme", "beta"]
    with pytest.raises(SettingsError, match="DOC_RUNS_API_HEARTBEAT_S='soon'"):
        Settings.from_sources({**given, "DOC_RUNS_API_HEARTBEAT_S": "soon"})


def test_serve_answers_over_http(tmp_path: Path, redis_server_url: str,
                                 redis_client: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_client
    secrets_file = tmp_path / "secrets.json"
    token = add_tenant(secrets_file, "acme")
    port = free_port()
    env = {**os.environ, "DOC_RUNS_STORE_DIR": str(tmp_path / "store"),
           "DOC_RUNS_SECRETS_FILE": str(secrets_file), "DOC_RUNS_REDIS_URL": redis_server_url,
           "DOC_RUNS_STREAM_PREFIX": prefix, "DAGSTER_HOME": str(tmp_path / "home"),
           "DOC_RUNS_MAX_BYTES": "1000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "doc_runs.cli", "api", "--host", "127.0.0.1", "--port",
         str(port)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        assert health.status_code == 200, health.text
        auth = {"Authorization": f"Bearer {token}"}
        too_big = httpx.post(f"http://127.0.0.1:{port}/v1/documents",
                             files={"file": ("a.txt", b"x" * 1001)}, headers=auth, timeout=10)
        assert too_big.status_code == 413  # DOC_RUNS_MAX_BYTES, through the resources
        accepted = httpx.post(f"http://127.0.0.1:{port}/v1/documents",
                              files={"file": ("a.txt", b"x" * 1000)}, headers=auth, timeout=10)
        assert accepted.status_code == 202, accepted.text
        assert (tmp_path / "store" / "blobs").is_dir()
        # Listed for its tenant at once, from the catalog beside the instance.
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/documents", headers=auth, timeout=10)
        assert [d["status"] for d in listed.json()["documents"]] == ["pending"]
        assert (tmp_path / "home" / "doc_runs.sqlite").is_file()
        assert client.xlen(f"{prefix}documents") == 1  # the resources' prefix
    finally:
        process.terminate()
        process.wait(30)
