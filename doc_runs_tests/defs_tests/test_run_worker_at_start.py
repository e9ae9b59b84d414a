"""A run's process is on record, and beats, from before its start event is stored until its end
event: a worker killed between its start and its resources' set-up (every process killed
seconds into a batch, found by bench/power_cut.py) left a run STARTED that nothing judged for
6 hours. On both shipped instance files, with their own event log storages and launcher; the
run's process is a real one, SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.events.log import EventLogEntry
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.test_utils import create_run_for_test

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.run_workers import RunWorkers, WorkerIdentity
from doc_runs.defs.resources import instance_catalog_url
from doc_runs.defs.run_heartbeat import RunHeartbeat
from doc_runs.defs.run_launcher import WatchedRunLauncher
from doc_runs_tests.helpers import store_run_event

ROOT = Path(__file__).resolve().parents[2]

# A run's own process as far as its start event, beating every 0.2 s; then it waits to be
# killed.
STARTS = """
import os, sys, time
import doc_runs.defs.run_heartbeat as heartbeat
heartbeat.BEAT_EVERY_S = 0.2
from dagster import DagsterInstance
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
instance = DagsterInstance.get()
run = instance.get_run_by_id(sys.argv[1])
event = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name, pid=os.getpid())
instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="",
                                        run_id=run.run_id, timestamp=time.time(),
                                        dagster_event=event))
print("started", flush=True)
time.sleep(600)
"""


@pytest.fixture
def instance(shipped_instance: DagsterInstance) -> Iterator[DagsterInstance]:
    yield shipped_instance
    for run_id in list(RunHeartbeat._running):
        heartbeat = RunHeartbeat.running(run_id)
        if heartbeat is not None:
            heartbeat.stop()


def workers_of(instance: DagsterInstance) -> RunWorkers:
    return RunWorkers(DocumentCatalog(instance_catalog_url(instance)))


def run_process_started(run: DagsterRun) -> subprocess.Popen[str]:
    # The checkout under test, whatever the venv has installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", STARTS, run.run_id], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "started":
        process.kill()
        raise AssertionError(process.communicate()[1])
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()


def launcher_of(instance: DagsterInstance) -> WatchedRunLauncher:
    launcher = instance.run_launcher
    assert isinstance(launcher, WatchedRunLauncher)
    return launcher


def judged(instance: DagsterInstance, run: DagsterRun, seconds: float) -> list[str]:
    """The launcher's answers, every 0.3 s for `seconds` or until one is FAILED."""
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTED
    answers: list[CheckRunHealthResult] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answers.append(launcher_of(instance).check_run_worker_health(current))
        if answers[-1].status == WorkerStatus.FAILED:
            break
        time.sleep(0.3)
    return [f"{a.status.value}: {a.msg}" for a in answers]


def test_a_run_killed_right_after_its_start_event_is_failed_as_gone(
        instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    process = run_process_started(run)
    assert judged(instance, run, 1)[0].startswith("RUNNING")
    kill(process)
    answers = judged(instance, run, 1)
    assert answers[-1].startswith("FAILED: its process is gone"), answers


def test_seen_from_another_container_it_beats_while_alive_and_is_failed_once_silent(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon in a container of its own (Compose): the run's pid cannot be looked up.
    here = WorkerIdentity.of_process()
    monkeypatch.setattr(WorkerIdentity, "of_process", classmethod(
        lambda cls, pid=None: replace(here, pid_namespace="pid:[another container]")))
    monkeypatch.setattr(launcher_of(instance), "silent_after_s", 1.5)
    run = create_run_for_test(instance, job_name="document_pipeline")
    process = run_process_started(run)
    try:
        answers = judged(instance, run, 3.0)
        assert all(a.startswith("RUNNING") for a in answers), answers
    finally:
        kill(process)
    answers = judged(instance, run, 6.0)
    assert answers[-1].startswith("FAILED: its process is gone"), answers
    assert "sent no heartbeat" in answers[-1]


def test_the_process_is_on_record_before_the_run_reads_started(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    workers = workers_of(instance)
    on_record_when_started: list[bool] = []
    run_storage = instance.run_storage
    original = run_storage.handle_run_event

    def watched(run_id, event, update_timestamp=None):
        if event.event_type == DagsterEventType.RUN_START:
            on_record_when_started.append(workers.of(run_id) is not None)
        return original(run_id, event, update_timestamp)

    monkeypatch.setattr(run_storage, "handle_run_event", watched)
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_run_event(instance, run, DagsterEventType.RUN_START, os.getpid())
    assert on_record_when_started == [True]
    worker = workers.of(run.run_id)
    assert worker is not None and worker.identity == WorkerIdentity.of_process()


def test_the_process_is_on_record_once_it_says_it_exists_while_the_run_is_starting(
        instance: DagsterInstance) -> None:
    # Dagster's run worker stores this event as its first, before it loads the job.
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_run_event(instance, run, DagsterEventType.RUN_STARTING, os.getpid())
    instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run,
                                 EngineEventData.in_process(os.getpid()))
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTING
    worker = workers_of(instance).of(run.run_id)
    assert worker is not None and worker.identity == WorkerIdentity.of_process()
    heartbeat = RunHeartbeat.running(run.run_id)
    store_run_event(instance, run, DagsterEventType.RUN_START, os.getpid())
    assert RunHeartbeat.running(run.run_id) is heartbeat  # the same one goes on


def test_other_engine_events_record_no_process(instance: DagsterInstance) -> None:
    # A step's process (a step-per-process executor) comes and goes while the run lives on.
    run = create_run_for_test(instance, job_name="document_pipeline")
    step_event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, job_name=run.job_name,
                              step_key="document_text", pid=os.getpid(),
                              event_specific_data=EngineEventData.in_process(os.getpid()),
                              message=f"Started process for run (pid: {os.getpid()}).")
    instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="",
                                            run_id=run.run_id, timestamp=time.time(),
                                            dagster_event=step_event))
    instance.report_engine_event("Executing steps in process", run,
                                 EngineEventData.in_process(os.getpid()))
    # Said by another process (the one that launched it, say).
    instance.report_engine_event(f"Started process for run (pid: {os.getpid() + 1}).", run,
                                 EngineEventData.in_process(os.getpid() + 1))
    assert RunHeartbeat.running(run.run_id) is None
    assert workers_of(instance).of(run.run_id) is None


def test_it_beats_once_from_its_start_to_its_end(instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_run_event(instance, run, DagsterEventType.RUN_START, os.getpid())
    heartbeat = RunHeartbeat.running(run.run_id)
    assert heartbeat is not None
    with DocumentCatalog(instance_catalog_url(instance)) as catalog:
        # The run's resources do not start a second one.
        assert RunHeartbeat.in_run_process(catalog, instance, run.run_id) is None
    store_run_event(instance, run, DagsterEventType.RUN_SUCCESS, os.getpid())
    assert RunHeartbeat.running(run.run_id) is None
    assert not heartbeat._thread.is_alive()


def test_a_start_event_stored_by_another_process_starts_nothing(
        instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_run_event(instance, run, DagsterEventType.RUN_START, os.getpid() + 1)
    assert RunHeartbeat.running(run.run_id) is None
    assert workers_of(instance).of(run.run_id) is None


def test_a_catalog_that_hangs_delays_the_start_a_few_seconds_at_most(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    original = RunWorkers.started

    def hangs(self, *args, **kwargs):
        time.sleep(12)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RunWorkers, "started", hangs)
    run = create_run_for_test(instance, job_name="document_pipeline")
    began = time.monotonic()
    store_run_event(instance, run, DagsterEventType.RUN_START, os.getpid())
    assert time.monotonic() - began < 8
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTED
