"""What an operator meets with `dagster dev` (webserver and daemon) running: a run terminated
from the UI while its PDF worker spins, a run's process killed with SIGKILL, a run past its
maximum runtime. Each ends visibly, leaves no process behind, and can be re-executed."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from doc_runs_tests.documents import make_spinning_pdf
from doc_runs_tests.live import (
    dagster_answers,
    running_in,
    start_detached,
    stop_detached,
    wait_until,
)
from doc_runs_tests.servers import free_port
from doc_runs_tests.test_cli import PROJECT_ROOT
from doc_runs_tests.test_ui_reexecution import graphql

FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
WORKER = b"doc_runs.core.isolation_worker"

TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
    __typename
    ... on TerminateRunSuccess { run { runId } }
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


class DagsterDev:
    """`dagster dev` (webserver, daemon, code server) on the test's project folder."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.port = free_port()
        shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
        self.log = project / "dagster-dev.log"
        self.process = start_detached(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(self.port)], project, self.log)

    def __enter__(self) -> DagsterDev:
        wait_until(lambda: dagster_answers(self.port), 180, "the Dagster webserver")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_detached(self.process)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def started_run(instance: DagsterInstance):
    runs = instance.get_runs(RunsFilter(job_name="document_pipeline",
                                        statuses=[DagsterRunStatus.STARTED]))
    return runs[0] if runs else None


def test_a_run_terminated_from_the_ui_while_its_pdf_worker_spins_leaves_nothing_running(
        project, monkeypatch) -> None:
    # A deadline far beyond the test: only the termination may stop the worker.
    monkeypatch.setenv("DOC_RUNS_EXTRACT_DEADLINE_S", "3600")
    with DagsterDev(project) as dagster, DagsterInstance.get() as instance:
        (project / "data" / "inbox" / "spinning.pdf").write_bytes(make_spinning_pdf())
        run = wait_until(lambda: started_run(instance), 180, "the inbox sensor's run")
        (worker, _), *_ = wait_until(lambda: running_in(project, WORKER), 120,
                                      "the run's PDF worker")
        time.sleep(2)  # well into the document
        assert running_in(project, WORKER)
        answer = graphql(dagster.port, TERMINATE, {"runId": run.run_id})
        assert answer["data"]["terminateRun"]["__typename"] == "TerminateRunSuccess", answer
        asked = time.monotonic()

        def ended():
            current = instance.get_run_by_id(run.run_id)
            return current if current.status in FINISHED else None

        ended_run = wait_until(ended, 60, "the terminated run to end")
        assert ended_run.status == DagsterRunStatus.CANCELED, dagster.tail()
        wait_until(lambda: not running_in(project, WORKER), 10, "the PDF worker to be gone")
        # Not the document's 3,600 s deadline, nor minutes of pypdf: the termination.
        assert time.monotonic() - asked < 60
        assert worker not in [pid for pid, _ in running_in(project)]
