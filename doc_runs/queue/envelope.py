"""The message envelope (version 1) and the one parser that turns raw stream bytes into a
signed, validated envelope or a typed poison reason.

The signature is HMAC-SHA256 with the tenant's key over `canonical_bytes`: the envelope's
JSON object without `signature`, keys sorted, no spaces, ASCII only. It is checked over the
object as received, so a producer in any language signs exactly what it sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from doc_runs.auth import TENANT_PATTERN, Secrets
from doc_runs.core.agent.findings import extra_field_specs
from doc_runs.core.fields.spec import FIELD_NAME_PATTERN, field_spec_value
from doc_runs.core.outcomes import ReasonedError

MAX_MESSAGE_BYTES = 64 * 1024
SCHEMA_VERSION = 1
MAX_PATH_CHARS = 4096
MAX_EXTRA_FIELDS = 20
MAX_IDEMPOTENCY_KEY = 200
_MAX_DETAIL_CHARS = 2000

TenantName = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]


def _answerable(value: Any) -> Any:
    """A field as a message asks for it; the error (a ValueError) says what is wrong."""
    field_spec_value(value)
    return value


FieldRequest = Annotated[Any, AfterValidator(_answerable)]
HexDigest64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    # An unknown field is either a mistake or an attempt to smuggle unsigned meaning in.
    model_config = ConfigDict(extra="forbid")


class UploadRef(_Strict):
    kind: Literal["upload"]
    document_id: HexDigest64


class PathRef(_Strict):
    """A file under one of the configured allowed roots. The intake resolves it (symlinks
    included) against the root; this only turns away what is plainly wrong."""

    kind: Literal["path"]
    root: TenantName
    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS)

    @field_validator("path")
    @classmethod
    def _relative_and_inside(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("path must not contain NUL")
        if value.startswith(("/", "\\")):
            raise ValueError("path must be relative to its root")
        # Backslashes count as separators too: the path may have come from Windows.
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError('path must not contain a ".." component')
        return value


DocumentRef = Annotated[UploadRef | PathRef, Field(discriminator="kind")]


class Options(_Strict):
    # name -> description (a text field) or {description, type, many, choices, hint}.
    extra_fields: dict[FieldName, FieldRequest] = Field(
        default_factory=dict, max_length=MAX_EXTRA_FIELDS)
    # A deliberate re-run (a fix deployed, a model changed): the document gets a run of its
    # own instead of sharing one with the other messages of the tick.
    alone: bool = False

    @field_validator("extra_fields")
    @classmethod
    def _not_a_default(cls, value: dict[str, Any]) -> dict[str, Any]:
        extra_field_specs(value)  # DefaultFieldTaken, a ValueError, names the field
        return value


class EnvelopeV1(_Strict):
    schema_version: Literal[1]
    idempotency_key: str = Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)
    tenant: TenantName
    document: DocumentRef
    options: Options = Field(default_factory=Options)
    created_at: AwareDatetime
    signature: HexDigest64

    @field_validator("idempotency_key")
    @classmethod
    def _printable(cls, value: str) -> str:
        # It becomes a Dagster run key and shows in the UI and logs.
        if not value.isprintable():
            raise ValueError("idempotency_key must be printable (no control characters)")
        return value


def canonical_bytes(envelope: EnvelopeV1 | dict[str, Any]) -> bytes:
    """What the signature covers: every field but `signature`, as canonical JSON."""
    if isinstance(envelope, EnvelopeV1):
        fields = envelope.model_dump(mode="json", exclude={"signature"})
    else:
        fields = {k: v for k, v in envelope.items() if k != "signature"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def build_envelope(secrets: Secrets, *, tenant: str, document: UploadRef | PathRef,
                   idempotency_key: str, options: Options | None = None,
                   created_at: datetime | None = None) -> EnvelopeV1:
    """A validated envelope signed with the tenant's key (`UnknownTenant` when it has none)."""
    unsigned = EnvelopeV1.model_validate({
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": idempotency_key,
        "tenant": tenant,
        "document": document,
        "options": options or Options(),
        "created_at": created_at or datetime.now(UTC),
        "signature": "0" * 64,  # a placeholder so every other field is validated first
    })
    signature = secrets.sign(tenant, canonical_bytes(unsigned))
    return unsigned.model_copy(update={"signature": signature})


class PoisonReason(StrEnum):
    oversized = "oversized"
    invalid_json = "invalid_json"
    invalid_envelope = "invalid_envelope"
    unsupported_schema_version = "unsupported_schema_version"
    bad_signature = "bad_signature"
    path_not_allowed = "path_not_allowed"
    upload_not_found = "upload_not_found"
    unreadable_document = "unreadable_document"
    idempotency_conflict = "idempotency_conflict"


class Poison(ReasonedError):
    """A message that can never become a run; it goes to the dead letters as it is."""

    reason: PoisonReason

    def __init__(self, reason: PoisonReason, detail: str) -> None:
        super().__init__(reason, detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_envelope(raw: bytes, secrets: Secrets) -> EnvelopeV1:
    """The envelope in `raw`, or `Poison` with the first reason found, checked in the order
    size, JSON, schema version, fields, signature."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Poison(PoisonReason.oversized,
                     f"{len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
    try:
        # Decoded here: json.loads would also take UTF-16 and UTF-32 bytes.
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise Poison(PoisonReason.invalid_json, f"not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise Poison(PoisonReason.invalid_json,
                     f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column "
                     f"{exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise Poison(PoisonReason.invalid_json, str(exc) or type(exc).__name__) from None
    if not isinstance(data, dict):
        raise Poison(PoisonReason.invalid_json,
                     f"a JSON {type(data).__name__}, not an object")
    _check_schema_version(data)
    try:
        envelope = EnvelopeV1.model_validate(data)
    except ValidationError as exc:
        raise Poison(PoisonReason.invalid_envelope, _describe(exc)) from None
    tenant = secrets.tenant_secrets(envelope.tenant)
    if tenant is None or tenant.signing_key is None:
        raise Poison(PoisonReason.bad_signature,
                     f"tenant {envelope.tenant!r} has no signing key here")
    if not secrets.verify(envelope.tenant, canonical_bytes(data), envelope.signature):
        raise Poison(PoisonReason.bad_signature,
                     f"the signature does not verify with tenant {envelope.tenant!r}'s key")
    return envelope


def _check_schema_version(data: dict[str, Any]) -> None:
    if "schema_version" not in data:
        raise Poison(PoisonReason.invalid_envelope, "schema_version: Field required")
    version = data["schema_version"]
    # bool is an int in Python, and True == 1: not a version.
    if type(version) is not int:
        raise Poison(PoisonReason.invalid_envelope,
                     f"schema_version: must be an integer, not a JSON {type(version).__name__}")
    if version != SCHEMA_VERSION:
        raise Poison(PoisonReason.unsupported_schema_version,
                     f"schema_version {version}; this consumer reads {SCHEMA_VERSION}")


def _describe(error: ValidationError) -> str:
    # Locations and messages only: pydantic's str() would echo the input values.
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(envelope)'}: {e['msg']}"
             for e in error.errors()]
    detail = "; ".join(parts)
    if len(detail) > _MAX_DETAIL_CHARS:
        detail = detail[:_MAX_DETAIL_CHARS] + f"... ({len(parts)} errors in all)"
    return detail
