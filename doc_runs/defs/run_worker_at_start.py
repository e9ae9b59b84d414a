"""A run's process says which it is, and starts beating, as soon as it says it exists (the
engine event "Started process for run (pid: N)" Dagster's run worker stores before anything
else: doc_runs.defs.starting_runs then fails a run still STARTING whose process is gone) or,
failing that, before it says the run started; it stops beating when it says the run ended.

Set up by the run's resources instead (run_heartbeat.py, which still does so with storages
other than the shipped ones), the record came a second or more after the start event: a
worker killed in between (every process killed at once, seconds into a batch) left a run
STARTED that run monitoring could not judge (run_launcher.py) and only the 6-hour maximum
runtime ended, its documents pending, its tenant's run slot and its pool slots held. Started
here, in the run's own process, before its start event is stored: either the run never reads
STARTED (its start timeout fails it, or sooner its recorded process found gone) or its
process is on record and beating. A run whose steps each run in a process of their own beats
too: its own process lives as long as the run does, and a step's process never says it
started the run. The first record waits for a locked or absent catalog for a few seconds at
most (then the heartbeat keeps trying while the run goes on)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from dagster import DagsterEventType, EventLogEntry

log = logging.getLogger(__name__)

# The words of the run worker's first event, the same in Dagster's both run worker entry
# points (`dagster api execute_run` and a code server's run subprocess); should a Dagster
# release change them, the run start event still starts the heartbeat.
_PROCESS_STARTED = "Started process for run"
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
        if instance is None or dagster_event is None or not event.run_id:
            return
        from doc_runs.defs.run_heartbeat import RunHeartbeat

        if _run_process_started(dagster_event) == os.getpid():
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
        elif dagster_event.event_type in _RUN_ENDS and dagster_event.pid == os.getpid():
            heartbeat = RunHeartbeat.running(event.run_id)
            if heartbeat is not None and heartbeat.owns_database:
                heartbeat.stop()


def _run_process_started(dagster_event: Any) -> int | None:
    """The pid of the run's own process, when the event is that process saying it exists or
    that the run started: RUN_START as Dagster's events carry it, and the engine event by its
    pid metadata (Dagster stores it without an event pid)."""
    if dagster_event.event_type == DagsterEventType.RUN_START:
        return dagster_event.pid
    if (dagster_event.event_type != DagsterEventType.ENGINE_EVENT
            or dagster_event.step_key is not None
            or not (dagster_event.message or "").startswith(_PROCESS_STARTED)):
        return None
    data = dagster_event.event_specific_data
    pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
    try:
        return int(getattr(pid, "value", pid))
    except (TypeError, ValueError):
        return None
