"""Dagster's default run launcher (each run in a process of its code server), plus what it
lacks: telling Dagster's run monitoring whether a run's process still exists.

Without it, a run whose process died together with its code server (the host lost power, the
container was evicted, every process of `bin/up` killed) stays STARTED with nothing behind it
until its maximum runtime, holding its tenant's run slot and its pool slots, its documents
pending. With it, the daemon's run monitoring (every `run_monitoring.poll_interval_seconds`,
and as soon as the daemon starts again) fails such a run saying why; the instance's run
retries then run it again from its failed stage.

How a run's process is judged: doc_runs.core.run_workers (its pid where this process can see
it, else its heartbeats, which begin before its start event: run_worker_at_start.py). In
doubt (the catalog's database does not answer, or the run's own process recorded nothing) a
run is left alone: failing a live run would start a second copy of it beside the first.

A run still STARTING is asked about by doc_runs.defs.starting_runs instead (Dagster's run
monitoring only times those out). Before its process records itself, what is known is who
launched it: this launcher tags each run with the process that launches it (the daemon, the
webserver, a command) before asking the code server to start it, and that call returns only
once the run's process exists and is about to record itself. A launch whose launching process
is gone, whose run recorded no process within LAUNCH_GRACE_S, and whose code server does not
say it is starting the run (it does not answer, or has no such run) was cut off (everything
killed while it started). Asking the code server covers a launcher that died alone while a
code server that outlived it takes long to spawn the run's process."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Self

import psutil
from dagster import DagsterRun, DefaultRunLauncher, Field
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._serdes import ConfigurableClassData

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.run_workers import RunWorkers, WorkerIdentity, process_is_alive
from doc_runs.defs.tags import LAUNCHED_BY_TAG

log = logging.getLogger(__name__)

SILENT_AFTER_S = 90  # a worker this watcher cannot see: beats every 10 s (run_heartbeat.py)
BOOT_MARGIN_S = 60  # clocks of one host before and after a restart may differ a little
# A run's process, spawned by a code server that outlived the process that launched the run,
# records itself within seconds (2-5 s here); this allows for a loaded machine.
LAUNCH_GRACE_S = 20


class WatchedRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None,
                 silent_after_seconds: int = SILENT_AFTER_S) -> None:
        super().__init__(inst_data=inst_data)
        self.silent_after_s = silent_after_seconds
        self._catalog: DocumentCatalog | None = None
        # run id -> (the beats last seen, when they were first seen, when last checked), on
        # this process's monotonic clock
        self._last_beats: dict[str, tuple[int, float, float]] = {}

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "silent_after_seconds": Field(
                int, is_required=False, default_value=SILENT_AFTER_S,
                description="A run whose process runs where this one cannot see it (another "
                "host or container) is failed once its heartbeats stop for this long, "
                "counted while run monitoring watches."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        run_id = context.dagster_run.run_id
        # With its run id: a retry copies its parent's tags, this one included.
        launcher = {"run_id": run_id, **dataclasses.asdict(WorkerIdentity.of_process())}
        try:
            self._instance.add_run_tags(run_id, {LAUNCHED_BY_TAG: json.dumps(launcher)})
        except Exception as failed:  # not worth a failed launch: the start timeout remains
            log.warning("run %s: its launcher is not recorded (%s)", run_id, failed)
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_starting_run(self, run: DagsterRun, launched_at: float | None
                           ) -> CheckRunHealthResult:
        """For a run still STARTING: its process, once recorded (as for a STARTED run); until
        then, the process that launched it."""
        try:
            workers = RunWorkers(self._catalog_of_instance())
            if workers.of(run.run_id) is not None:
                return self.check_run_worker_health(run)
            result = self._judge_launch(run, launched_at)
            if result.status == WorkerStatus.FAILED and workers.of(run.run_id) is not None:
                # Its process recorded itself while the launch was judged: judged by that.
                return self.check_run_worker_health(run)
            return result
        except Exception as failed:  # not known: not failed
            log.warning("run %s: its launch could not be checked (%s)", run.run_id, failed)
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"not checked: {failed}")

    def _judge_launch(self, run: DagsterRun, launched_at: float | None
                      ) -> CheckRunHealthResult:
        launcher = launched_by(run)
        if launcher is None or launched_at is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its launch is not recorded")
        here = WorkerIdentity.of_process()
        if here.same_machine_view(launcher):
            if process_is_alive(launcher):
                return CheckRunHealthResult(WorkerStatus.RUNNING, "being launched")
        elif not (launcher.host == here.host and launcher.boot_id != here.boot_id):
            # Launched from where this process cannot look (another container): its start
            # timeout applies.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "launched elsewhere")
        waited = time.time() - launched_at
        if waited < LAUNCH_GRACE_S:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "being launched")
        if self._code_server_starting(run) is not False:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its code server is starting it")
        return _gone(f"its launch was cut off ({launcher.describe()}, which launched it, no "
                     f"longer runs, and no run process recorded itself in {waited:.0f} s)")

    def _code_server_starting(self, run: DagsterRun) -> bool | None:
        """Whether the code server the run was sent to has its process in hand; False when
        it was never sent to one or that server does not answer at all; None when not known
        (an answer too slow, an error of another kind)."""
        import grpc
        from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
        from dagster._serdes import deserialize_value

        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return False
        try:
            answer = client.can_cancel_execution(
                CanCancelExecutionRequest(run_id=run.run_id), timeout=10)
        except Exception as failed:
            cause = failed.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAVAILABLE:
                return False  # nothing listens where it was: that code server is gone
            log.warning("run %s: its code server did not say whether it starts it (%s)",
                        run.run_id, failed)
            return None
        return deserialize_value(answer, CanCancelExecutionResult).can_cancel

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        try:
            result = self._judge(run)
        except Exception as failed:  # not known: not failed
            log.warning("run %s: its process could not be checked (%s)", run.run_id, failed)
            self._last_beats.pop(run.run_id, None)
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"not checked: {failed}")
        if result.status == WorkerStatus.FAILED:
            self._free_pool_slots(run.run_id)
        return result

    def _free_pool_slots(self, run_id: str) -> None:
        """The pool slots a gone run held, freed now: run monitoring frees them only a while
        after the run ends (free_slots_after_run_end_seconds), while its retry waits for
        them."""
        storage = self._instance.event_log_storage
        try:
            if storage.supports_global_concurrency_limits:
                storage.free_concurrency_slots_for_run(run_id)
        except Exception as failed:
            log.warning("run %s: its pool slots were not freed (%s)", run_id, failed)

    def _judge(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = RunWorkers(self._catalog_of_instance()).of(run.run_id)
        if worker is None:
            # From before this release, or the catalog was away when it started (or, with
            # other event log storages than the shipped ones, not set up yet, or its steps
            # each run in a process of their own): not judged (its maximum runtime applies).
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its process is not recorded")
        here = WorkerIdentity.of_process()
        identity = worker.identity
        if here.same_machine_view(identity):
            self._last_beats.pop(run.run_id, None)
            if process_is_alive(identity):
                return CheckRunHealthResult(WorkerStatus.RUNNING, identity.describe(),
                                            run_worker_id=identity.describe())
            return _gone(f"its process is gone ({identity.describe()} no longer runs)")
        if (identity.host == here.host and identity.boot_id != here.boot_id
                and worker.beat_at < psutil.boot_time() - BOOT_MARGIN_S):
            # Its last beat came before this host last started (a machine of the same name
            # beating now would not have).
            return _gone(f"its process is gone (host restarted: {identity.describe()} last "
                         "beat before the host's last boot)")
        return self._judge_by_beats(run.run_id, worker.beats, identity)

    def _judge_by_beats(self, run_id: str, beats: int,
                        identity: WorkerIdentity) -> CheckRunHealthResult:
        now = time.monotonic()
        self._forget_unchecked(now)
        seen = self._last_beats.get(run_id)
        # Silence counts only while this watcher was watching: after a gap in its checks
        # longer than two of run monitoring's intervals (the daemon paused, the database
        # away) the count starts again.
        gap_limit = 2 * self._instance.run_monitoring_poll_interval_seconds
        if seen is None or seen[0] != beats or now - seen[2] > gap_limit:
            self._last_beats[run_id] = (beats, now, now)
            return CheckRunHealthResult(WorkerStatus.RUNNING, identity.describe())
        self._last_beats[run_id] = (beats, seen[1], now)
        silent = now - seen[1]
        if silent > self.silent_after_s:
            del self._last_beats[run_id]
            return _gone(f"its process is gone ({identity.describe()} sent no heartbeat for "
                         f"{silent:.0f} s)")
        return CheckRunHealthResult(WorkerStatus.RUNNING, identity.describe())

    def _forget_unchecked(self, now: float) -> None:
        """Forgets the runs not asked about for a while: they ended (only runs in progress
        are checked)."""
        if len(self._last_beats) > 100:
            for run_id, (_, _, checked) in list(self._last_beats.items()):
                if now - checked > 10 * self.silent_after_s:
                    del self._last_beats[run_id]

    def _catalog_of_instance(self) -> DocumentCatalog:
        if self._catalog is None:
            from doc_runs.defs.resources import instance_catalog_url

            self._catalog = DocumentCatalog(instance_catalog_url(self._instance))
        return self._catalog

    def dispose(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        super().dispose()


def _gone(reason: str) -> CheckRunHealthResult:
    return CheckRunHealthResult(WorkerStatus.FAILED, reason)


def launched_by(run: DagsterRun) -> WorkerIdentity | None:
    """The process that launched `run`, as this launcher tagged it; None when untagged (another
    launcher, an earlier release) or unreadable."""
    raw = run.tags.get(LAUNCHED_BY_TAG)
    if not raw:
        return None
    try:
        fields = json.loads(raw)
        if fields.pop("run_id", None) != run.run_id:
            return None  # copied from the run it retries
        return WorkerIdentity(**fields)
    except (AttributeError, TypeError, ValueError):
        return None
