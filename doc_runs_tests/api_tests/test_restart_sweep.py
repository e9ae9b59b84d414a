"""An API process killed in the middle of an upload leaves its temporary file behind; the next
API started on the same store deletes it (as it starts, or a few seconds later if the file was
too young to tell from one still being written), and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from doc_runs.api.app import create_app
from doc_runs.api.settings import ApiSettings, SecretsSource
from doc_runs.auth import add_tenant, load_secrets
from doc_runs.core.store import ABANDONED_AFTER_S, DocumentStore
from doc_runs_tests.api_tests.live_server import serving

CUT_OFF = """
import os, signal, sys
from doc_runs.core.store import ABANDONED_AFTER_S, DocumentStore
upload = DocumentStore(sys.argv[1]).begin_upload(tenant="acme")
upload.write(b"the first half of a document")
os.kill(os.getpid(), signal.SIGKILL)
"""


def _settings(tmp_path: Path, store_root: Path, redis_server_url: str,
              prefix: str) -> tuple[ApiSettings, str]:
    secrets_file = tmp_path / "secrets" / "secrets.json"
    token = add_tenant(secrets_file, "acme")
    return ApiSettings(
        store_root=store_root, catalog_url=f"sqlite:///{tmp_path / 'doc_runs.sqlite'}",
        redis_url=redis_server_url, stream_prefix=prefix,
        secrets=SecretsSource(
            lambda: load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file)}), secrets_file),
        max_upload_bytes=1024 * 1024), token


def _cut_off_upload(store_root: Path) -> Path:
    died = subprocess.run([sys.executable, "-c", CUT_OFF, str(store_root)], check=False)
    assert died.returncode == -signal.SIGKILL
    (cut_off,) = (store_root / "tmp").glob("upload-*")
    return cut_off


def test_the_next_api_start_deletes_an_upload_cut_off_by_a_killed_api(
        tmp_path: Path, redis_server_url: str,
        redis_client: tuple[redis.Redis, str]) -> None:
    _, prefix = redis_client
    store_root = tmp_path / "store"
    kept = DocumentStore(store_root).put_bytes(b"a document stored before", "acme")
    cut_off = _cut_off_upload(store_root)
    old = cut_off.stat().st_mtime - 60
    os.utime(cut_off, (old, old))  # the restart came a minute later
    settings, token = _settings(tmp_path, store_root, redis_server_url, prefix)
    with serving(create_app(settings)) as url:
        assert not cut_off.exists()
        assert DocumentStore(store_root).blob_path(kept).exists()
        answer = httpx.post(f"{url}/v1/documents", headers={"Authorization": f"Bearer {token}"},
                            files={"file": ("after.txt", b"uploaded after the restart",
                                            "text/plain")}, timeout=20)
        assert answer.status_code == 202, answer.text
    assert list((store_root / "tmp").glob("upload-*")) == []



def test_an_upload_cut_off_just_before_the_api_restarted_is_deleted_once_old_enough(
        tmp_path: Path, redis_server_url: str,
        redis_client: tuple[redis.Redis, str]) -> None:
    # A keeper restarts a killed API within a second: at its start the cut-off file is too
    # young to tell from an upload still being made, and must not stay there for good.
    _, prefix = redis_client
    store_root = tmp_path / "store"
    cut_off = _cut_off_upload(store_root)
    settings, _ = _settings(tmp_path, store_root, redis_server_url, prefix)
    os.utime(cut_off)  # cut off this instant
    with serving(create_app(settings)):
        assert cut_off.exists()  # spared at start: younger than ABANDONED_AFTER_S
        deadline = time.monotonic() + 3 * ABANDONED_AFTER_S
        while cut_off.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cut_off.exists(), "a young cut-off upload outlived the API's sweeps"
