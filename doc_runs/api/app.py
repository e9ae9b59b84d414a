"""The HTTP app: the initiation and status boundary of doc_runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from doc_runs.api import documents, events, health, rerun, upload
from doc_runs.api.runtime import Runtime
from doc_runs.api.settings import ApiSettings
from doc_runs.core.catalog import CatalogUnavailable
from doc_runs.core.store import ABANDONED_AFTER_S, DocumentStore
from doc_runs.logs import log_fact

_DESCRIPTION = (
    "Upload documents, then follow them: the upload is stored once (per tenant, by content) "
    "and queued; Dagster runs do the work. Every endpoint but /healthz and these docs needs "
    "`Authorization: Bearer <token>` (`doc-runs tenant add NAME` issues one). Errors are "
    '`{"detail": ...}`.')


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = Runtime.open(settings)
        app.state.runtime = state
        sweeper = asyncio.create_task(_sweep_abandoned_writes(state.store))
        try:
            yield
        finally:
            sweeper.cancel()
            await state.close()

    app = FastAPI(title="doc_runs", version="1", description=_DESCRIPTION, lifespan=lifespan)
    for module in (upload, documents, rerun, events, health):
        app.include_router(module.router)

    @app.exception_handler(CatalogUnavailable)
    async def catalog_down(request: Request, exc: CatalogUnavailable) -> JSONResponse:
        # Which database, as which user, and why is for the operator's log: a client learns
        # that the part is down, not where it lives.
        log_fact(f"{request.method} {request.url.path}: 503, {exc}", level=logging.ERROR,
                 stage="api", outcome="unavailable", reason="catalog_unavailable")
        return JSONResponse({"detail": "the catalog (the database of documents' states) is "
                             "unavailable; nothing was changed: try again later"},
                            status_code=503)

    return app


async def _sweep_abandoned_writes(store: DocumentStore) -> None:
    """Deletes uploads cut off when an API process died mid-stream (nothing refers to them),
    at start and then every few seconds: a file younger than ABANDONED_AFTER_S is spared, so
    one left by an API killed just before this one started is only deletable a little later,
    and another API on the same store may die at any time."""
    while True:
        try:
            swept = await asyncio.to_thread(store.sweep_abandoned_writes)
        except OSError as error:  # the store's disk went away: say so, try again later
            log_fact(f"could not sweep {store.root / 'tmp'}: {error}", level=logging.WARNING,
                     stage="api", outcome="sweep_failed")
        else:
            if swept:
                log_fact(f"deleted {len(swept)} abandoned upload or write file(s) from "
                         f"{store.root / 'tmp'}", stage="api", outcome="swept")
        await asyncio.sleep(ABANDONED_AFTER_S)
