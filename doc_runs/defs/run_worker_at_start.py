"""A run's process says which it is before it says it started.

The run's worker records itself fully (and starts beating) when the run sets up its
resources (run_heartbeat.py), a second or more after its start event. A worker killed in
between (every process killed at once, seconds into a batch) left a run STARTED with no
process on record, which run monitoring could not judge (run_launcher.py) and only the 6-hour
maximum runtime ended: its documents pending, its tenant's run slot and its pool slots held.
Recorded here, in the same process, before the start event is stored, there is no such gap:
either the run never reads STARTED (and its start timeout fails it) or its process is on
record. Rows written here do not beat (a run whose steps each run in a process of their own
never sets up resources in this one), so a watcher that cannot see the process leaves such a
run alone, as before."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry

log = logging.getLogger(__name__)


class RunWorkerRecordedAtStart:
    """Mixed into an event log storage, before Dagster's class in the bases."""

    def store_event(self, event: EventLogEntry) -> None:
        self._record_run_worker(event)
        super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            self._record_run_worker(event)
        super().store_event_batch(events)  # type: ignore[misc]

    def _record_run_worker(self, event: EventLogEntry) -> None:
        instance: Any = getattr(self, "_instance", None)
        dagster_event = event.dagster_event
        if (instance is None or dagster_event is None or not event.run_id
                or dagster_event.event_type != DagsterEventType.RUN_START
                or dagster_event.pid != os.getpid()):
            return
        from doc_runs.core.catalog import DocumentCatalog
        from doc_runs.core.run_workers import RunWorkers, WorkerIdentity
        from doc_runs.defs.resources import instance_catalog_url

        try:
            with DocumentCatalog(instance_catalog_url(instance)) as catalog:
                RunWorkers(catalog).started(event.run_id, WorkerIdentity.of_process(),
                                            beating=False)
        except Exception as failed:  # the database away: the run's set-up records it later
            log.warning("run %s: its process was not recorded at its start (%s)",
                        event.run_id, failed)
