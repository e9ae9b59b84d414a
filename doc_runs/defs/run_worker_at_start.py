"""A run's process says which it is, and starts beating, before it says it started; it stops
beating when it says the run ended.

Set up by the run's resources instead (run_heartbeat.py, which still does so with storages
other than the shipped ones), the record came a second or more after the start event: a
worker killed in between (every process killed at once, seconds into a batch) left a run
STARTED that run monitoring could not judge (run_launcher.py) and only the 6-hour maximum
runtime ended, its documents pending, its tenant's run slot and its pool slots held. Started
here, in the run's own process, before its start event is stored: either the run never reads
STARTED (its start timeout then fails it) or its process is on record and beating. A run
whose steps each run in a process of their own beats too: its own process lives as long as
the run does. The first record waits for a locked or absent catalog for a few seconds at most
(then the heartbeat keeps trying while the run goes on)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry

log = logging.getLogger(__name__)

_RUN_ENDS = {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE,
             DagsterEventType.RUN_CANCELED}


class RunWorkerRecordedAtStart:
    """Mixed into an event log storage, before Dagster's class in the bases."""

    def store_event(self, event: EventLogEntry) -> None:
        self._heartbeat_of_run(event)
        super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            self._heartbeat_of_run(event)
        super().store_event_batch(events)  # type: ignore[misc]

    def _heartbeat_of_run(self, event: EventLogEntry) -> None:
        instance: Any = getattr(self, "_instance", None)
        dagster_event = event.dagster_event
        if (instance is None or dagster_event is None or not event.run_id
                or dagster_event.pid != os.getpid()):
            return
        from doc_runs.defs.run_heartbeat import RunHeartbeat

        if dagster_event.event_type == DagsterEventType.RUN_START:
            if RunHeartbeat.running(event.run_id) is None:
                from doc_runs.core.catalog import DocumentCatalog
                from doc_runs.defs.resources import instance_catalog_url

                try:
                    catalog = DocumentCatalog(instance_catalog_url(instance))
                except Exception as failed:  # a URL it cannot use: its resources say so
                    log.warning("run %s: its process is not recorded at its start (%s)",
                                event.run_id, failed)
                    return
                RunHeartbeat(catalog, event.run_id, owns_database=True).start()
        elif dagster_event.event_type in _RUN_ENDS:
            heartbeat = RunHeartbeat.running(event.run_id)
            if heartbeat is not None and heartbeat.owns_database:
                heartbeat.stop()
