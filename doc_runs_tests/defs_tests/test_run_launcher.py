"""The run launcher's answer to run monitoring, on a real instance and catalog (SQLite and
PostgreSQL): a run whose recorded process is gone, whose host restarted, whose heartbeats
stopped or that never recorded itself is failed with a reason; a live one, one still starting
and one that cannot be checked are left alone. And the worker's side: a run records its own
process and beats."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    asset,
    in_process_executor,
    job,
    materialize,
    op,
)
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.launcher import WorkerStatus

from doc_runs.core.catalog import CatalogUnavailable, DocumentCatalog
from doc_runs.core.run_workers import (
    KEEP_ROWS_S,
    RunWorker,
    RunWorkers,
    WorkerIdentity,
    process_is_alive,
)
from doc_runs.defs.resources import CatalogResource
from doc_runs.defs.run_heartbeat import RunHeartbeat
from doc_runs.defs.run_launcher import WatchedRunLauncher
from doc_runs_tests.conftest import fresh_database

LAUNCHER = """
run_launcher:
  module: doc_runs.defs.run_launcher
  class: WatchedRunLauncher
  config:
    silent_after_seconds: 1
run_monitoring:
  enabled: true
  poll_interval_seconds: 1
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def instance(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("DOC_RUNS_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        (home / "dagster.yaml").write_text(LAUNCHER)
        with DagsterInstance.get() as opened:
            yield opened
        return
    server = request.getfixturevalue("postgres_server_url")
    with fresh_database(server) as url:
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", url.replace(
            "postgresql://", "postgresql+psycopg2://", 1))
        (home / "dagster.yaml").write_text(
            "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_POSTGRES_URL\n"
            + LAUNCHER)
        with DagsterInstance.get() as opened:
            yield opened


def catalog_of(instance: DagsterInstance) -> DocumentCatalog:
    from doc_runs.defs.resources import instance_catalog_url

    return DocumentCatalog(instance_catalog_url(instance))


@op
def nothing() -> None:
    pass


@job
def placeholder() -> None:
    nothing()


SEEN: dict[str, RunWorker | None] = {}


@asset
def slow_asset(context, catalog: CatalogResource) -> None:
    time.sleep(1.0)
    SEEN["worker"] = RunWorkers(catalog.catalog()).of(context.run.run_id)


def a_run(instance: DagsterInstance, started_s_ago: float = 0.0,
          pid: int | None = None) -> DagsterRun:
    """A run in STARTED, as run monitoring finds it, whose start (written by process `pid`,
    this one by default) was `started_s_ago`."""
    run = instance.create_run_for_job(placeholder)
    event = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name,
                         pid=os.getpid() if pid is None else pid)
    instance.handle_new_event(EventLogEntry(
        error_info=None, level=20, user_message="", run_id=run.run_id,
        timestamp=time.time() - started_s_ago, dagster_event=event))
    current = instance.get_run_by_id(run.run_id)
    assert current is not None and current.status == DagsterRunStatus.STARTED
    return current


def ended_process() -> WorkerIdentity:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = WorkerIdentity.of_process(child.pid)
    child.wait()
    return identity


def launcher_of(instance: DagsterInstance) -> WatchedRunLauncher:
    launcher = instance.run_launcher
    assert isinstance(launcher, WatchedRunLauncher)
    return launcher


@pytest.mark.processes
def test_a_live_worker_is_running_and_a_gone_one_fails_its_run_and_frees_its_pool_slots(
        instance: DagsterInstance) -> None:
    launcher = launcher_of(instance)
    with catalog_of(instance) as catalog:
        live, dead = a_run(instance), a_run(instance)
        RunWorkers(catalog).started(live.run_id, WorkerIdentity.of_process())
        gone = ended_process()
        RunWorkers(catalog).started(dead.run_id, gone)
    storage = instance.event_log_storage
    storage.set_concurrency_slots("llm", 2)
    for run in (live, dead):
        assert storage.claim_concurrency_slot("llm", run.run_id, "document_findings").is_claimed
    assert launcher.check_run_worker_health(live).status == WorkerStatus.RUNNING
    result = launcher.check_run_worker_health(dead)
    assert result.status == WorkerStatus.FAILED
    assert result.msg == f"its process is gone (pid {gone.pid} on {gone.host} no longer runs)"
    # The dead run's slot is free for its retry at once; the live run keeps its own.
    claimed = storage.get_concurrency_info("llm").claimed_slots
    assert [slot.run_id for slot in claimed] == [live.run_id]


def test_a_reused_pid_is_not_taken_for_the_worker(instance: DagsterInstance) -> None:
    run = a_run(instance)
    here = WorkerIdentity.of_process()
    with catalog_of(instance) as catalog:
        RunWorkers(catalog).started(run.run_id, replace(
            here, process_started=here.process_started - 3600))
    assert launcher_of(instance).check_run_worker_health(run).status == WorkerStatus.FAILED


def test_a_worker_whose_last_beat_came_before_the_host_restarted_is_gone(
        instance: DagsterInstance) -> None:
    run = a_run(instance)
    earlier = replace(WorkerIdentity.of_process(), boot_id="an-earlier-boot")
    with catalog_of(instance) as catalog:
        RunWorkers(catalog).started(run.run_id, earlier, at=psutil.boot_time() - 3600)
    result = launcher_of(instance).check_run_worker_health(run)
    assert result.status == WorkerStatus.FAILED
    assert "host restarted" in (result.msg or "")


# Another host, or a machine of the same name (a clone: another boot, beating now); either
# with a clock an hour ahead of ours: its beat times are not compared with ours.
@pytest.mark.parametrize("elsewhere", [{"host": "worker-7.internal"},
                                       {"boot_id": "the-clone's-boot"}])
def test_a_worker_elsewhere_is_judged_by_its_heartbeats_on_the_watchers_clock(
        instance: DagsterInstance, elsewhere: dict[str, str]) -> None:
    launcher = launcher_of(instance)
    run = a_run(instance)
    worker = replace(WorkerIdentity.of_process(), pid=1, **elsewhere)
    with catalog_of(instance) as catalog:
        workers = RunWorkers(catalog)
        workers.started(run.run_id, worker, at=time.time() + 3600)
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        for _ in range(3):  # beating: alive however long it runs
            time.sleep(0.6)
            assert workers.beat(run.run_id, at=time.time() + 3600)
            assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        for _ in range(3):  # silent longer than silent_after_seconds, checked meanwhile
            time.sleep(0.45)
            result = launcher.check_run_worker_health(run)
    assert result.status == WorkerStatus.FAILED
    assert result.msg is not None and "sent no heartbeat" in result.msg


def test_silence_while_the_watcher_could_not_look_does_not_count(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = launcher_of(instance)
    run = a_run(instance)
    elsewhere = replace(WorkerIdentity.of_process(), host="worker-7.internal", pid=1)
    with catalog_of(instance) as catalog:
        RunWorkers(catalog).started(run.run_id, elsewhere)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    with monkeypatch.context() as outage:
        outage.setattr(launcher, "_catalog_of_instance", _database_away)
        for _ in range(3):  # the catalog away for longer than silent_after_seconds
            assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
            time.sleep(0.5)
    # Back, before the worker's next beat: not taken for silence.
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    # Nor after a pause in the watcher's own checks (a stalled daemon).
    time.sleep(2.2)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING


def _database_away() -> DocumentCatalog:
    raise CatalogUnavailable("the catalog database did not answer")


def test_a_run_without_a_recorded_process_is_not_judged(instance: DagsterInstance) -> None:
    # From before this release, or one whose steps each ran in a process of their own.
    run = a_run(instance, started_s_ago=24 * 3600)
    result = launcher_of(instance).check_run_worker_health(run)
    assert result.status == WorkerStatus.RUNNING
    assert result.msg == "its process is not recorded"


def test_a_stepped_wall_clock_leaves_a_live_worker_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    here = WorkerIdentity.of_process()
    # As psutil sees it after the clock stepped an hour: every start time moves with it.
    shifted = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: shifted(self) + 3600)
    monkeypatch.setattr(psutil, "boot_time", lambda: time.time() + 3600)
    assert process_is_alive(here)
    assert WorkerIdentity.of_process() == here


def test_a_catalog_that_does_not_answer_fails_no_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DOC_RUNS_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    (home / "dagster.yaml").write_text(LAUNCHER)
    with DagsterInstance.get() as instance:
        run = a_run(instance, started_s_ago=3600)
        result = launcher_of(instance).check_run_worker_health(run)
    assert result.status == WorkerStatus.RUNNING
    assert (result.msg or "").startswith("not checked")


def test_rows_older_than_a_week_are_dropped_when_a_run_starts(tmp_path: Path) -> None:
    with DocumentCatalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        workers = RunWorkers(catalog)
        here = WorkerIdentity.of_process()
        workers.started("old-run", here, at=time.time() - KEEP_ROWS_S - 60)
        workers.started("new-run", here)
        assert workers.of("old-run") is None
        assert workers.of("new-run") is not None
        assert not workers.beat("old-run")


@pytest.mark.processes
def test_an_ended_or_zombie_process_is_not_alive() -> None:
    assert process_is_alive(WorkerIdentity.of_process())
    assert not process_is_alive(ended_process())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = WorkerIdentity.of_process(child.pid)
    deadline = time.monotonic() + 10
    while process_is_alive(identity) and time.monotonic() < deadline:
        time.sleep(0.05)  # exited, not yet waited for: a zombie
    assert not process_is_alive(identity)
    child.wait()


@pytest.mark.processes
def test_a_run_records_its_own_process_and_beats(
        instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    import doc_runs.defs.run_heartbeat as heartbeat

    monkeypatch.setattr(heartbeat, "BEAT_EVERY_S", 0.2)
    SEEN.clear()
    result = materialize([slow_asset], instance=instance,
                         resources={"catalog": CatalogResource()})
    assert result.success
    worker = SEEN["worker"]
    assert worker is not None
    assert worker.identity == WorkerIdentity.of_process()
    assert worker.beats >= 2
    assert worker.identity.pid == instance.all_logs(
        result.run_id, of_type=DagsterEventType.RUN_START)[0].dagster_event.pid


def test_a_process_running_one_step_of_a_run_does_not_record_itself(
        instance: DagsterInstance) -> None:
    # Under a step-per-process executor, a step's process comes and goes while the run goes on.
    run = a_run(instance, pid=os.getpid() + 1)
    with catalog_of(instance) as catalog:
        assert RunHeartbeat.in_run_process(catalog, instance, run.run_id) is None
        assert RunWorkers(catalog).of(run.run_id) is None


def test_every_run_of_the_code_location_runs_in_one_process() -> None:
    # Also what the UI's Materialize buttons launch: a run the launcher can tell is alive.
    from doc_runs_tests.batches import load_defs

    repository = load_defs().get_repository_def()
    for each in repository.get_all_jobs():
        assert each.executor_def is in_process_executor, each.name
