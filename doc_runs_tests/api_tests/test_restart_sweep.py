"""An API process killed in the middle of an upload leaves its temporary file behind; the next
API started on the same store deletes it as it starts, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from doc_runs.api.app import create_app
from doc_runs.api.settings import ApiSettings, SecretsSource
from doc_runs.auth import add_tenant, load_secrets
from doc_runs.core.store import DocumentStore
from doc_runs_tests.api_tests.live_server import serving

CUT_OFF = """
import os, signal, sys
from doc_runs.core.store import DocumentStore
upload = DocumentStore(sys.argv[1]).begin_upload(tenant="acme")
upload.write(b"the first half of a document")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_api_start_deletes_an_upload_cut_off_by_a_killed_api(
        tmp_path: Path, redis_server_url: str,
        redis_client: tuple[redis.Redis, str]) -> None:
    _, prefix = redis_client
    store_root = tmp_path / "store"
    kept = DocumentStore(store_root).put_bytes(b"a document stored before", "acme")
    died = subprocess.run([sys.executable, "-c", CUT_OFF, str(store_root)], check=False)
    assert died.returncode == -signal.SIGKILL
    (cut_off,) = (store_root / "tmp").glob("upload-*")
    old = cut_off.stat().st_mtime - 60
    os.utime(cut_off, (old, old))  # the restart came a minute later
    secrets_file = tmp_path / "secrets" / "secrets.json"
    token = add_tenant(secrets_file, "acme")
    settings = ApiSettings(
        store_root=store_root, catalog_url=f"sqlite:///{tmp_path / 'doc_runs.sqlite'}",
        redis_url=redis_server_url, stream_prefix=prefix,
        secrets=SecretsSource(
            lambda: load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file)}), secrets_file),
        max_upload_bytes=1024 * 1024)
    with serving(create_app(settings)) as url:
        assert not cut_off.exists()
        assert DocumentStore(store_root).blob_path(kept).exists()
        answer = httpx.post(f"{url}/v1/documents", headers={"Authorization": f"Bearer {token}"},
                            files={"file": ("after.txt", b"uploaded after the restart",
                                            "text/plain")}, timeout=20)
        assert answer.status_code == 202, answer.text
    assert list((store_root / "tmp").glob("upload-*")) == []

