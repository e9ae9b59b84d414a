"""Start runs the way the UI and the daemon do: against the code location, so that every run
carries its code location's origin and an operator can re-execute it from the UI.

(A run executed in-process by its caller has no such origin: the UI shows it but cannot
re-execute it.) This uses Dagster's workspace API, which the `dagster job launch` command
uses too; it is not covered by Dagster's public API guarantees, hence pinned versions.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import ModuleTarget

from doc_runs.defs.jobs import DOCUMENT_JOB
from doc_runs.defs.tags import BATCH_TAG

CODE_LOCATION = "doc_runs"
DEFINITIONS_MODULE = "doc_runs.definitions"
# How long a code server may take to end after its command left the workspace.
CODE_SERVER_GRACE_S = 20.0


@contextmanager
def code_location_workspace(
    instance: DagsterInstance, working_directory: str | Path
) -> Iterator[WorkspaceRequestContext]:
    """The doc_runs code location, loaded in a code server as `dagster dev` loads it
    (same module, same location name), so its runs are the UI's runs."""
    target = ModuleTarget(
        module_name=DEFINITIONS_MODULE,
        attribute=None,
        working_directory=str(working_directory),
        location_name=CODE_LOCATION,
    )
    earlier = {child.pid for child in psutil.Process().children()}
    try:
        with WorkspaceProcessContext(
            instance=instance,
            version="",
            read_only=False,
            workspace_load_target=target,
            code_server_log_level="WARNING",
        ) as process_context:
            workspace = process_context.create_request_context()
            location = workspace.get_code_location_error(CODE_LOCATION)
            if location is not None:
                raise RuntimeError(f"code location {CODE_LOCATION} failed to load: {location}")
            yield workspace
    finally:
        end_code_servers(earlier)


def end_code_servers(earlier: set[int], grace_s: float = CODE_SERVER_GRACE_S) -> None:
    """Makes sure the code servers this process started end with it, without making the
    command wait for them: leaving the workspace asks them to shut down, which takes them
    about two seconds, and a detached reaper (doc_runs.defs.code_server_reaper) stops any
    still there after `grace_s` (one that would otherwise outlive the command forever)."""
    servers = [child for child in psutil.Process().children()
               if child.pid not in earlier and _is_code_server(child)]
    named = []
    for server in servers:
        try:
            named.append(f"{server.pid}:{server.create_time()}")
        except psutil.Error:
            continue  # ended already
    if not named:
        return
    subprocess.Popen([sys.executable, "-m", "doc_runs.defs.code_server_reaper", str(grace_s),
                      *named], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _is_code_server(process: psutil.Process) -> bool:
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    return "api" in command and "grpc" in command


@contextmanager
def code_location_workspace_started(
    instance: DagsterInstance, working_directory: str | Path
) -> Iterator[Callable[[], WorkspaceRequestContext]]:
    """`code_location_workspace`, started in a thread: the code server spends seconds on its
    imports in a process of its own, which the caller can spend storing its inputs. Yields a
    function that waits for the workspace (and raises what starting it raised)."""
    stack = ExitStack()
    started: dict[str, WorkspaceRequestContext] = {}
    failed: list[BaseException] = []

    def start() -> None:
        try:
            started["workspace"] = stack.enter_context(
                code_location_workspace(instance, working_directory))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=start, name="code-server-start", daemon=True)
    thread.start()

    def ready() -> WorkspaceRequestContext:
        thread.join()
        if failed:
            raise failed[0]
        return started["workspace"]

    try:
        yield ready
    finally:
        try:
            thread.join()
        finally:
            stack.close()


def launch_job_run(
    instance: DagsterInstance,
    workspace: WorkspaceRequestContext,
    job_name: str,
    tags: Mapping[str, str],
    console_log_level: str = "WARNING",
) -> DagsterRun:
    """Creates the run and launches it at once, in a process of its own: the command works
    without a running daemon."""
    run = create_job_run(instance, workspace, job_name, tags, console_log_level)
    try:
        return instance.launch_run(run.run_id, workspace)
    except BaseException:
        # Not left NOT_STARTED for good (an interrupt, a code server gone).
        instance.report_run_canceled(run, message="the run could not be launched")
        raise


def create_job_run(
    instance: DagsterInstance,
    workspace: WorkspaceRequestContext,
    job_name: str,
    tags: Mapping[str, str],
    console_log_level: str = "WARNING",
) -> DagsterRun:
    """A run of the job as the UI creates one (not yet launched or queued)."""
    location = workspace.get_code_location(CODE_LOCATION)
    (repository,) = location.get_repositories().values()
    remote_job = repository.get_full_job(job_name)
    # The run's own event log keeps every event; only the terminal echo is quieter.
    run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    )
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    return run


class NotReexecutable(Exception):
    """The run cannot be re-executed; the message says why and what to do instead."""


# Runs that ended without finishing every step: what re-execution is for.
REEXECUTABLE = frozenset({DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED})


def reexecutable_run(instance: DagsterInstance, run_id: str) -> DagsterRun:
    """The run `run_id`, if an operator may re-execute it; else NotReexecutable saying why."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise NotReexecutable(f"no run {run_id} in this Dagster instance "
                              f"({instance.root_directory})")
    if run.status == DagsterRunStatus.SUCCESS:
        raise NotReexecutable(f"run {run_id} succeeded: there is nothing to re-execute "
                              "(to run its documents again, start a new run)")
    if run.status not in REEXECUTABLE:
        raise NotReexecutable(f"run {run_id} is {run.status.value}, not failed: wait for it to "
                              "end (or terminate it) before re-executing it")
    going = unfinished_reexecutions(instance, run_id)
    if going:
        raise NotReexecutable(
            f"run {run_id} is being re-executed already by run {going[0].run_id} "
            f"({going[0].status.value}; a run retry or an earlier re-execution): wait for it, "
            "or terminate it first, so that no document is worked twice at once")
    origin = run.remote_job_origin
    if origin is None:
        raise NotReexecutable(f"run {run_id} was executed in-process by its caller and has no "
                              "code location to re-execute it from")
    if run.job_name == DOCUMENT_JOB and BATCH_TAG not in run.tags:
        raise NotReexecutable(
            f"run {run_id} was made before runs had batches (its partitions were documents), "
            "so today's job cannot re-execute it: run its documents again with `doc-runs "
            "rerun DOCUMENT_ID` (`doc-runs status` lists a document's runs), or let the "
            "nightly schedule take the unfinished ones")
    location_name = origin.repository_origin.code_location_origin.location_name
    if location_name != CODE_LOCATION:
        raise NotReexecutable(f"run {run_id} belongs to code location {location_name!r}, not "
                              f"{CODE_LOCATION!r}")
    return run


def unfinished_reexecutions(instance: DagsterInstance, run_id: str) -> list[DagsterRun]:
    """Re-executions of run `run_id` (the daemon's run retries included) that have not
    ended."""
    children = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id}))
    return [child for child in children if child.status not in FINISHED_STATUSES]


FINISHED_STATUSES = frozenset({DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                               DagsterRunStatus.CANCELED})


def create_reexecution(instance: DagsterInstance, workspace: WorkspaceRequestContext,
                       parent: DagsterRun, *, all_steps: bool) -> DagsterRun:
    """The re-execution of `parent` as the UI's "Re-execute" menu creates it: from the same
    code location, with the parent's tags (its documents' partition range among them), from
    failure (only the failed and unfinished steps) or all steps. Not yet launched."""
    origin = parent.remote_job_origin
    assert origin is not None  # reexecutable_run checked
    location = workspace.get_code_location(CODE_LOCATION)
    remote_job = location.get_job(JobSubsetSelector(
        location_name=CODE_LOCATION,
        repository_name=origin.repository_origin.repository_name,
        job_name=parent.job_name,
        op_selection=None,
        asset_selection=parent.asset_selection,
        asset_check_selection=parent.asset_check_selection,
    ))
    strategy = ReexecutionStrategy.ALL_STEPS if all_steps else ReexecutionStrategy.FROM_FAILURE
    return instance.create_reexecuted_run(
        request_context=workspace, parent_run=parent, code_location=location,
        remote_job=remote_job, strategy=strategy, use_parent_run_tags=True)
