"""POST /v1/documents/{id}/rerun: the owner asks for one document to run again, alone; a
signed message says so, and nobody else can ask for it."""

from __future__ import annotations

import uuid

from doc_runs.queue.envelope import parse_envelope
from doc_runs.queue.producer import ENVELOPE_FIELD
from doc_runs_tests.api_tests.conftest import ApiUnderTest


def uploaded(api: ApiUnderTest, tenant: str = "acme") -> str:
    response = api.upload(tenant, f"{uuid.uuid4().hex} to run again\n".encode(), "again.txt")
    assert response.status_code == 202, response.text
    return str(response.json()["document_id"])


def reruns_of(api: ApiUnderTest, document_id: str) -> list:
    found = []
    for _, fields in api.redis.xrange(api.names.documents):
        envelope = parse_envelope(fields[ENVELOPE_FIELD.encode()], api.secrets())
        if envelope.document.document_id == document_id and envelope.options.alone:
            found.append(envelope)
    return found


def test_the_owner_reruns_a_document_alone(api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    with api.client("acme") as client:
        answer = client.post(f"/v1/documents/{document_id}/rerun")
        again = client.post(f"/v1/documents/{document_id}/rerun")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["document_id"] == document_id
    assert body["status_url"] == f"/v1/documents/{document_id}"
    assert answer.headers["location"] == body["status_url"]
    # Each call is a new request: a key of its own, a message of its own, signed for acme.
    assert again.status_code == 202 and again.json()["idempotency_key"] != body["idempotency_key"]
    messages = reruns_of(api, document_id)
    assert [m.idempotency_key for m in messages] == [body["idempotency_key"],
                                                     again.json()["idempotency_key"]]
    assert {m.tenant for m in messages} == {"acme"}


def test_a_repeated_idempotency_key_is_the_same_request(api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    with api.client("acme") as client:
        headers = {"Idempotency-Key": f"fix-{document_id[:8]}"}
        first = client.post(f"/v1/documents/{document_id}/rerun", headers=headers)
        second = client.post(f"/v1/documents/{document_id}/rerun", headers=headers)
        other = uploaded(api)
        taken = client.post(f"/v1/documents/{other}/rerun", headers=headers)
        blank = client.post(f"/v1/documents/{other}/rerun", headers={"Idempotency-Key": ""})
    assert first.status_code == second.status_code == 202
    assert first.json()["idempotency_key"] == second.json()["idempotency_key"]
    assert taken.status_code == 409 and "already used" in taken.json()["detail"]
    assert blank.status_code == 400


def test_the_uploads_idempotency_key_is_not_a_rerun(api: ApiUnderTest) -> None:
    """The key the upload used, sent again with a re-run: another request under a used key,
    so a conflict; taken for the upload's duplicate it would answer 202 and run nothing."""
    key = f"upload-{uuid.uuid4().hex[:12]}"
    with api.client("acme") as client:
        upload = client.post("/v1/documents", headers={"Idempotency-Key": key},
                             files={"file": ("keyed.txt", f"{key} keyed\n".encode(),
                                             "text/plain")})
        assert upload.status_code == 202, upload.text
        document_id = upload.json()["document_id"]
        rerun = client.post(f"/v1/documents/{document_id}/rerun",
                            headers={"Idempotency-Key": key})
    assert rerun.status_code == 409, rerun.text
    assert "this document's upload" in rerun.json()["detail"]
    assert reruns_of(api, document_id) == []


def test_another_tenants_document_cannot_be_rerun(api: ApiUnderTest) -> None:
    theirs = uploaded(api, "beta")
    with api.client("acme") as acme:
        answers = [acme.post(f"/v1/documents/{document_id}/rerun")
                   for document_id in (theirs, theirs.upper(), "0" * 64, "not-a-hash")]
    assert [(a.status_code, a.json()) for a in answers] == [
        (404, {"detail": "no such document"})] * 4
    assert reruns_of(api, theirs) == []
    with api.client(None) as anonymous:
        assert anonymous.post(f"/v1/documents/{theirs}/rerun").status_code == 401
