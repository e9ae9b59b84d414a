"""Documents and batches for tests that run the pipeline in process: stored through the store,
registered in the instance's catalog as a batch, run into the batch's day."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from doc_runs.core.catalog import Batch, DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.defs.batches import register
from doc_runs.defs.partitions import PARTITION_TAG
from doc_runs.defs.resources import instance_catalog_url
from doc_runs.defs.tags import BATCH_TAG

# What Dagster does as it loads the code location (or a run worker its job): builds the
# Definitions from this process's settings.
LOAD_DEFINITIONS = "from doc_runs.definitions import defs; defs()"


def load_defs() -> Any:
    """The Definitions as the code location builds them, from settings read now: from the
    environment the `project` fixture (and the test) set."""
    from doc_runs.definitions import build_definitions
    from doc_runs.settings import Settings

    return build_definitions(Settings.from_environ(os.environ))


def document_pipeline_job():  # type: ignore[no-untyped-def]
    """The job, for dagster's reconstructable() (a module-level function it can import), built
    from the settings of the environment as it is now."""
    return load_defs().resolve_job_def("document_pipeline")


def catalog_of(instance: DagsterInstance) -> DocumentCatalog:
    """The catalog the instance's runs and sensors use."""
    return DocumentCatalog(instance_catalog_url(instance))


def store_files(project: Path, files: dict[str, bytes], tenant: str = "default") -> list[str]:
    store = DocumentStore(project / "data" / "store")
    ids = []
    for name, data in files.items():
        document_id = store.put_bytes(data, tenant=tenant)
        store.add_source_name(document_id, name)
        ids.append(document_id)
    return ids


def add_batch(instance: DagsterInstance, project: Path, documents: list[str],
              tenant: str = "default", trigger: str = "cli") -> tuple[Batch, dict[str, str]]:
    """Registers a batch of stored documents; returns it with its run's tags (partition
    included)."""
    store = DocumentStore(project / "data" / "store")
    with catalog_of(instance) as catalog:
        batch, tags = register(catalog, store, f"test-{uuid.uuid4().hex}", tenant, documents,
                               trigger)
    return batch, {**tags, PARTITION_TAG: batch.day}


def add_documents(instance: DagsterInstance, project: Path, files: dict[str, bytes],
                  tenant: str = "default") -> tuple[list[str], dict[str, str]]:
    """Stores the files and registers them as one batch: (ids, the run's tags)."""
    ids = store_files(project, files, tenant)
    _, tags = add_batch(instance, project, ids, tenant)
    return ids, tags


def run_tags(instance: DagsterInstance, project: Path, documents: list[str],
             tenant: str = "default") -> dict[str, str]:
    """The tags of a new batch of these (already stored) documents."""
    return add_batch(instance, project, documents, tenant)[1]


def execute(defs: Any, instance: DagsterInstance, tags: dict[str, str], **kwargs: Any) -> Any:
    """The document pipeline over the batch the tags name, in process."""
    tags = dict(tags)
    partition = tags.pop(PARTITION_TAG)
    return defs.resolve_job_def("document_pipeline").execute_in_process(
        instance=instance, partition_key=partition, tags=tags, **kwargs)


def records(instance: DagsterInstance, document_id: str) -> dict[str, dict[str, Any]]:
    with catalog_of(instance) as catalog:
        return catalog.read_records(document_id)


def table_of(result: Any, stage: str) -> dict[str, dict[str, Any]]:
    """The documents table of the run's materialization of `stage`, by document id."""
    from doc_runs.defs.outcome_view import DOCUMENTS, table_rows

    (materialization,) = result.asset_materializations_for_node(stage)
    return {row["document_id"]: row
            for row in table_rows(materialization.metadata[DOCUMENTS].value)}


def runs_of_document(instance: DagsterInstance, document_id: str) -> list[Any]:
    """Every document run whose batch named the document, newest first."""
    from dagster import RunsFilter

    with catalog_of(instance) as catalog:
        batch_ids = [b.batch_id for b in catalog.batches_of(document_id)]
    if not batch_ids:
        return []
    return list(instance.get_runs(RunsFilter(job_name="document_pipeline",
                                             tags={BATCH_TAG: batch_ids})))


def documents_of_run(instance: DagsterInstance, run: Any) -> list[str]:
    from doc_runs.defs.partitions import run_documents

    with catalog_of(instance) as catalog:
        return run_documents(catalog, run.tags)
