"""How `doc-runs process` starts its runs, watches them and lets go of them.

- The code server and run workers it starts write their own output (Dagster's console log,
  tracebacks) to a log file under $DAGSTER_HOME/logs, not over the progress bars or the
  table; the command says where when a run failed. The runs' event logs keep everything.
- Progress shows from the first launch on.
- Interrupted (Ctrl-C, SIGTERM, its terminal closed), it cancels the runs it started that
  have not finished and frees their pool slots, so nothing waits on a run nobody runs; it
  exits 130 and says how to go on."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from doc_runs.cli.progress import ProgressView

# The statuses the run queue counts against `max_concurrent_runs` (Dagster's own in-progress
# list, which it does not export).
RUNS_IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
                    DagsterRunStatus.CANCELING, DagsterRunStatus.SUSPENDED]
AUTO_MAX_BATCH = 500
AUTO_MIN_BATCH = 50
_QUALIFIED_NAME = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Z]\w*:)")
# How long canceled runs get to end by themselves before they are marked canceled.
CANCEL_GRACE_S = 15.0
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class Interrupted(BaseException):
    """Raised by a signal handler where the command was; _received says which signal. Not an
    Exception, as KeyboardInterrupt is not: code that turns any error into a message of its
    own (a setting's, a storage's) must not turn an interrupt into one."""


# The last signal interrupts_raised turned into Interrupted: a signal that also killed the
# code server can surface as that server's error instead, and still means "interrupted".
_received: list[str] = []


def raise_if_interrupted() -> None:
    """Raises Interrupted if a signal came: the handler's own raise is lost where Python
    swallows exceptions (a weakref callback, a finalizer), so loops check here too."""
    if _received:
        raise Interrupted(_received[-1])


@contextmanager
def interrupts_raised() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise Interrupted instead of ending the process midway."""
    def handler(number: int, _frame: FrameType | None) -> None:
        _received.append(signal.Signals(number).name)
        raise Interrupted(signal.Signals(number).name)

    def unraisable(info: Any) -> None:
        # Raised where Python can only print it (a weakref callback): raise_if_interrupted
        # acts on it at the next check instead, so it is not printed as an error.
        if not isinstance(info.exc_value, Interrupted):
            previous_hook(info)

    previous = {number: signal.signal(number, handler)
                for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    _received.clear()
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for number, old in previous.items():
            signal.signal(number, old)


@contextmanager
def children_output_to(log_path: Path) -> Iterator[TextIO]:
    """Processes started inside (they inherit descriptors 1 and 2) write to `log_path`;
    yields a stream on the command's own stderr for what the user should see meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved_out, saved_err = os.dup(1), os.dup(2)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    own = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8",
                    errors="backslashreplace")
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield own
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        own.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)


def run_states(instance: DagsterInstance, run_ids: list[str]) -> dict[str, DagsterRunStatus]:
    states = {}
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        states[run_id] = run.status if run else DagsterRunStatus.FAILURE
    return states


def launch_and_wait(
    instance: DagsterInstance,
    batches: list[list[str]],
    launch: Callable[[list[str]], str],
    view: ProgressView | None,
    max_in_flight: int,
    launched: list[str],
    poll_s: float = 0.5,
) -> tuple[dict[str, str], dict[str, DagsterRunStatus]]:
    """Launches a run per batch, at most `max_in_flight` of them unfinished at once and never
    more than the instance's run limit leaves room for, the next as soon as one finishes
    (so launching overlaps execution); shows progress from the first launch on; returns
    each document's run and each run's final status. On an interrupt, cancels the
    unfinished runs and raises RunsCanceled. `launched` gets each run id as it starts, so
    the caller knows them whatever happens."""
    run_of: dict[str, str] = {}
    waiting = list(batches)
    try:
        while True:
            raise_if_interrupted()
            states = run_states(instance, launched)
            unfinished = sum(1 for state in states.values() if state not in FINISHED)
            if waiting and unfinished < min(max_in_flight,
                                            room_for_runs(instance, unfinished)):
                batch = waiting.pop(0)
                run_id = launch(batch)
                launched.append(run_id)
                run_of.update(dict.fromkeys(batch, run_id))
                if view is not None:
                    view.counts.add_run(run_id)
                continue
            if view is not None:
                view.update(len(states) - unfinished)
            if not waiting and unfinished == 0:
                return run_of, states
            time.sleep(poll_s)
    except BaseException as stopped:
        _cancel_for(instance, launched, stopped)


def room_for_runs(instance: DagsterInstance, ours_unfinished: int) -> int:
    """How many runs of ours may be unfinished at once: the instance's `max_concurrent_runs`
    less the runs others have in progress (at least one, so the command always moves)."""
    limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    if limit < 0:  # -1: no limit
        return 1 << 30
    others = instance.get_runs_count(RunsFilter(statuses=RUNS_IN_PROGRESS))
    return max(limit - max(others - ours_unfinished, 0), 1)


def plan_batches(document_count: int, max_batch: int | None, in_flight: int) -> int:
    """Documents per run. Given (`--batch-size`), that. Otherwise as few runs as keep every
    core busy: a multiple of the runs in flight, none over AUTO_MAX_BATCH documents (a run's
    start-up is paid once per batch; a step retried on a transient error redoes its batch)
    and none under AUTO_MIN_BATCH unless there are fewer documents."""
    if max_batch is not None:
        return max_batch
    waves = -(-document_count // (in_flight * AUTO_MAX_BATCH))
    # Below AUTO_MIN_BATCH documents a second run's start-up costs more than it saves.
    return max(-(-document_count // (in_flight * waves)), min(document_count, AUTO_MIN_BATCH),
               1)


def wait_or_cancel(instance: DagsterInstance, run_ids: list[str], poll_s: float = 0.5,
                   command: str = "doc-runs process",
                   on_poll: Callable[[dict[str, DagsterRunStatus]], None] | None = None,
                   ) -> dict[str, DagsterRunStatus]:
    """Waits for the runs to finish; on an interrupt, cancels those that have not and raises
    RunsCanceled. `on_poll` sees the states at each look."""
    try:
        while True:
            raise_if_interrupted()
            states = run_states(instance, run_ids)
            if all(state in FINISHED for state in states.values()):
                return states
            if on_poll is not None:
                on_poll(states)
            time.sleep(poll_s)
    except BaseException as stopped:
        _cancel_for(instance, run_ids, stopped, command)


def _cancel_for(instance: DagsterInstance, run_ids: list[str], stopped: BaseException,
                command: str = "doc-runs process") -> NoReturn:
    """Cancels the unfinished runs whatever stopped the command (a signal, or an error such
    as its code server dying with the terminal): a run left STARTED with no worker would
    hold its slots for good. Then raises RunsCanceled for an interrupt, else the error."""
    why = _received[-1] if _received else None
    canceled = cancel_unfinished(
        instance, run_ids, f"{command} stopped ({why or type(stopped).__name__})")
    if why:
        raise RunsCanceled(why, canceled) from stopped
    raise stopped


class RunsCanceled(Exception):
    def __init__(self, signal_name: str, run_ids: list[str]) -> None:
        super().__init__(signal_name)
        self.signal_name, self.run_ids = signal_name, run_ids


def cancel_unfinished(instance: DagsterInstance, run_ids: list[str], why: str) -> list[str]:
    """Marks each unfinished run canceled (after asking its launcher to stop it) and frees
    the concurrency slots it held: a run whose worker died with the command would otherwise
    stay STARTED and hold its `llm` pool slots for good."""
    canceled = [run_id for run_id, state in run_states(instance, run_ids).items()
                 if state not in FINISHED]
    asked = []
    for run_id in canceled:
        # Its code server may have died with the terminal: then marking it is all we can do.
        with contextlib.suppress(Exception):
            if instance.run_launcher.terminate(run_id):
                asked.append(run_id)
    # A run asked to stop ends itself CANCELED within seconds (its stage stops its PDF
    # workers); marked canceled before that, its worker would then record it FAILED.
    deadline = time.monotonic() + CANCEL_GRACE_S
    while asked and time.monotonic() < deadline and any(
            state not in FINISHED for state in run_states(instance, asked).values()):
        time.sleep(0.25)
    for run_id in canceled:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in FINISHED:
            instance.report_run_canceled(run, message=why)
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return canceled


def failure_message(instance: DagsterInstance, run_id: str) -> str | None:
    """Why a run failed, in one line: its first failed step with the innermost cause (not
    "Exceeded max_retries"), else the run's own failure (a killed worker)."""
    for event in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        failure = event.dagster_event.step_failure_data  # type: ignore[union-attr]
        if failure is not None and failure.error is not None:
            message, cause = failure.error.message.strip(), failure.error
            while cause.cause is not None:
                cause = cause.cause
            inner = cause.message.strip()
            if inner and inner not in message:
                message = f"{message}: {inner}"
            # `doc_runs.core.agent.protocol.ModelUnavailable:` reads as `ModelUnavailable:`.
            message = _QUALIFIED_NAME.sub(r"\1", message)
            return f"{event.dagster_event.step_key}: {message}"  # type: ignore[union-attr]
    for event in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        if event.dagster_event is not None and event.dagster_event.message:
            return event.dagster_event.message.strip()
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status is DagsterRunStatus.CANCELED:
        return "the run was canceled"
    return None


def child_log_path(instance: DagsterInstance) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(instance.root_directory) / "logs" / f"process-{stamp}-{os.getpid()}.log"


def tidy_child_log(path: Path) -> Path | None:
    """The log file if the children wrote anything, else nothing left behind."""
    try:
        if path.stat().st_size == 0:
            path.unlink()
            return None
    except FileNotFoundError:
        return None
    return path
