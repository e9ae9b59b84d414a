"""The API pointed at a Redis that does not answer: uploads and event streams are 503 with
the reason, status reads still work, and /healthz says which part failed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from doc_runs_tests.api_tests.conftest import ApiUnderTest
from doc_runs_tests.helpers import document_id_of
from doc_runs_tests.servers import free_port


@pytest.fixture(scope="module")
def api_options() -> dict[str, Any]:
    # A port nothing listens on (bound and released just now).
    return {"redis_url": f"redis://127.0.0.1:{free_port()}/0"}


def test_an_upload_is_503_with_the_reason(api: ApiUnderTest) -> None:
    data = f"{uuid.uuid4().hex} no queue\n".encode()
    response = api.upload("acme", data)

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "Redis" in detail and "again" in detail
    # The blob may stay: the same upload again is the same document, enqueued then.
    document_id = document_id_of(data, "acme")
    assert document_id in detail
    assert api.store.owner(document_id) == "acme"
    assert api.tmp_files() == []
    # Not listed as pending: no message will ever ask for its run.
    with api.client("acme") as client:
        listed = client.get("/v1/documents", params={"status": "pending"})
    assert listed.status_code == 200
    assert document_id not in {d["document_id"] for d in listed.json()["documents"]}


def test_healthz_is_503_naming_redis(api: ApiUnderTest) -> None:
    with api.client(None) as client:
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["redis"].startswith("unavailable: ConnectionError")
    assert body["store"] == "ok"
    assert "redis" in body["detail"]


def test_events_are_503_and_status_still_reads(api: ApiUnderTest) -> None:
    data = f"{uuid.uuid4().hex} events\n".encode()
    assert api.upload("acme", data).status_code == 503
    document_id = document_id_of(data, "acme")
    with api.client("acme") as client:
        events = client.get(f"/v1/documents/{document_id}/events")
        status = client.get(f"/v1/documents/{document_id}")

    assert events.status_code == 503
    assert "Redis" in events.json()["detail"]
    assert status.status_code == 200
    assert status.json()["status"] == "pending"


def test_a_rerun_is_503_and_queues_nothing(api: ApiUnderTest) -> None:
    data = f"{uuid.uuid4().hex} rerun\n".encode()
    assert api.upload("acme", data).status_code == 503  # stored, not queued
    with api.client("acme") as client:
        answer = client.post(f"/v1/documents/{document_id_of(data, 'acme')}/rerun")
    assert answer.status_code == 503
    assert "Redis" in answer.json()["detail"] and "nothing was queued" in answer.json()["detail"]
