"""Who is calling: the tenant whose API token is presented as `Authorization: Bearer`."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from doc_runs.api.errors import ApiError
from doc_runs.api.runtime import Runtime, runtime
from doc_runs.auth import SecretsError

# RFC 6750 b64token; anything else cannot be a token we issued.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_REALM = 'Bearer realm="doc_runs"'

# Registered for the OpenAPI security scheme only; the header is checked below, so that a
# missing, a malformed and a wrong token all answer 401 with WWW-Authenticate.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `doc-runs "
                           "tenant add NAME`.")


def _unauthorized(detail: str, error: str | None = None) -> ApiError:
    challenge = _REALM if error is None else f'{_REALM}, error="{error}"'
    return ApiError(401, detail, headers={"WWW-Authenticate": challenge})


def _presented_token(header: str | None) -> str:
    if header is None or not header.strip():
        raise _unauthorized("missing Authorization header: send `Authorization: Bearer "
                            "<token>`")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    # The detail never repeats the header: it may be a token sent the wrong way.
    if scheme.lower() != "bearer" or not _TOKEN_RE.fullmatch(token):
        raise _unauthorized("malformed Authorization header: expected `Bearer <token>`",
                            "invalid_request")
    return token


def authenticated_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> str:
    """The calling tenant; 401 otherwise."""
    token = _presented_token(request.headers.get("authorization"))
    state: Runtime = runtime(request)
    try:
        secrets = state.settings.secrets.current()
    except SecretsError as exc:
        raise ApiError(500, f"the server's secrets cannot be loaded: {exc}") from None
    tenant = secrets.tenant_for_token(token)
    if tenant is None:
        raise _unauthorized("unknown API token", "invalid_token")
    return tenant
