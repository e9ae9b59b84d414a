"""GET /healthz: can this server take an upload right now (Redis answers, the store can be
written, the catalog answers)?"""

from __future__ import annotations

import logging
import tempfile

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from doc_runs.api.runtime import runtime
from doc_runs.api.schemas import Health
from doc_runs.logs import log_fact

router = APIRouter()


def _unavailable(part: str, shown: str, logged: str) -> str:
    """What an unauthenticated caller sees of a failed part (its kind of failure), and the
    log line with the rest (addresses, paths, users) for the operator."""
    log_fact(f"/healthz: {part} unavailable: {shown}: {logged}", level=logging.WARNING,
             stage="healthz", outcome="unavailable", reason=f"{part}_unavailable")
    return f"unavailable: {shown}"


def _redis_state(request: Request) -> str:
    try:
        runtime(request).redis.ping()
    except RedisError as exc:
        return _unavailable("redis", type(exc).__name__, str(exc))
    return "ok"


def _store_state(request: Request) -> str:
    tmp = runtime(request).store.root / "tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # Where uploads are written first: if a file cannot be made here, none can arrive.
        with tempfile.TemporaryFile(dir=tmp):
            pass
    except OSError as exc:
        return _unavailable("store", f"cannot write ({exc.strerror or type(exc).__name__})",
                            f"in {tmp}: {exc}")
    return "ok"


def _catalog_state(request: Request) -> str:
    try:
        runtime(request).catalog.meta("schema_version")
    except Exception as exc:
        return _unavailable("catalog", type(exc).__name__, " ".join(str(exc).split())[:500])
    return "ok"


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness and readiness: Redis, the store and the catalog",
    responses={503: {"model": Health, "description": "A part is unavailable (it says why)."}},
)
def health(request: Request) -> JSONResponse:
    checks = {"redis": _redis_state(request), "store": _store_state(request),
              "catalog": _catalog_state(request)}
    failed = [f"{part} {state}" for part, state in checks.items() if state != "ok"]
    if not failed:
        return JSONResponse({"status": "ok", **checks})
    return JSONResponse({"status": "unavailable", **checks, "detail": "; ".join(failed)},
                        status_code=503)
