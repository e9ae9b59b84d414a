"""GET /v1/documents and /v1/documents/{id}: what the runs recorded, for the owner only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from doc_runs.api.bearer import authenticated_tenant
from doc_runs.api.document_status import describe
from doc_runs.api.errors import not_found, responses
from doc_runs.api.runtime import runtime
from doc_runs.api.schemas import DocumentList, DocumentListItem, DocumentState, DocumentStatus
from doc_runs.auth import may_access

router = APIRouter()

MAX_PAGE = 1000

Tenant = Annotated[str, Depends(authenticated_tenant)]


def owned_document(request: Request, document_id: str, tenant: Tenant) -> str:
    """The path's document id when the caller's tenant owns it; the one 404 otherwise."""
    if not may_access(tenant, runtime(request).store.owner(document_id)):
        raise not_found()
    return document_id


@router.get(
    "/v1/documents/{document_id}",
    response_model=DocumentStatus,
    summary="A document's status, per-stage results, and its summary and findings",
    description="`pending` until a stage records something, `incomplete` until the last "
    "stage has (still running, or its run failed on a transient error and awaits "
    "re-execution), then `succeeded` or `quarantined` (with its reason). The summary and "
    "findings are there once it succeeded.",
    responses=responses(401, 404),
)
def get_document(request: Request,
                 document_id: Annotated[str, Depends(owned_document)]) -> DocumentStatus:
    state = runtime(request)
    return describe(state.store, state.catalog, document_id)


@router.get(
    "/v1/documents",
    response_model=DocumentList,
    summary="The caller's documents with their status",
    description="In document-id order; page with `after`.",
    responses=responses(401),
)
def list_documents(
    request: Request,
    tenant: Tenant,
    status: Annotated[DocumentState | None,
                      Query(description="Only documents in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None,
                     Query(description="The `next_after` of the previous page.")] = None,
) -> DocumentList:
    state = runtime(request)
    # An indexed read of one page: the cost follows the page, not the tenant's corpus.
    rows = state.catalog.documents_of(tenant, state=status.value if status else None,
                                      after=after, limit=limit)
    items = [DocumentListItem(document_id=row.document_id, status=DocumentState(row.state),
                              reason=row.reason,
                              source_names=state.store.source_names(row.document_id))
             for row in rows]
    return DocumentList(documents=items,
                        next_after=rows[-1].document_id if len(rows) == limit else None)
