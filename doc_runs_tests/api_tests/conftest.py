"""One real API server per test module: uvicorn on loopback, a store in a temporary folder,
two tenants (acme, beta) in a secrets file, and the real Redis under the module's own key
prefix (deleted afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from doc_runs.api.app import create_app
from doc_runs.api.settings import ApiSettings, SecretsSource
from doc_runs.auth import Secrets, add_tenant, load_secrets
from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.api_tests.live_server import serving
from doc_runs_tests.conftest import prefixed_redis

MAX_UPLOAD = 256 * 1024
TENANTS = ("acme", "beta")


@dataclass
class ApiUnderTest:
    url: str
    store: DocumentStore
    catalog: DocumentCatalog
    redis: redis.Redis
    names: StreamNames
    secrets_file: Path
    tokens: dict[str, str]

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant]}"}

    def client(self, tenant: str | None = "acme") -> httpx.Client:
        headers = self.auth(tenant) if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=20)

    def secrets(self) -> Secrets:
        return load_secrets({"DOC_RUNS_SECRETS_FILE": str(self.secrets_file)})

    def tmp_files(self) -> list[Path]:
        folder = self.store.root / "tmp"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def blobs(self) -> set[str]:
        folder = self.store.root / "blobs"
        return {p.name for p in folder.glob("*/*")} if folder.is_dir() else set()

    def upload(self, tenant: str, data: bytes, name: str = "report.txt",
               **form: str) -> httpx.Response:
        with self.client(tenant) as client:
            return client.post("/v1/documents", files={"file": (name, data, "text/plain")},
                               data=form)


@pytest.fixture(scope="module")
def api_options() -> dict[str, Any]:
    """ApiSettings fields a module wants otherwise (override it in the module)."""
    return {}


@pytest.fixture(scope="module")
def module_redis(redis_server_url: str) -> Iterator[tuple[redis.Redis, str]]:
    # redis_client is per test; the server here lives for the module, so does its prefix.
    with prefixed_redis(redis_server_url) as pair:
        yield pair


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server_url: str,
        module_redis: tuple[redis.Redis, str], api_options: dict[str, Any]
        ) -> Iterator[ApiUnderTest]:
    root = tmp_path_factory.mktemp("api")
    secrets_file = root / "secrets" / "secrets.json"
    tokens = {tenant: add_tenant(secrets_file, tenant) for tenant in TENANTS}
    client, prefix = module_redis
    options = {"redis_url": redis_server_url, "max_upload_bytes": MAX_UPLOAD,
               "catalog_url": f"sqlite:///{root / 'doc_runs.sqlite'}", **api_options}
    settings = ApiSettings(
        store_root=root / "store",
        stream_prefix=prefix,
        secrets=SecretsSource(
            lambda: load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file)}), secrets_file),
        **options,
    )
    with serving(create_app(settings)) as url, \
            DocumentCatalog(settings.catalog_url) as catalog:
        yield ApiUnderTest(url=url, store=DocumentStore(settings.store_root), catalog=catalog,
                           redis=client, names=StreamNames(prefix), secrets_file=secrets_file,
                           tokens=tokens)
