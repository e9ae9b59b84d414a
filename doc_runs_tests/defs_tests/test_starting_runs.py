"""A run cut off while it started (its process SIGKILLed after its first event, before its start
event) is failed by the sensor at its next tick, saying why, instead of holding a run slot
until the start timeout; a run whose process lives, and one whose process is not on record
yet, are left alone. On both shipped instance files, with a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    SkipReason,
    build_sensor_context,
)
from dagster._core.events import DagsterEventType
from dagster._core.test_utils import create_run_for_test

from doc_runs.defs.run_heartbeat import RunHeartbeat
from doc_runs.defs.run_launcher import WatchedRunLauncher
from doc_runs.defs.starting_runs import fail_runs_gone_while_starting, starting_runs_sensor
from doc_runs_tests.defs_tests.test_run_worker_at_start import store_run_event

ROOT = Path(__file__).resolve().parents[2]

# A run worker as far as its first event (Dagster's own call, as its run workers make it),
# then loading its job for as long as it is let live.
SAYS_IT_EXISTS = """
import os, sys, time
from dagster import DagsterInstance
from dagster._core.events import EngineEventData
instance = DagsterInstance.get()
run = instance.get_run_by_id(sys.argv[1])
instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run,
                             EngineEventData.in_process(os.getpid()))
print("exists", flush=True)
time.sleep(600)
"""


@pytest.fixture
def instance(shipped_instance: DagsterInstance) -> Iterator[DagsterInstance]:
    assert isinstance(shipped_instance.run_launcher, WatchedRunLauncher)
    yield shipped_instance
    for run_id in list(RunHeartbeat._running):
        heartbeat = RunHeartbeat.running(run_id)
        if heartbeat is not None:
            heartbeat.stop()


def starting_run(instance: DagsterInstance) -> DagsterRun:
    run = create_run_for_test(instance, job_name="document_pipeline")
    store_run_event(instance, run, DagsterEventType.RUN_STARTING, os.getpid())
    return run


def worker_of(run: DagsterRun) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", SAYS_IT_EXISTS, run.run_id], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "exists":
        process.kill()
        raise AssertionError(process.communicate()[1])
    return process


def status_of(instance: DagsterInstance, run: DagsterRun) -> DagsterRunStatus:
    current = instance.get_run_by_id(run.run_id)
    assert current is not None
    return current.status


def test_a_run_whose_process_died_while_it_started_is_failed_at_the_next_tick(
        instance: DagsterInstance) -> None:
    cut_off, alive, unrecorded = (starting_run(instance) for _ in range(3))
    dies, lives = worker_of(cut_off), worker_of(alive)
    try:
        dies.send_signal(signal.SIGKILL)
        dies.communicate()
        result = starting_runs_sensor(build_sensor_context(instance=instance))
        assert isinstance(result, SkipReason)
        assert cut_off.run_id in (result.skip_message or "")
        assert status_of(instance, cut_off) == DagsterRunStatus.FAILURE
        assert status_of(instance, alive) == DagsterRunStatus.STARTING
        assert status_of(instance, unrecorded) == DagsterRunStatus.STARTING
        (failure,) = instance.all_logs(cut_off.run_id, of_type=DagsterEventType.RUN_FAILURE)
        message = failure.dagster_event.message if failure.dagster_event else ""
        assert f"its process is gone (pid {dies.pid} on" in (message or "")
        assert "while the run was starting" in (message or "")
        # Failed once: the next tick finds nothing more to do.
        assert fail_runs_gone_while_starting(instance, instance.run_launcher) == []
    finally:
        lives.kill()
        lives.communicate()


def test_a_run_that_went_on_to_start_is_left_to_run_monitoring(
        instance: DagsterInstance) -> None:
    run = starting_run(instance)
    process = worker_of(run)
    store_run_event(instance, run, DagsterEventType.RUN_START, process.pid)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert fail_runs_gone_while_starting(instance, instance.run_launcher) == []
    assert status_of(instance, run) == DagsterRunStatus.STARTED
