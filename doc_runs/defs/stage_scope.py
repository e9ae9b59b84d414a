"""What a stage works on in a run: its batch and, of the batch's documents, those still this
run's to work on; and the worker's half of the one auth rule, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, Failure

from doc_runs.auth import may_access
from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.core.stages import STAGE_OUTPUTS
from doc_runs.core.store import DocumentStore
from doc_runs.defs.partitions import BATCH_TAG, run_batch
from doc_runs.defs.tags import TENANT_TAG


@dataclass
class StageScope:
    """What a stage works on in this run: its batch and, of the batch's documents, those
    whose latest batch it still is (a document named by a newer batch is that batch's to
    work on; see doc_runs.core.catalog)."""

    context: AssetExecutionContext
    store: DocumentStore
    catalog: DocumentCatalog
    batch: Batch
    documents: list[str]

    @property
    def tenant(self) -> str:
        return self.batch.tenant

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    @property
    def attempt(self) -> int:
        return self.context.retry_number + 1

    def load(self, stage: str) -> dict[str, Any]:
        """The outputs an earlier stage stored for this scope's documents."""
        model = STAGE_OUTPUTS[stage]
        return {key: model.model_validate_json(
                    self.store.read_artifact(stage, model.VERSION, key))
                for key in self.documents}


def stage_scope(context: AssetExecutionContext, store: DocumentStore,
                catalog: DocumentCatalog) -> StageScope:
    """The run's batch, or a failure without retries for a run that names none: a run
    launched by hand from the UI has no documents of its own (`doc-runs rerun` starts one
    for a document, the sensors and schedules for theirs)."""
    batch = run_batch(catalog, context.run.tags)
    if batch is None:
        named = context.run.tags.get(BATCH_TAG)
        raise Failure(
            description=(f"run names batch {named!r}, which the catalog does not hold"
                         if named else "run names no batch of documents (no "
                         f"{BATCH_TAG} tag): document runs are started per batch by the "
                         "sensors, the nightly schedule and `doc-runs process` or "
                         "`doc-runs rerun DOCUMENT_ID`; re-execute a failed run to redo "
                         "its batch"),
            metadata={"batch": named or ""}, allow_retries=False)
    return StageScope(context, store, catalog, batch, catalog.current_documents(batch))


def run_tenant(context: AssetExecutionContext) -> str | None:
    """The tenant a run acts for (its tag; a run without one acts for its batch's)."""
    return context.run.tags.get(TENANT_TAG)


def refuse_documents_of_other_tenants(scope: StageScope) -> None:
    """The worker's half of the one auth rule (doc_runs.auth.may_access): a run acting for a
    tenant touches only that tenant's documents, and its batch is that tenant's. Checked
    before any stage work, and fatal: retrying cannot change ownership, and nothing is
    recorded for the other tenant's document."""
    tenant = run_tenant(scope.context) or scope.batch.tenant
    foreign = [key for key in scope.batch.documents
               if not may_access(tenant, scope.store.owner(key))]
    if tenant != scope.batch.tenant or foreign:
        raise Failure(
            description=f"run acts for tenant {tenant!r} but "
            + (f"its batch belongs to tenant {scope.batch.tenant!r}"
               if tenant != scope.batch.tenant
               else f"{len(foreign)} of its documents belong to another tenant or do not "
               "exist") + "; nothing was processed",
            metadata={"tenant": tenant, "refused_documents": foreign[:20]},
            allow_retries=False,
        )
