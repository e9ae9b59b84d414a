"""Error answers: always JSON `{"detail": ...}`, and documented per endpoint in OpenAPI."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel


class ErrorBody(BaseModel):
    detail: str


class ApiError(HTTPException):
    """An answer other than success, with a message meant for the client."""

    def __init__(self, status_code: int, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)


NOT_FOUND_DETAIL = "no such document"


def not_found() -> ApiError:
    # One answer for a malformed id, a missing one and another tenant's: a content hash
    # must not tell a tenant whether someone else holds the same file.
    return ApiError(404, NOT_FOUND_DETAIL)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes an endpoint may answer."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


_DESCRIPTIONS = {
    400: "The request is malformed (the detail says what).",
    401: "Missing, malformed or unknown bearer token.",
    404: "No such document for this tenant (also for another tenant's or a malformed id).",
    409: "The idempotency key was already used for another document or other options.",
    413: "The upload is larger than the configured limit.",
    415: "The body is not multipart/form-data.",
    500: "The server is misconfigured (the detail names the fix).",
    503: "A dependency (Redis, the store or the catalog) is unavailable; try again later.",
}
