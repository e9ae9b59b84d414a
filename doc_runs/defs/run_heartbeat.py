"""A run's worker saying which process it is and that it is still alive (the rows of
doc_runs.core.run_workers, read by doc_runs.defs.run_launcher), from its start event until its
end event (run_worker_at_start.py, with the shipped event log storages), or, with other
storages, from when the run sets up its resources until it tears them down."""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar

from dagster import DagsterEventType, DagsterInstance

from doc_runs.core.catalog_database import CatalogDatabase
from doc_runs.core.run_workers import RunWorkers, WorkerIdentity

BEAT_EVERY_S = 10.0

log = logging.getLogger(__name__)


class RunHeartbeat:
    # The heartbeats running in this process, by run id: a run beats once, whichever part of
    # the process started its heartbeat first.
    _running: ClassVar[dict[str, RunHeartbeat]] = {}
    _running_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, database: CatalogDatabase, run_id: str,
                 every_s: float | None = None, owns_database: bool = False) -> None:
        self.workers, self.run_id = RunWorkers(database), run_id
        self.database, self.owns_database = database, owns_database
        self.every_s = BEAT_EVERY_S if every_s is None else every_s
        self.identity = WorkerIdentity.of_process()
        self._stop = threading.Event()
        self._first_record_tried = threading.Event()
        self._recorded = False
        self._thread = threading.Thread(target=self._beat, name=f"run-heartbeat-{run_id[:8]}",
                                        daemon=True)

    @classmethod
    def in_run_process(cls, database: CatalogDatabase, instance: DagsterInstance,
                       run_id: str) -> RunHeartbeat | None:
        """A heartbeat for the run, when this is the run's own process (the one that wrote
        its start event) and the run does not beat here already; None in a process running
        one of its steps (a job with a step-per-process executor), which would come and go
        while the run lives on."""
        if cls.running(run_id) is not None or _start_pid(instance, run_id) != os.getpid():
            return None
        return cls(database, run_id)

    @classmethod
    def running(cls, run_id: str) -> RunHeartbeat | None:
        with cls._running_lock:
            return cls._running.get(run_id)

    def start(self, wait_s: float = 5.0) -> RunHeartbeat:
        """Starts beating, its first record made at once; waits for that record for at most
        `wait_s` (a catalog that is locked or away delays the run that long, no longer: the
        heartbeat goes on trying)."""
        with self._running_lock:
            self._running.setdefault(self.run_id, self)
        self._thread.start()
        self._first_record_tried.wait(wait_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._running_lock:
            if self._running.get(self.run_id) is self:
                del self._running[self.run_id]
        if self.owns_database:
            self.database.close()

    def _record(self) -> None:
        try:
            self.workers.started(self.run_id, self.identity)
            self._recorded = True
        except Exception as failed:  # the database away: the beats try again
            log.warning("run %s: could not record its worker (%s): trying again in %.0f s",
                        self.run_id, failed, self.every_s)

    def _beat(self) -> None:
        self._record()
        self._first_record_tried.set()
        while not self._stop.wait(self.every_s):
            if not self._recorded:
                self._record()
                continue
            try:
                if not self.workers.beat(self.run_id):
                    self._record()
            except Exception as failed:
                log.warning("run %s: heartbeat not recorded (%s)", self.run_id, failed)


def _start_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that wrote the run's start event (the run's own process)."""
    try:
        started = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    except Exception:
        return None
    event = started[0].dagster_event if started else None
    return event.pid if event is not None else None
