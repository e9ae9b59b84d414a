"""A run's process is on record before its start event is: a worker killed between its start
and its resources' set-up (every process killed seconds into a batch, found by
bench/power_cut.py) left a run STARTED that nothing judged for 6 hours. On both shipped
instance files, with their own event log storages and launcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.events import DagsterEvent
from dagster._core.events.log import EventLogEntry
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import create_run_for_test

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.run_workers import NOT_BEATING, RunWorkers, WorkerIdentity
from doc_runs.defs.resources import instance_catalog_url
from doc_runs.defs.run_launcher import WatchedRunLauncher

# A run's process as the kill finds it: its start event stored (by its own storage), nothing
# after it.
STARTS_AND_DIES = """
import os, signal, sys
from dagster import DagsterInstance
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
with DagsterInstance.get() as instance:
    run = instance.get_run_by_id(sys.argv[1])
    event = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name,
                         pid=os.getpid())
    instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="",
                                            run_id=run.run_id, timestamp=__import__("time").time(),
                                            dagster_event=event))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def instance(shipped_instance: DagsterInstance) -> DagsterInstance:
    return shipped_instance


def workers_of(instance: DagsterInstance) -> RunWorkers:
    return RunWorkers(DocumentCatalog(instance_catalog_url(instance)))


def store_start(instance: DagsterInstance, run: DagsterRun, pid: int) -> None:
    event = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name, pid=pid)
    instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="",
                                            run_id=run.run_id, timestamp=time.time(),
                                            dagster_event=event))


def test_a_run_killed_right_after_its_start_event_is_failed_as_gone(
        instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    died = subprocess.run([sys.executable, "-c", STARTS_AND_DIES, run.run_id],
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    started = instance.get_run_by_id(run.run_id)
    assert started is not None and started.status == DagsterRunStatus.STARTED
    launcher = instance.run_launcher
    assert isinstance(launcher, WatchedRunLauncher)
    result = launcher.check_run_worker_health(started)
    assert result.status == WorkerStatus.FAILED
    assert result.msg is not None and "its process is gone" in result.msg


def test_the_process_is_on_record_before_the_start_event_is_readable(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = instance.event_log_storage
    dagster_class = next(c for c in type(storage).__mro__
                         if c.__module__.startswith(("dagster._core", "dagster_postgres"))
                         and "store_event" in vars(c))
    original = dagster_class.store_event
    on_record: dict[str, bool] = {}
    workers = workers_of(instance)

    def watched(self, event):
        if event.dagster_event and event.dagster_event.event_type == DagsterEventType.RUN_START:
            on_record[event.run_id] = workers.of(event.run_id) is not None
        return original(self, event)

    monkeypatch.setattr(dagster_class, "store_event", watched)
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_start(instance, run, os.getpid())
    assert on_record == {run.run_id: True}
    worker = workers.of(run.run_id)
    assert worker is not None and worker.identity == WorkerIdentity.of_process()
    assert not worker.beating and worker.beats == NOT_BEATING
    # Its set-up records it again and it beats from then on, counted from 0.
    workers.started(run.run_id, WorkerIdentity.of_process())
    assert workers.of(run.run_id).beats == 0  # type: ignore[union-attr]
    assert workers.beat(run.run_id)
    assert workers.of(run.run_id).beats == 1  # type: ignore[union-attr]


def test_a_start_event_stored_by_another_process_records_nothing(
        instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_start(instance, run, os.getpid() + 1)
    assert workers_of(instance).of(run.run_id) is None


def test_a_process_elsewhere_recorded_at_its_start_only_is_not_judged_by_silence(
        instance: DagsterInstance) -> None:
    # Its steps may each run in a process of their own, so it may never beat.
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_start(instance, run, os.getpid())
    workers = workers_of(instance)
    elsewhere = replace(WorkerIdentity.of_process(), host="worker-7.internal", pid=1)
    workers.started(run.run_id, elsewhere, at=time.time() - 3600, beating=False)
    started = instance.get_run_by_id(run.run_id)
    assert started is not None
    launcher = instance.run_launcher
    assert isinstance(launcher, WatchedRunLauncher)
    for _ in range(3):
        result = launcher.check_run_worker_health(started)
        assert result.status == WorkerStatus.RUNNING
        assert "not beating yet" in (result.msg or "")
