"""From documents to run requests: every initiator (inbox, queue, nightly schedule, the
command line) cuts its documents into batches of one tenant, registers each batch in the
catalog and asks for one run per batch, into the partition of the batch's day."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dagster import DagsterInstance, RunRequest, RunsFilter

from doc_runs.core.catalog import Batch, DocumentCatalog, NewDocument
from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import describe_named
from doc_runs.defs.partitions import batch_id_for, batch_tags
from doc_runs.defs.tags import (
    BATCH_TAG,
    DESCRIPTION_TAG,
    EXTRA_FIELDS_TAG,
    TENANT_TAG,
    TRIGGER_TAG,
)
from doc_runs.logs import log_run_requested


@dataclass(frozen=True)
class PlannedBatch:
    """A run to ask for: its key, tenant, documents (in order) and what started it."""

    run_key: str
    tenant: str
    documents: Sequence[str]
    trigger: str
    tags: dict[str, str] = field(default_factory=dict)  # the initiator's own, besides register's
    fields: str = "{}"  # the extra fields the run asks for, as JSON ("{}": the defaults)
    # The partition: the day the batch is made, or the tick's day for a schedule (Dagster
    # checks the key against the partitions as of the tick's time).
    day: str | None = None


def chunked(items: Sequence[str], size: int) -> list[list[str]]:
    """`items` in order, at most `size` each."""
    if size < 1:
        raise ValueError("a batch holds at least one document")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def register(catalog: DocumentCatalog, store: DocumentStore, batch_id: str, tenant: str,
             documents: Sequence[str], trigger: str, day: str | None = None,
             fields: str = "{}") -> tuple[Batch, dict[str, str]]:
    """Registers the batch (with the names its documents arrived under) and returns it with
    the tags its run carries: every document run's, whoever asks for it (a RunRequest of a
    sensor or schedule, or a run the command line creates itself)."""
    named = [NewDocument(d, store.source_names(d)) for d in documents]
    batch = catalog.register_batch(batch_id, tenant, named, trigger, day=day)
    tags = {TRIGGER_TAG: trigger, TENANT_TAG: tenant,
            DESCRIPTION_TAG: describe_named([(d.document_id, d.names) for d in named]),
            **batch_tags(batch)}
    if fields != "{}":  # none for the defaults alone
        tags[EXTRA_FIELDS_TAG] = fields
    return batch, tags


def batches_with_runs(instance: DagsterInstance, batch_ids: Iterable[str]) -> set[str]:
    """Those of the batches some run works on (any status)."""
    return set(_fields_of_batches(instance, set(batch_ids)))


def fields_requested(instance: DagsterInstance, catalog: DocumentCatalog,
                     document_ids: Sequence[str]) -> dict[str, str]:
    """The extra fields (the JSON of a run's `doc_runs/extra_fields` tag, "{}" for none) the
    run of each document's latest batch with a run was asked for: what a re-run or the
    nightly schedule asks for again, so a document uploaded with fields of its own keeps
    them. Batches without a run (an upgrade's, one a failed tick registered) are passed
    over, so a tick evaluated again asks for the same. Reads the runs of the distinct latest
    batches; only a document whose latest batch has no run costs queries of its own."""
    latest = catalog.latest_batches(document_ids)
    by_batch = _fields_of_batches(instance, {batch_id for batch_id, _ in latest.values()})
    out: dict[str, str] = {}
    earlier_wanted = []
    for document_id in document_ids:
        batch_id, trigger = latest.get(document_id, (None, None))
        if batch_id in by_batch:
            out[document_id] = by_batch[batch_id]
        elif trigger == "upgrade" or batch_id is None:  # no batch of it had a run
            out[document_id] = "{}"
        else:
            earlier_wanted.append(document_id)
    if earlier_wanted:
        earlier = catalog.batch_ids_of(earlier_wanted)
        found = _fields_of_batches(instance, {b for ids in earlier.values() for b in ids})
        for document_id in earlier_wanted:
            out[document_id] = next((found[b] for b in earlier[document_id] if b in found),
                                    "{}")
    return out


def _fields_of_batches(instance: DagsterInstance, batch_ids: set[str]) -> dict[str, str]:
    """The extra fields of each batch that has a run (re-executions carry the same tags)."""
    wanted = sorted(batch_ids)
    fields: dict[str, str] = {}
    for start in range(0, len(wanted), 100):
        for run in instance.get_runs(RunsFilter(tags={BATCH_TAG: wanted[start:start + 100]})):
            fields.setdefault(run.tags[BATCH_TAG], run.tags.get(EXTRA_FIELDS_TAG, "{}"))
    return fields


def already_requested(instance: DagsterInstance, catalog: DocumentCatalog,
                      document_ids: Sequence[str], trigger: str) -> set[str]:
    """Those of the documents a batch has named whose run was asked for: any batch of
    another initiator, and a batch of `trigger`'s own only where a run works on it. A tick
    that registered its batches and then failed (the daemon stopped before it made the runs)
    left batches with no run, and the next tick, which sees the same files, must ask for
    their runs again."""
    latest = catalog.latest_batches(document_ids)
    own = {batch_id for batch_id, made_by in latest.values() if made_by == trigger}
    with_runs = batches_with_runs(instance, own)
    return {document_id for document_id, (batch_id, made_by) in latest.items()
            if made_by != trigger or batch_id in with_runs}


def request_runs(catalog: DocumentCatalog, store: DocumentStore,
                 planned: Sequence[PlannedBatch], initiator: str) -> list[RunRequest]:
    """One run request per planned batch, each batch registered first. A tick that fails
    after registering is evaluated again with the same run keys, so the same batches: the
    registration is idempotent."""
    requests = []
    for plan in planned:
        batch, tags = register(catalog, store, batch_id_for(plan.run_key), plan.tenant,
                               plan.documents, plan.trigger, plan.day, plan.fields)
        requests.append(RunRequest(run_key=plan.run_key, partition_key=batch.day,
                                   tags={**tags, **plan.tags}))
        log_run_requested(initiator, plan.run_key, list(batch.documents), plan.tenant)
    return requests
