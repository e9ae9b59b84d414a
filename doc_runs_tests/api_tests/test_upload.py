"""POST /v1/documents against a real server: what is stored, what is enqueued, and every way
an upload is refused without leaving anything behind."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from doc_runs.queue.envelope import parse_envelope
from doc_runs.queue.producer import ENVELOPE_FIELD, default_idempotency_key
from doc_runs_tests.api_tests import wire
from doc_runs_tests.api_tests.conftest import MAX_UPLOAD, ApiUnderTest
from doc_runs_tests.helpers import assert_nothing_left, document_id_of


def unique(text: str = "") -> bytes:
    return f"{text} {uuid.uuid4().hex}\nRevenue rose by ten percent.\n".encode()


def messages_for(api: ApiUnderTest, document_id: str) -> list[tuple[str, bytes]]:
    entries: Any = api.redis.xrange(api.names.documents)
    found = []
    for entry_id, fields in entries:
        raw = fields[ENVELOPE_FIELD.encode()]
        if json.loads(raw)["document"]["document_id"] == document_id:
            found.append((entry_id.decode(), raw))
    return found


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_upload_is_stored_once_enqueued_signed_and_queued(api: ApiUnderTest) -> None:
    data = unique("quarterly report")
    extra = {"governing_law": "the law that governs it"}
    response = api.upload("acme", data, "q3 report.txt", extra_fields=json.dumps(extra))

    assert response.status_code == 202, response.text
    body = response.json()
    document_id = document_id_of(data, "acme")
    assert body["document_id"] == document_id
    assert body["status_url"] == f"/v1/documents/{document_id}"
    assert body["events_url"] == f"/v1/documents/{document_id}/events"
    assert response.headers["location"] == body["status_url"]
    assert body["idempotency_key"] == default_idempotency_key(document_id, extra)

    assert api.store.owner(document_id) == "acme"
    assert api.store.blob_path(document_id).read_bytes() == data
    assert api.store.source_names(document_id) == ["q3 report.txt"]
    assert api.tmp_files() == []

    [(entry_id, raw)] = messages_for(api, document_id)
    assert entry_id == body["entry_id"]
    envelope = parse_envelope(raw, api.secrets())
    assert envelope.tenant == "acme"
    assert envelope.document.kind == "upload"
    assert envelope.document.document_id == document_id
    assert envelope.idempotency_key == body["idempotency_key"]
    assert envelope.options.extra_fields == extra

    with api.client("acme") as client:
        status = client.get(body["status_url"])
    assert status.status_code == 200
    assert status.json()["status"] == "pending"
    assert status.json()["source_names"] == ["q3 report.txt"]
    assert set(status.json()["stages"].values()) == {None}


def test_the_same_upload_again_is_the_same_document_and_key(api: ApiUnderTest) -> None:
    data = unique("twice")
    first, again = api.upload("acme", data), api.upload("acme", data)

    assert first.status_code == again.status_code == 202
    assert first.json()["document_id"] == again.json()["document_id"]
    assert first.json()["idempotency_key"] == again.json()["idempotency_key"]
    # Each upload is a message; the queue sensor runs a key once.
    assert first.json()["entry_id"] != again.json()["entry_id"]
    assert len(messages_for(api, first.json()["document_id"])) == 2


def test_an_idempotency_key_from_the_header_or_the_form(api: ApiUnderTest) -> None:
    data = unique("keyed")
    with api.client("acme") as client:
        by_header = client.post("/v1/documents", files={"file": ("a.txt", data)},
                                headers={"Idempotency-Key": "order-17"})
        by_field = client.post("/v1/documents", files={"file": ("a.txt", data)},
                               data={"idempotency_key": "order-18"})
        both_differ = client.post("/v1/documents", files={"file": ("a.txt", data)},
                                  data={"idempotency_key": "order-19"},
                                  headers={"Idempotency-Key": "order-20"})
        bad_key = client.post("/v1/documents", files={"file": ("a.txt", data)},
                              data={"idempotency_key": "bad\x07key"})

    assert by_header.status_code == 202 and by_header.json()["idempotency_key"] == "order-17"
    assert by_field.status_code == 202 and by_field.json()["idempotency_key"] == "order-18"
    assert both_differ.status_code == 400
    assert "differ" in both_differ.json()["detail"]
    assert bad_key.status_code == 400
    keys = [json.loads(raw)["idempotency_key"]
            for _, raw in messages_for(api, by_header.json()["document_id"])]
    assert keys == ["order-17", "order-18"]


def test_the_same_bytes_from_two_tenants_are_two_documents(api: ApiUnderTest) -> None:
    data = unique("shared")
    from_acme, from_beta = api.upload("acme", data), api.upload("beta", data)

    assert from_acme.status_code == from_beta.status_code == 202
    assert from_acme.json()["document_id"] != from_beta.json()["document_id"]
    assert api.store.owner(from_acme.json()["document_id"]) == "acme"
    assert api.store.owner(from_beta.json()["document_id"]) == "beta"


def test_a_file_name_that_is_not_utf8_is_kept_byte_for_byte(api: ApiUnderTest) -> None:
    raw_name = b"r\xe9sum\xe9 \xff\xfe.txt"  # Latin-1 and stray bytes, as old systems make
    data = unique("named")
    with api.client("acme") as client:
        response = client.post("/v1/documents", content=wire.file_body(data, raw_name),
                               headers={"Content-Type": wire.CONTENT_TYPE})
        assert response.status_code == 202, response.text
        document_id = response.json()["document_id"]
        status = client.get(f"/v1/documents/{document_id}").json()

    assert api.store.source_names_raw(document_id) == [raw_name]
    assert status["source_names"] == ["r\\xe9sum\\xe9 \\xff\\xfe.txt"]


def test_an_rfc_6266_extended_file_name_wins_over_the_plain_one(api: ApiUnderTest) -> None:
    data = unique("extended")
    body = (b"--" + wire.BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="file"; '
            b"filename=\"naive.txt\"; filename*=UTF-8''na%C3%AFve.txt\r\n\r\n" + data
            + b"\r\n--" + wire.BOUNDARY.encode() + b"--\r\n")
    with api.client("acme") as client:
        response = client.post("/v1/documents", content=body,
                               headers={"Content-Type": wire.CONTENT_TYPE})
    assert response.status_code == 202, response.text
    assert api.store.source_names_raw(response.json()["document_id"]) == [
        "naïve.txt".encode()]


# -- refusals --------------------------------------------------------------------------------

def test_a_key_reused_for_another_file_is_a_conflict(api: ApiUnderTest) -> None:
    data, key = unique("first"), f"order-{uuid.uuid4().hex[:8]}"
    first = api.upload("acme", data, idempotency_key=key)
    assert first.status_code == 202, first.text
    other = api.upload("acme", unique("second"), idempotency_key=key)
    assert other.status_code == 409 and key in other.json()["detail"]
    same = api.upload("acme", data, idempotency_key=key)  # the same request again
    assert same.status_code == 202 and same.json()["document_id"] == first.json()["document_id"]

    # The same bytes under the key of the other file: refused, and the first upload of
    # them, whose message waits on the queue, is still listed as pending.
    other_key = f"order-{uuid.uuid4().hex[:8]}"
    assert api.upload("acme", unique("third"), idempotency_key=other_key).status_code == 202
    refused = api.upload("acme", data, idempotency_key=other_key)
    assert refused.status_code == 409
    with api.client("acme") as client:
        listed = client.get("/v1/documents", params={"status": "pending", "limit": 500})
    assert first.json()["document_id"] in {d["document_id"]
                                           for d in listed.json()["documents"]}


@pytest.fixture
def blobs_before(api: ApiUnderTest) -> Iterator[set[str]]:
    yield api.blobs()


def test_a_content_length_over_the_limit_is_refused_before_the_body(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    with wire.connect(api.url) as sock:
        sock.sendall(wire.request_head("POST", "/v1/documents", {
            **api.auth("acme"), "Content-Type": wire.CONTENT_TYPE,
            "Content-Length": str(MAX_UPLOAD * 4)}))
        # Not a byte of the body is sent: the answer must come from the header alone.
        status, body = wire.read_response(sock)

    assert status == 413
    assert str(MAX_UPLOAD) in json.loads(body)["detail"]
    assert api.tmp_files() == []
    assert api.blobs() == blobs_before


def test_a_file_over_the_limit_is_refused_while_it_streams(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    # One byte over the file limit: Content-Length alone cannot tell (the form's overhead is
    # allowed for), so the limit must hold on the streamed bytes.
    data = b"x" * (MAX_UPLOAD + 1)
    response = api.upload("acme", data)

    assert response.status_code == 413
    assert_nothing_left(api, data, blobs_before=blobs_before)
    exactly = b"y" * MAX_UPLOAD
    assert api.upload("acme", exactly).status_code == 202


def test_a_chunked_upload_over_the_limit_is_refused_before_it_ends(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    data = b"z" * (MAX_UPLOAD * 2)
    preamble = (b"--" + wire.BOUNDARY.encode() + b"\r\nContent-Disposition: form-data; "
                b'name="file"; filename="big.bin"\r\n\r\n')
    with wire.connect(api.url) as sock:
        sock.sendall(wire.request_head("POST", "/v1/documents", {
            **api.auth("acme"), "Content-Type": wire.CONTENT_TYPE,
            "Transfer-Encoding": "chunked"}))
        sock.sendall(wire.chunked(preamble + data))
        # The body never ends (no closing boundary, no last chunk): only a limit that holds
        # while streaming can answer.
        status, body = wire.read_response(sock)

    assert status == 413, body
    assert_nothing_left(api, data, blobs_before=blobs_before)


def test_a_chunked_upload_by_httpx_over_the_limit(api: ApiUnderTest,
                                                  blobs_before: set[str]) -> None:
    data = b"w" * (MAX_UPLOAD + 4096)
    body = wire.file_body(data)

    def blocks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    with api.client("acme") as client:
        response = client.post("/v1/documents", content=blocks(),
                               headers={"Content-Type": wire.CONTENT_TYPE})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert_nothing_left(api, data, blobs_before=blobs_before)


def test_an_empty_file_is_refused_and_nothing_is_registered(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    response = api.upload("acme", b"", "empty.txt")

    assert response.status_code == 400
    assert "empty" in response.json()["detail"]
    assert_nothing_left(api, b"", blobs_before=blobs_before)


def test_a_form_without_a_file_part_is_refused(api: ApiUnderTest) -> None:
    with api.client("acme") as client:
        response = client.post("/v1/documents", content=wire.multipart(
            wire.part("idempotency_key", b"k-1")),
            headers={"Content-Type": wire.CONTENT_TYPE})
        unknown = client.post("/v1/documents", content=wire.multipart(
            wire.part("file", b"abc", b"a.txt"), wire.part("colour", b"red")),
            headers={"Content-Type": wire.CONTENT_TYPE})

    assert response.status_code == 400
    assert "no `file` part" in response.json()["detail"]
    assert unknown.status_code == 400
    assert "colour" in unknown.json()["detail"]


def test_a_body_that_is_not_multipart_is_415(api: ApiUnderTest) -> None:
    with api.client("acme") as client:
        as_json = client.post("/v1/documents", json={"file": "hello"})
        as_octets = client.post("/v1/documents", content=b"hello",
                                headers={"Content-Type": "application/octet-stream"})
        without_type = client.post("/v1/documents", content=b"hello")

    assert as_json.status_code == as_octets.status_code == without_type.status_code == 415
    assert "multipart/form-data" in as_json.json()["detail"]


@pytest.mark.parametrize("extra_fields", [
    "{not json",
    '["governing_law"]',
    '{"Governing Law": "spaces and capitals are not a field name"}',
    '{"governing_law": ""}',
])
def test_malformed_extra_fields_are_refused_and_nothing_is_registered(
        api: ApiUnderTest, blobs_before: set[str], extra_fields: str) -> None:
    data = unique("extra")
    response = api.upload("acme", data, extra_fields=extra_fields)

    assert response.status_code == 400
    assert "extra_fields" in response.json()["detail"]
    assert_nothing_left(api, data, blobs_before=blobs_before)


def test_a_body_cut_short_before_its_closing_boundary_is_refused(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    data = unique("cut")
    with api.client("acme") as client:
        response = client.post("/v1/documents", content=wire.part("file", data, b"a.txt"),
                               headers={"Content-Type": wire.CONTENT_TYPE})

    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]
    assert_nothing_left(api, data, blobs_before=blobs_before)


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
        api: ApiUnderTest, blobs_before: set[str]) -> None:
    data = b"d" * (MAX_UPLOAD // 2)
    body = wire.file_body(data, b"half.bin")
    with wire.connect(api.url) as sock:
        sock.sendall(wire.request_head("POST", "/v1/documents", {
            **api.auth("acme"), "Content-Type": wire.CONTENT_TYPE,
            "Content-Length": str(len(body))}))
        sock.sendall(body[: len(body) // 2])
        # The upload has begun: its temporary file exists in the store's tmp/.
        wait_until(lambda: len(api.tmp_files()) == 1)
    wait_until(lambda: api.tmp_files() == [])

    assert_nothing_left(api, data, blobs_before=blobs_before)
    with api.client("acme") as client:
        assert client.get("/healthz").status_code == 200  # the server is still well


def test_httpx_reads_the_413_for_a_body_it_sends_whole(api: ApiUnderTest,
                                                       blobs_before: set[str]) -> None:
    # The server answers from Content-Length without reading the body; the client, which
    # sends all of it first, must still get that answer rather than a reset connection.
    big = b"q" * (MAX_UPLOAD * 4)
    try:
        response = api.upload("acme", big)
    except httpx.TransportError as exc:  # pragma: no cover - what a server must not cause
        pytest.fail(f"the client could not read the 413: {exc!r}")
    assert response.status_code == 413
    assert_nothing_left(api, big, blobs_before=blobs_before)
