"""GET /v1/documents/{id} and GET /v1/documents: the state the runs recorded, shown to its
owner only."""

from __future__ import annotations

import uuid

import pytest

from doc_runs.core.outcomes import Reason
from doc_runs_tests.api_tests.conftest import ApiUnderTest
from doc_runs_tests.api_tests.records import (
    STAGES,
    SUMMARY_TEXT,
    quarantine,
    record,
    succeed,
)


def uploaded(api: ApiUnderTest, tenant: str = "acme", name: str = "doc.txt") -> str:
    response = api.upload(tenant, f"{uuid.uuid4().hex} body\n".encode(), name)
    assert response.status_code == 202, response.text
    return str(response.json()["document_id"])


@pytest.fixture(scope="module")
def documents(api: ApiUnderTest) -> dict[str, str]:
    """Four acme documents, one in each state, and one of beta's."""
    ids = {state: uploaded(api, name=f"{state}.txt")
           for state in ("pending", "incomplete", "succeeded", "quarantined")}
    record(api.store, api.catalog, ids["incomplete"], "document")
    record(api.store, api.catalog, ids["incomplete"], "document_text")
    succeed(api.store, api.catalog, ids["succeeded"])
    quarantine(api.store, api.catalog, ids["quarantined"], Reason.ENCRYPTED, "needs a password")
    ids["beta"] = uploaded(api, "beta", "beta.txt")
    return ids


def test_a_succeeded_document_shows_its_summary_and_findings(
        api: ApiUnderTest, documents: dict[str, str]) -> None:
    with api.client("acme") as client:
        body = client.get(f"/v1/documents/{documents['succeeded']}").json()

    assert body["status"] == "succeeded"
    assert body["reason"] is None
    assert body["source_names"] == ["succeeded.txt"]
    assert list(body["stages"]) == STAGES
    assert body["stages"]["document_summary"] == {
        "status": "succeeded", "reason": None, "detail": None, "duration_s": 0.25,
        "attempt": 1, "run_id": "run-1"}
    assert body["summary"] == {"text": SUMMARY_TEXT, "citations": ["c0"]}
    assert body["findings"] == {
        "title": {"type": "text", "cited": True, "values": [
            {"value": "Quarterly report", "display": "Quarterly report",
             "text": "Quarterly Report", "citations": ["c0"], "cited": True}]},
        "parties": {"type": "party", "cited": True, "values": [
            {"value": "Northwind", "display": "Northwind", "text": "NORTHWIND",
             "citations": ["c0"], "cited": True},
            {"value": "Contoso", "display": "Contoso", "text": "Contoso",
             "citations": ["p1"], "cited": True}]}}


def test_a_quarantined_document_shows_its_reason(api: ApiUnderTest,
                                                 documents: dict[str, str]) -> None:
    with api.client("acme") as client:
        body = client.get(f"/v1/documents/{documents['quarantined']}").json()

    assert body["status"] == "quarantined"
    assert (body["reason"], body["detail"]) == ("encrypted", "needs a password")
    assert body["stages"]["document"]["status"] == "succeeded"
    assert body["stages"]["document_text"]["reason"] == "encrypted"
    assert body["summary"] is None and body["findings"] is None


def test_a_quarantine_recorded_before_the_last_stage_is_already_the_state(
        api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    record(api.store, api.catalog, document_id, "document")
    record(api.store, api.catalog, document_id, "document_text", reason=Reason.NO_TEXT,
           detail="scanned")
    with api.client("acme") as client:
        body = client.get(f"/v1/documents/{document_id}").json()

    assert (body["status"], body["reason"]) == ("quarantined", "no_text")
    assert body["stages"]["document_chunks"] is None


def test_pending_and_incomplete(api: ApiUnderTest, documents: dict[str, str]) -> None:
    with api.client("acme") as client:
        pending = client.get(f"/v1/documents/{documents['pending']}").json()
        incomplete = client.get(f"/v1/documents/{documents['incomplete']}").json()

    assert pending["status"] == "pending"
    assert incomplete["status"] == "incomplete"
    assert incomplete["stages"]["document_text"]["status"] == "succeeded"
    assert incomplete["stages"]["document_chunks"] is None


def test_listing_shows_the_tenants_own_documents_with_their_state(
        api: ApiUnderTest, documents: dict[str, str]) -> None:
    with api.client("acme") as acme, api.client("beta") as beta:
        everything = acme.get("/v1/documents").json()["documents"]
        succeeded = acme.get("/v1/documents", params={"status": "succeeded"}).json()
        quarantined = acme.get("/v1/documents", params={"status": "quarantined"}).json()
        betas = beta.get("/v1/documents").json()["documents"]

    states = {item["document_id"]: item["status"] for item in everything}
    for state in ("pending", "incomplete", "succeeded", "quarantined"):
        assert states[documents[state]] == state
    assert documents["beta"] not in states
    # Other tests of the module add documents: every one listed must be in the state asked.
    assert {d["status"] for d in succeeded["documents"]} == {"succeeded"}
    assert documents["succeeded"] in [d["document_id"] for d in succeeded["documents"]]
    assert {d["status"] for d in quarantined["documents"]} == {"quarantined"}
    assert (documents["quarantined"], "encrypted") in [
        (d["document_id"], d["reason"]) for d in quarantined["documents"]]
    assert documents["pending"] not in [d["document_id"] for d in quarantined["documents"]]
    assert [d["document_id"] for d in betas] == [documents["beta"]]
    assert not set(states) & {d["document_id"] for d in betas}


def test_listing_pages_with_limit_and_after(api: ApiUnderTest,
                                            documents: dict[str, str]) -> None:
    with api.client("acme") as client:
        everything = [d["document_id"] for d in client.get("/v1/documents").json()["documents"]]
        seen: list[str] = []
        after = None
        while True:
            params = {"limit": 2, **({"after": after} if after else {})}
            page = client.get("/v1/documents", params=params).json()
            seen += [d["document_id"] for d in page["documents"]]
            assert len(page["documents"]) <= 2
            after = page["next_after"]
            if after is None:
                break

    assert len(everything) >= 4
    assert seen == everything


@pytest.mark.parametrize("params", [{"status": "finished"}, {"limit": 0}, {"limit": 1001}])
def test_listing_refuses_unknown_filters(api: ApiUnderTest, params: dict[str, str | int]
                                         ) -> None:
    with api.client("acme") as client:
        assert client.get("/v1/documents", params=params).status_code == 422


def test_another_tenants_document_is_the_same_404_as_a_missing_one(
        api: ApiUnderTest, documents: dict[str, str]) -> None:
    missing = "0" * 64
    answers = []
    with api.client("beta") as beta:
        for document_id in (documents["succeeded"], documents["succeeded"].upper(), missing,
                            "not-a-hash"):
            for suffix in ("", "/events"):
                # Streamed: an event stream wrongly opened must fail here, not hang on read.
                with beta.stream("GET", f"/v1/documents/{document_id}{suffix}") as answer:
                    body = answer.read() if answer.status_code != 200 else b"(a stream)"
                    answers.append((answer.status_code, body))

    assert answers == [(404, b'{"detail":"no such document"}')] * 8
    with api.client("acme") as acme:
        assert acme.get(f"/v1/documents/{documents['succeeded']}").status_code == 200


def test_a_result_recorded_before_its_output_is_stored_is_still_finishing(
        api: ApiUnderTest) -> None:
    document_id = uploaded(api, name="finishing.txt")
    for stage in STAGES:  # every stage recorded, the outputs not yet written by Dagster
        record(api.store, api.catalog, document_id, stage)
    with api.client("acme") as client:
        finishing = client.get(f"/v1/documents/{document_id}").json()
    assert (finishing["status"], finishing["summary"]) == ("incomplete", None)
    succeed(api.store, api.catalog, document_id)
    with api.client("acme") as client:
        assert client.get(f"/v1/documents/{document_id}").json()["status"] == "succeeded"
