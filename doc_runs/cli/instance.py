"""The Dagster instance and the document catalog an operator's command works on, and whether
a daemon launches the runs it queues."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from doc_runs.cli.common import SetupProblem
from doc_runs.project import ensure_dagster_home
from doc_runs.settings import Settings

# A daemon that has not written a heartbeat for this long is taken for stopped.
DAEMON_SILENT_S = 60.0


def daemon_launches_queued_runs(instance: Any) -> bool:
    """Whether queued runs are launched by a running daemon: the instance queues runs and its
    daemon's run-queue loop wrote a heartbeat lately."""
    from dagster import QueuedRunCoordinator

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_SILENT_S


@contextmanager
def operator_instance(settings: Settings) -> Iterator[Any]:
    """The configured Dagster instance, or SetupProblem saying why it cannot be had."""
    from dagster import DagsterInstance

    try:
        home = ensure_dagster_home(settings.dagster_home)
    except OSError as unusable:
        raise SetupProblem(f"cannot use DAGSTER_HOME: {unusable}") from None
    try:
        instance = DagsterInstance.get()
    except Exception as failed:
        raise SetupProblem(f"the Dagster instance in {home} cannot be used: "
                           f"{' '.join(str(failed).split())[:500]}") from None
    with instance:
        try:
            instance.get_run_records(limit=1)  # the storage answers, or we say so now
        except Exception as failed:
            raise SetupProblem(f"the Dagster instance in {home} cannot be used: "
                               f"{' '.join(str(failed).split())[:500]}") from None
        yield instance


@contextmanager
def operator_catalog(instance: Any, settings: Settings) -> Iterator[Any]:
    """The instance's document catalog, or SetupProblem saying why it cannot be had."""
    from doc_runs.core.catalog import CatalogUnavailable, DocumentCatalog
    from doc_runs.defs.resources import instance_catalog_url

    try:
        catalog = DocumentCatalog(instance_catalog_url(instance, settings))
    except CatalogUnavailable as failed:
        raise SetupProblem(str(failed)) from None
    with catalog:
        yield catalog
