"""How runs are cut: a partition per day, a batch per run.

The document assets are partitioned by day (UTC): each run materializes the day its batch was
made, so partitions grow by one a day whatever the volume (3,650 after ten years), and the UI's
partition views stay small. Which documents a run works on is its batch: an explicit, stored
list in the catalog (doc_runs.core.catalog), named by the run's `doc_runs/batch` tag, which
re-execution and run retries copy. No run covers a range over a global order."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from dagster import DailyPartitionsDefinition

from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.defs.tags import BATCH_TAG, DOCUMENTS_TAG

# The first release's month: no batch is older. Each day after it is one partition.
FIRST_DAY = "2026-11-01"
days = DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)

PARTITION_TAG = "dagster/partition"


def batch_id_for(run_key: str) -> str:
    """A sensor's or schedule's batch id, made from its run key: a tick evaluated again asks
    for the same run and registers the same batch."""
    return "b-" + hashlib.sha256(run_key.encode()).hexdigest()[:32]


def batch_tags(batch: Batch) -> dict[str, str]:
    return {BATCH_TAG: batch.batch_id, DOCUMENTS_TAG: str(len(batch.documents))}


def run_batch(catalog: DocumentCatalog, run_tags: Mapping[str, str]) -> Batch | None:
    """The batch a run works on; None for a run that names none (or an unknown one)."""
    batch_id = run_tags.get(BATCH_TAG)
    return catalog.batch(batch_id) if batch_id else None


def run_documents(catalog: DocumentCatalog, run_tags: Mapping[str, str]) -> list[str]:
    """The documents a run covers, in its batch's order."""
    batch = run_batch(catalog, run_tags)
    return list(batch.documents) if batch is not None else []
