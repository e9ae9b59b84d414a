from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from doc_runs.auth import Secrets, UnknownTenant
from doc_runs.queue.envelope import (
    MAX_MESSAGE_BYTES,
    EnvelopeV1,
    Options,
    PathRef,
    Poison,
    PoisonReason,
    UploadRef,
    build_envelope,
    canonical_bytes,
    parse_envelope,
)
from doc_runs_tests.queue_tests.messages import (
    DOCUMENT_ID,
    SIGNING_KEYS,
    envelope_dict,
    signature_of,
    signed,
)


def _poison(raw: bytes, secrets: Secrets) -> Poison:
    with pytest.raises(Poison) as caught:
        parse_envelope(raw, secrets)
    return caught.value


def test_a_built_envelope_round_trips_and_is_signed_by_the_documented_rule(
        secrets: Secrets) -> None:
    created = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    envelope = build_envelope(
        secrets, tenant="acme", document=UploadRef(kind="upload", document_id=DOCUMENT_ID),
        idempotency_key="order-42", options=Options(extra_fields={"law": "governing law"}),
        created_at=created)
    raw = envelope.model_dump_json().encode()
    sent = json.loads(raw)
    assert sent["signature"] == signature_of(sent, SIGNING_KEYS["acme"])
    assert canonical_bytes(envelope) == canonical_bytes(sent)
    assert b"signature" not in canonical_bytes(envelope)
    parsed = parse_envelope(raw, secrets)
    assert parsed == envelope
    assert parsed.created_at == created
    assert parsed.options.extra_fields == {"law": "governing law"}


def test_a_path_envelope_round_trips(secrets: Secrets) -> None:
    envelope = build_envelope(
        secrets, tenant="beta", document=PathRef(kind="path", root="shared", path="in/a b.pdf"),
        idempotency_key="beta:é 1")
    parsed = parse_envelope(envelope.model_dump_json().encode(), secrets)
    assert parsed.document == PathRef(kind="path", root="shared", path="in/a b.pdf")
    assert parsed.tenant == "beta"
    assert parsed.options == Options()
    assert parsed.created_at.tzinfo is not None


def test_a_producer_in_another_language_signs_what_it_sends(secrets: Secrets) -> None:
    # No "options" (it has a default), an offset instead of Z, and a different key order.
    data = {"created_at": "2025-03-01T14:00:00+02:00", "tenant": "acme",
            "document": {"document_id": DOCUMENT_ID, "kind": "upload"},
            "idempotency_key": "k", "schema_version": 1}
    envelope = parse_envelope(signed(data), secrets)
    assert envelope.created_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert envelope.created_at.utcoffset() == timedelta(hours=2)


def test_build_envelope_refuses_what_parse_would_refuse(secrets: Secrets) -> None:
    upload = UploadRef(kind="upload", document_id=DOCUMENT_ID)
    with pytest.raises(ValidationError, match="created_at"):
        build_envelope(secrets, tenant="acme", document=upload, idempotency_key="k",
                       created_at=datetime(2025, 3, 1))
    with pytest.raises(ValidationError, match="idempotency_key"):
        build_envelope(secrets, tenant="acme", document=upload, idempotency_key="")
    with pytest.raises(UnknownTenant):
        build_envelope(secrets, tenant="gamma", document=upload, idempotency_key="k")


@pytest.mark.parametrize(("raw", "reason", "detail"), [
    (b"{not json", PoisonReason.invalid_json, "line 1 column 2"),
    (b"", PoisonReason.invalid_json, "Expecting value"),
    (b'[1, 2]', PoisonReason.invalid_json, "a JSON list, not an object"),
    (b'"text"', PoisonReason.invalid_json, "a JSON str, not an object"),
    (b'\xff\xfe{}', PoisonReason.invalid_json, "not UTF-8 at byte 0"),
    (b'{"schema_version": NaN}', PoisonReason.invalid_json, "NaN is not JSON"),
    (b"[" * 10_000 + b"]" * 10_000, PoisonReason.invalid_json, "recursion"),
    (b"{}", PoisonReason.invalid_envelope, "schema_version: Field required"),
    (b'{"schema_version": 2}', PoisonReason.unsupported_schema_version, "schema_version 2"),
    (b'{"schema_version": true}', PoisonReason.invalid_envelope, "must be an integer"),
    (b'{"schema_version": "1"}', PoisonReason.invalid_envelope, "must be an integer"),
    (b'{"schema_version": 1.0}', PoisonReason.invalid_envelope, "must be an integer"),
])
def test_raw_bytes_that_are_no_envelope(secrets: Secrets, raw: bytes, reason: PoisonReason,
                                        detail: str) -> None:
    poison = _poison(raw, secrets)
    assert poison.reason is reason
    assert detail in poison.detail


def test_size_is_checked_first(secrets: Secrets) -> None:
    big = signed(envelope_dict(idempotency_key="k"))[:-1] + b" " * MAX_MESSAGE_BYTES + b"}"
    poison = _poison(big, secrets)
    assert poison.reason is PoisonReason.oversized
    assert str(len(big)) in poison.detail
    exactly = signed(envelope_dict())
    exactly = exactly[:-1] + b" " * (MAX_MESSAGE_BYTES - len(exactly)) + b"}"
    assert len(exactly) == MAX_MESSAGE_BYTES
    assert parse_envelope(exactly, secrets).idempotency_key == "order-42"


def test_a_missing_schema_version_is_an_invalid_envelope(secrets: Secrets) -> None:
    data = envelope_dict()
    del data["schema_version"]
    poison = _poison(signed(data), secrets)
    assert poison.reason is PoisonReason.invalid_envelope
    assert poison.detail == "schema_version: Field required"


def test_an_unknown_schema_version_is_unsupported_even_when_signed(secrets: Secrets) -> None:
    poison = _poison(signed(envelope_dict(schema_version=2)), secrets)
    assert poison.reason is PoisonReason.unsupported_schema_version


def test_every_missing_field_is_named(secrets: Secrets) -> None:
    data = envelope_dict()
    del data["tenant"], data["document"]
    poison = _poison(json.dumps(data).encode(), secrets)
    assert poison.reason is PoisonReason.invalid_envelope
    assert poison.detail == ("tenant: Field required; document: Field required; "
                             "signature: Field required")


def _invalid(data: dict[str, Any], secrets: Secrets) -> str:
    poison = _poison(signed(data, SIGNING_KEYS["acme"]), secrets)
    assert poison.reason is PoisonReason.invalid_envelope
    return poison.detail


@pytest.mark.parametrize(("path", "complaint"), [
    ("../../etc/passwd", '".." component'),
    ("/etc/passwd", "relative to its root"),
    ("in/../../out.pdf", '".." component'),
    ("in\\..\\..\\out.pdf", '".." component'),
    ("\\\\server\\share", "relative to its root"),
    ("a\x00.pdf", "NUL"),
    ("", "at least 1 character"),
    ("a" * 4097, "at most 4096 characters"),
])
def test_path_refs_that_point_outside_their_root(secrets: Secrets, path: str,
                                                 complaint: str) -> None:
    document = {"kind": "path", "root": "shared", "path": path}
    detail = _invalid(envelope_dict(document=document), secrets)
    assert detail.startswith("document.path.path: ")
    assert complaint in detail


def test_path_refs_inside_their_root_pass(secrets: Secrets) -> None:
    for path in ("a.pdf", "in/b..c.pdf", "..a/b", "x/./y.txt"):
        document = {"kind": "path", "root": "shared", "path": path}
        assert parse_envelope(signed(envelope_dict(document=document)), secrets).document


@pytest.mark.parametrize(("changes", "location"), [
    ({"created_at": "2025-03-01T12:00:00"}, "created_at"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"tenant": "Acme"}, "tenant"),
    ({"tenant": "acme\n"}, "tenant"),
    ({"idempotency_key": "a\nb"}, "idempotency_key"),
    ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"priority": 1}, "priority"),
    ({"document": {"kind": "upload", "document_id": "AB" * 32}}, "document.upload.document_id"),
    ({"document": {"kind": "upload", "document_id": DOCUMENT_ID, "x": 1}}, "document.upload.x"),
    ({"document": {"kind": "url", "url": "http://x"}}, "document"),
    ({"document": {"kind": "path", "root": "../r", "path": "a"}}, "document.path.root"),
    ({"options": {"extra_fields": {"Law": "governing law"}}}, "options.extra_fields.Law.[key]"),
    ({"options": {"extra_fields": {"law": ""}}}, "options.extra_fields.law"),
    ({"options": {"extra_fields": {"law": "x" * 501}}}, "options.extra_fields.law"),
    ({"options": {"extra_fields": {f"f{i}": "d" for i in range(21)}}}, "options.extra_fields"),
    ({"options": {"model": "big"}}, "options.model"),
])
def test_invalid_fields_are_named_by_location(secrets: Secrets, changes: dict[str, Any],
                                              location: str) -> None:
    detail = _invalid(envelope_dict(**changes), secrets)
    assert detail.split(": ")[0] == location


def test_a_naive_datetime_says_it_needs_a_timezone(secrets: Secrets) -> None:
    detail = _invalid(envelope_dict(created_at="2025-03-01T12:00:00"), secrets)
    assert detail == "created_at: Input should have timezone info"


def test_twenty_extra_fields_are_allowed(secrets: Secrets) -> None:
    fields = {f"f{i}": "d" * 500 for i in range(20)}
    raw = signed(envelope_dict(options={"extra_fields": fields}))
    assert parse_envelope(raw, secrets).options.extra_fields == fields


def test_a_missing_signature_is_an_invalid_envelope(secrets: Secrets) -> None:
    poison = _poison(json.dumps(envelope_dict()).encode(), secrets)
    assert poison.reason is PoisonReason.invalid_envelope
    assert poison.detail == "signature: Field required"
    malformed = json.dumps({**envelope_dict(), "signature": "0" * 63}).encode()
    assert _poison(malformed, secrets).reason is PoisonReason.invalid_envelope


def test_a_changed_field_breaks_the_signature(secrets: Secrets) -> None:
    message = json.loads(signed(envelope_dict()))
    message["idempotency_key"] = "order-43"
    poison = _poison(json.dumps(message).encode(), secrets)
    assert poison.reason is PoisonReason.bad_signature
    assert poison.detail == "the signature does not verify with tenant 'acme''s key"


def test_an_added_default_breaks_the_signature(secrets: Secrets) -> None:
    # Fields are signed as sent: adding even a default value is a change.
    data = envelope_dict()
    del data["options"]
    message = json.loads(signed(data))
    message["options"] = {"extra_fields": {}}
    assert _poison(json.dumps(message).encode(), secrets).reason is PoisonReason.bad_signature


def test_an_unknown_tenant_is_a_bad_signature(secrets: Secrets) -> None:
    poison = _poison(signed(envelope_dict(tenant="gamma"), b"gamma-key"), secrets)
    assert poison.reason is PoisonReason.bad_signature
    assert poison.detail == "tenant 'gamma' has no signing key here"


def test_a_tenant_cannot_sign_for_another(secrets: Secrets) -> None:
    poison = _poison(signed(envelope_dict(tenant="beta"), SIGNING_KEYS["acme"]), secrets)
    assert poison.reason is PoisonReason.bad_signature
    assert "'beta'" in poison.detail
    assert SIGNING_KEYS["acme"].decode() not in poison.detail


def test_other_offsets_are_the_same_instant(secrets: Secrets) -> None:
    moment = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    envelope = build_envelope(secrets, tenant="acme", idempotency_key="k", created_at=moment,
                              document=UploadRef(kind="upload", document_id=DOCUMENT_ID))
    assert parse_envelope(envelope.model_dump_json().encode(), secrets).created_at == moment


def test_poison_reasons_are_the_documented_strings() -> None:
    assert [str(r) for r in PoisonReason] == [
        "oversized", "invalid_json", "invalid_envelope", "unsupported_schema_version",
        "bad_signature", "path_not_allowed", "upload_not_found", "unreadable_document",
        "idempotency_conflict"]
    assert str(Poison(PoisonReason.bad_signature, "d")) == "bad_signature: d"
    assert EnvelopeV1.model_config["extra"] == "forbid"
