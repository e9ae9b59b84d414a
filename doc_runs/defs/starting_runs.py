"""Fails a run still STARTING whose process is gone, at once rather than at the start timeout.

Dagster's run monitoring judges a STARTING run only by the clock (the instance's
`run_monitoring.start_timeout_seconds`, 60 s here) and asks the launcher about its process
only once it reads STARTED. A run cut off while it started (its process, or the whole
deployment, killed in those seconds) meanwhile counts as active: it holds one of its tenant's
run slots and its documents wait. This sensor asks the launcher about each STARTING run
(doc_runs.defs.run_launcher): once the run's process has recorded itself (its first act,
run_worker_at_start.py), whether that process is still there; before that, whether the
process that launched it is, or the launch was cut off. A run found gone is failed saying
why, and the instance's run retries run it again. Runs launched where this process cannot
look (another container), or by another launcher, are left to the start timeout."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.launcher import WorkerStatus

from doc_runs.defs.run_launcher import WatchedRunLauncher
from doc_runs.logs import log_fact

# A run starts in a few seconds; more STARTING at once than this waits for the next tick.
_PAGE = 200


@dataclass(frozen=True)
class GoneWhileStarting:
    run_id: str
    reason: str


def fail_runs_gone_while_starting(instance: DagsterInstance,
                                  launcher: WatchedRunLauncher) -> list[GoneWhileStarting]:
    failed = []
    records = instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.STARTING]), limit=_PAGE, ascending=True)
    for record in records:
        launched_at = instance.get_run_stats(record.dagster_run.run_id).launch_time
        health = launcher.check_starting_run(record.dagster_run, launched_at)
        if health.status != WorkerStatus.FAILED:
            continue
        # Read again: a run that went on and ended meanwhile has a process gone too.
        run = instance.get_run_by_id(record.dagster_run.run_id)
        if run is None or run.status != DagsterRunStatus.STARTING:
            continue
        reason = f"{health.msg or 'its process is gone'}, while the run was starting"
        instance.report_run_failed(run, f"Run worker gone: {reason}. Marking run "
                                        f"{run.run_id} as failed.")
        failed.append(GoneWhileStarting(run.run_id, reason))
    return failed


@sensor(
    name="starting_runs_sensor",
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails a run still STARTING whose recorded process, or before that the "
                "process that launched it, is gone (killed while the run started), so its "
                "retry runs now instead of after the start timeout; with launchers that do "
                "not record run processes it does nothing.",
)
def starting_runs_sensor(context: SensorEvaluationContext) -> SkipReason:
    launcher = context.instance.run_launcher
    if not isinstance(launcher, WatchedRunLauncher):
        return SkipReason(f"the run launcher ({type(launcher).__name__}) does not record run "
                          "processes: Dagster's run monitoring watches its runs")
    failed = fail_runs_gone_while_starting(context.instance, launcher)
    for gone in failed:
        log_fact(f"run {gone.run_id} failed: {gone.reason}", stage="starting_runs",
                 outcome="failed", reason="run_worker_gone", run_id=gone.run_id)
    if failed:
        return SkipReason(f"failed {len(failed)} run(s) whose process was gone while they "
                          f"started: {', '.join(g.run_id for g in failed)}")
    return SkipReason("no STARTING run whose process is gone")
