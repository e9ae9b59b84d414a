"""`doc-runs upgrade`: a home made when every document was a partition of the dynamic
partitions definition `documents` (releases before batches), carried into the catalog.

Every registered document keeps its names, owner, stage records and so its state (succeeded,
quarantined, failed, incomplete, pending); documents stored but never registered (an upload
still on the queue) are listed as pending for their tenant. The old records become the
records of an `upgrade` batch per tenant and day, which no run works on: a document that had
not finished is taken by the nightly schedule or `doc-runs rerun`, like any other. Nothing of
the old home is deleted (the partition keys stay in the instance, the record files in the
store), and running the command again adds nothing."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterInstance

from doc_runs.core.catalog import DocumentCatalog, NewDocument, batch_day
from doc_runs.core.store import DEFAULT_TENANT, DocumentStore
from doc_runs.defs.partitions import FIRST_DAY

OLD_PARTITIONS = "documents"  # the dynamic partitions definition of earlier releases
UPGRADED_META = "upgraded_from_document_partitions"
_CHUNK = 500


@dataclass
class UpgradeReport:
    registered: int = 0  # partition keys found
    carried: int = 0  # documents written into the catalog now
    already: int = 0  # in the catalog before (an earlier upgrade, or a batch since)
    missing: list[str] = field(default_factory=list)  # keys with no owner: nothing stored
    # Carried with their records, but their bytes are gone from the store: a re-run
    # quarantines them as unreadable until the file is stored again.
    without_bytes: list[str] = field(default_factory=list)
    stored_only: int = 0  # stored, never registered: listed as pending
    states: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def old_records(store: DocumentStore, document_id: str) -> dict[str, dict[str, Any]]:
    """The per-stage record files an earlier release wrote for the document."""
    folder = store.root / "records" / document_id
    if not folder.is_dir():
        return {}
    return {path.stem: json.loads(path.read_bytes()) for path in sorted(folder.glob("*.json"))}


def _stored_documents(store: DocumentStore) -> Iterator[tuple[str, str]]:
    """(document id, tenant) of every document in the store's tenant listings."""
    root = store.root / "tenants"
    if not root.is_dir():
        return
    for tenant_dir in sorted(root.iterdir()):
        for document_id in store.documents_of(tenant_dir.name):
            yield document_id, tenant_dir.name


def _day_of(records: dict[str, dict[str, Any]]) -> str:
    latest = max((r.get("recorded_at") or 0 for r in records.values()), default=0)
    return max(batch_day(latest) if latest else batch_day(), FIRST_DAY)


def upgrade_home(instance: DagsterInstance, catalog: DocumentCatalog, store: DocumentStore,
                 progress: Callable[[str], None] = lambda _: None) -> UpgradeReport:
    report = UpgradeReport()
    registered: set[str] = set()
    for chunk in _old_keys(instance):
        registered.update(chunk)
        # A document a batch has named since is that batch's; one an earlier (perhaps
        # interrupted) upgrade carried is carried again, the same records into the same
        # batch, and counted as there already.
        latest = catalog.latest_batches(chunk)
        done = {key for key, (_, trigger) in latest.items() if trigger != "upgrade"}
        report.already += len(latest)
        groups: dict[tuple[str, str], list[tuple[str, dict[str, dict[str, Any]]]]] = \
            defaultdict(list)
        for key in chunk:
            if key in done:
                continue
            owner = store.owner(key)
            if owner is None:
                report.missing.append(key)
                continue
            if not store.has_document(key):
                report.without_bytes.append(key)
            records = old_records(store, key)
            groups[(owner, _day_of(records))].append((key, records))
        for (tenant, day), members in groups.items():
            _carry(catalog, store, tenant, day, members)
            report.carried += sum(1 for key, _ in members if key not in latest)
        report.registered = len(registered)
        progress(f"{len(registered)} partitions of {OLD_PARTITIONS!r} read")
    stored_only = [(key, tenant) for key, tenant in _stored_documents(store)
                   if key not in registered]
    for key, tenant in stored_only:
        # Listed now where the catalog does not know it yet (a batch may have named it
        # since the new release started).
        if catalog.note_stored(key, tenant or DEFAULT_TENANT, store.source_names(key)):
            report.stored_only += 1
    for state, count in catalog.count_by_state().items():
        report.states[state] = count
    catalog.set_meta(UPGRADED_META, json.dumps({"partitions": report.registered,
                                                "carried": report.carried}))
    return report


def _old_keys(instance: DagsterInstance) -> Iterator[list[str]]:
    """The old partition keys in their order, a page at a time."""
    cursor = None
    while True:
        page = instance.get_paginated_dynamic_partitions(OLD_PARTITIONS, limit=_CHUNK,
                                                         ascending=True, cursor=cursor)
        if page.results:
            yield list(page.results)
        if not page.has_more:
            return
        cursor = page.cursor


def _carry(catalog: DocumentCatalog, store: DocumentStore, tenant: str, day: str,
           members: list[tuple[str, dict[str, dict[str, Any]]]]) -> None:
    """One `upgrade` batch holding the documents with their old records (named by them, so
    an upgrade interrupted and run again makes the same batch of the same documents)."""
    ids = [key for key, _ in members]
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:24]
    batch = catalog.register_batch(
        f"upgrade-{tenant}-{day}-{digest}", tenant,
        [NewDocument(key, store.source_names(key)) for key in ids], "upgrade", day=day)
    by_stage: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for key, records in members:
        for stage, record in records.items():
            by_stage[stage][key] = record
    for stage, records in by_stage.items():
        catalog.write_stage_records(batch, stage, records)


def needs_upgrade(instance: DagsterInstance, catalog: DocumentCatalog) -> bool:
    """Whether this home still has documents only as partitions (upgrade not run yet)."""
    if catalog.meta(UPGRADED_META) is not None:
        return False
    return bool(instance.get_paginated_dynamic_partitions(OLD_PARTITIONS, limit=1,
                                                          ascending=True).results)
