"""The API whose catalog database does not answer: it starts, status and listing are 503
naming the catalog, /healthz says which part failed; uploads store the bytes and say so."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from doc_runs_tests.api_tests.conftest import ApiUnderTest
from doc_runs_tests.servers import free_port


@pytest.fixture(scope="module")
def api_options() -> dict[str, Any]:
    # A port nothing listens on (bound and released just now), with a password to hide.
    return {"catalog_url": f"postgresql://doc:s3cret@127.0.0.1:{free_port()}/catalog"
                           "?sslpassword=s3cret"}


def test_reads_are_503_naming_the_catalog(api: ApiUnderTest) -> None:
    with api.client("acme") as client:
        listing = client.get("/v1/documents")
        status = client.get(f"/v1/documents/{'0' * 64}")
    assert listing.status_code == 503
    # Says which part is down, not where it lives nor as whom.
    detail = listing.json()["detail"]
    assert "catalog" in detail
    assert not {"s3cret", "127.0.0.1", "doc", "postgresql"} & set(detail.replace(":", " ")
                                                                 .replace("/", " ").split())
    # A missing document is still the same 404: ownership is the store's.
    assert status.status_code == 404


def test_healthz_is_503_naming_the_catalog(api: ApiUnderTest) -> None:
    with api.client(None) as client:
        body = client.get("/healthz").json()
    assert body["status"] == "unavailable" and body["catalog"].startswith("unavailable")
    assert body["redis"] == "ok" and body["store"] == "ok"
    assert body["catalog"] == "unavailable: CatalogUnavailable"
    assert not any(word in str(body) for word in ("s3cret", "127.0.0.1", "doc:", "/catalog"))


def test_an_upload_is_503_and_the_same_upload_later_is_the_same_document(
        api: ApiUnderTest) -> None:
    data = f"{uuid.uuid4().hex} catalog away\n".encode()
    answer = api.upload("acme", data)
    assert answer.status_code == 503 and "catalog" in answer.json()["detail"]
    assert api.tmp_files() == []
