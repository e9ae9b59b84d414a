"""Typed outcomes shared by every stage: a document either succeeds or is quarantined."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    QUARANTINED = "quarantined"


class Reason(StrEnum):
    """Permanent reasons: retrying the same bytes would give the same answer."""

    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    NOT_PDF = "not_pdf"
    EMPTY_FILE = "empty_file"
    NO_TEXT = "no_text"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    UNSUPPORTED_TYPE = "unsupported_type"
    # The agent stages (model calls and tool payloads).
    MODEL_ERROR = "model_error"
    MODEL_AUTH = "model_auth"
    INVALID_TOOL_PAYLOAD = "invalid_tool_payload"
    BUDGET_EXCEEDED = "budget_exceeded"
    STEP_LIMIT = "step_limit"
    # Initiation only: nothing was stored, so no document exists for the input.
    UNREADABLE = "unreadable"
    NOT_REGULAR_FILE = "not_regular_file"
    OUTSIDE_FOLDER = "outside_folder"


class ReasonedError(Exception):
    """A refusal with a machine-readable reason (a string enum) and a detail for people."""

    def __init__(self, reason: StrEnum, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DocumentRejected(ReasonedError):
    """A permanent, per-document failure. Never retried; the document is quarantined."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(reason, detail)


class TransientStageError(Exception):
    """A failure that may pass on its own (I/O, a crashed worker): the stage is retried."""


class Outcome(BaseModel):
    status: Status
    reason: Reason | None = None
    detail: str | None = None

    @classmethod
    def succeeded(cls) -> Outcome:
        return cls(status=Status.SUCCEEDED)

    @classmethod
    def quarantined(cls, reason: Reason, detail: str) -> Outcome:
        return cls(status=Status.QUARANTINED, reason=reason, detail=detail)

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED
