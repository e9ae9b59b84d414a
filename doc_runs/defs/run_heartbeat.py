"""A run's worker saying which process it is and that it is still alive (the rows of
doc_runs.core.run_workers, read by doc_runs.defs.run_launcher), from when the run sets up its
resources until it tears them down."""

from __future__ import annotations

import logging
import threading

from dagster import DagsterEventType, DagsterInstance

from doc_runs.core.catalog_database import CatalogDatabase
from doc_runs.core.run_workers import RunWorkers, WorkerIdentity, run_worker_pid

BEAT_EVERY_S = 10.0

log = logging.getLogger(__name__)


class RunHeartbeat:
    def __init__(self, database: CatalogDatabase, instance: DagsterInstance, run_id: str,
                 every_s: float | None = None) -> None:
        self.workers, self.run_id = RunWorkers(database), run_id
        self.every_s = BEAT_EVERY_S if every_s is None else every_s
        try:
            self.identity = WorkerIdentity.of_process(
                run_worker_pid(_start_pid(instance, run_id)))
        except Exception:  # the run's process vanished between two questions: this one
            self.identity = WorkerIdentity.of_process()
        self._stop = threading.Event()
        self._recorded = False
        self._thread = threading.Thread(target=self._beat, name=f"run-heartbeat-{run_id[:8]}",
                                        daemon=True)

    def start(self) -> RunHeartbeat:
        self._record()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _record(self) -> None:
        try:
            self.workers.started(self.run_id, self.identity)
            self._recorded = True
        except Exception as failed:  # the database away: the beats try again
            log.warning("run %s: could not record its worker (%s): trying again in %.0f s",
                        self.run_id, failed, self.every_s)

    def _beat(self) -> None:
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
