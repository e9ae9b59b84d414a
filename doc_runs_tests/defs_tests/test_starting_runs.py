"""A run cut off while it started is failed by the sensor at its next tick, saying why, instead
of holding a run slot until the start timeout: its process SIGKILLed after its first event, or
the process that launched it gone with no run process recorded in LAUNCH_GRACE_S. A run whose
process or launcher lives, and one launched a moment ago, are left alone. On both shipped
instance files, with real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
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

import doc_runs.defs.run_launcher as run_launcher
from doc_runs.core.run_workers import WorkerIdentity
from doc_runs.defs.run_heartbeat import RunHeartbeat
from doc_runs.defs.run_launcher import WatchedRunLauncher
from doc_runs.defs.starting_runs import fail_runs_gone_while_starting, starting_runs_sensor
from doc_runs.defs.tags import LAUNCHED_BY_TAG
from doc_runs_tests.helpers import store_run_event

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


def starting_run(instance: DagsterInstance, launched_s_ago: float = 0.0,
                 launcher: WorkerIdentity | None = None) -> DagsterRun:
    run = create_run_for_test(instance, job_name="document_pipeline")
    if launcher is not None:  # as WatchedRunLauncher.launch_run tags it
        instance.add_run_tags(run.run_id, {LAUNCHED_BY_TAG: json.dumps(
            {"run_id": run.run_id, **asdict(launcher)})})
    store_run_event(instance, run, DagsterEventType.RUN_STARTING, os.getpid(), launched_s_ago)
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTING
    return current


def a_process(dead: bool) -> WorkerIdentity:
    """The identity of a real process: one still sleeping, or one that ended."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    identity = WorkerIdentity.of_process(process.pid)
    if dead:
        process.kill()
        process.wait()
    return identity


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


def test_a_launch_cut_off_with_its_launcher_is_failed_once_its_grace_has_passed(
        instance: DagsterInstance) -> None:
    launcher_gone, launcher_alive = a_process(dead=True), a_process(dead=False)
    try:
        cut_off = starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5, launcher_gone)
        just_launched = starting_run(instance, 1, launcher_gone)
        being_launched = starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5,
                                      launcher_alive)
        untagged = starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5)
        failed = fail_runs_gone_while_starting(instance, instance.run_launcher)
        assert [f.run_id for f in failed] == [cut_off.run_id]
        assert failed[0].reason.startswith(
            f"its launch was cut off (pid {launcher_gone.pid} on")
        assert status_of(instance, cut_off) == DagsterRunStatus.FAILURE
        for left in (just_launched, being_launched, untagged):
            assert status_of(instance, left) == DagsterRunStatus.STARTING
    finally:
        os.kill(launcher_alive.pid, signal.SIGKILL)


def test_a_run_whose_process_recorded_itself_is_judged_by_that_process_not_its_launcher(
        instance: DagsterInstance) -> None:
    # Launched by a process since gone (the daemon restarted), its own process alive.
    run = starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5, a_process(dead=True))
    process = worker_of(run)
    try:
        assert fail_runs_gone_while_starting(instance, instance.run_launcher) == []
        assert status_of(instance, run) == DagsterRunStatus.STARTING
    finally:
        process.kill()
        process.communicate()


def test_the_launcher_tags_the_run_with_its_process_before_the_code_server_starts_it(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import DefaultRunLauncher
    from dagster._core.launcher import LaunchRunContext

    seen: list[str | None] = []

    def code_server_starts(self, context):  # what DefaultRunLauncher would do next
        current = instance.get_run_by_id(context.dagster_run.run_id)
        seen.append(current.tags.get(LAUNCHED_BY_TAG) if current else None)

    monkeypatch.setattr(DefaultRunLauncher, "launch_run", code_server_starts)
    run = create_run_for_test(instance, job_name="document_pipeline")
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert seen and seen[0] is not None
    tagged = json.loads(seen[0])
    assert tagged.pop("run_id") == run.run_id
    assert WorkerIdentity(**tagged) == WorkerIdentity.of_process()


def test_a_launcher_tag_copied_from_the_run_it_retries_is_not_taken_for_its_own(
        instance: DagsterInstance) -> None:
    run = starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5)
    parent = json.dumps({"run_id": "the-parent-run", **asdict(a_process(dead=True))})
    instance.add_run_tags(run.run_id, {LAUNCHED_BY_TAG: parent})
    assert fail_runs_gone_while_starting(instance, instance.run_launcher) == []
    assert status_of(instance, run) == DagsterRunStatus.STARTING


def test_a_launch_sent_to_a_code_server_is_failed_only_once_that_server_is_gone(
        instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.storage.tags import GRPC_INFO_TAG

    # Where a code server listened: the socket file stays, nothing answers on it.
    gone_socket = tmp_path / "code-server.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(gone_socket))
    listener.close()
    runs = [starting_run(instance, run_launcher.LAUNCH_GRACE_S + 5, a_process(dead=True))
            for _ in range(3)]
    for run in runs:
        instance.add_run_tags(run.run_id, {GRPC_INFO_TAG: json.dumps(
            {"host": "localhost", "socket": str(gone_socket)})})
    sent_to_gone, still_spawning, no_answer = runs
    # The code server's answer for the other two: it has the run's process in hand, or its
    # answer did not come (too slow): either way not judged.
    answers = {still_spawning.run_id: True, no_answer.run_id: None}
    original = WatchedRunLauncher._code_server_starting
    monkeypatch.setattr(WatchedRunLauncher, "_code_server_starting",
                        lambda self, run: answers[run.run_id] if run.run_id in answers
                        else original(self, run))
    failed = fail_runs_gone_while_starting(instance, instance.run_launcher)
    assert [f.run_id for f in failed] == [sent_to_gone.run_id]
    assert status_of(instance, still_spawning) == DagsterRunStatus.STARTING
    assert status_of(instance, no_answer) == DagsterRunStatus.STARTING
