"""An operator re-executes a failed `doc-runs process` run from the Dagster UI.

The webserver and daemon run as `bin/up` runs them (`dagster dev`); the re-execution is the
GraphQL mutation the UI's "Re-execute -> From failure" menu item sends. It works only because
the command created its run against the code location (see doc_runs/defs/launch.py)."""

import shutil
import sys
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from doc_runs.defs.tags import BATCH_TAG
from doc_runs_tests.failed_runs import failed_cli_run
from doc_runs_tests.helpers import PROJECT_ROOT, graphql
from doc_runs_tests.live import (
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    wait_until,
)
from doc_runs_tests.servers import free_port

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(
    reexecutionParams: {parentRunId: $parentRunId, strategy: FROM_FAILURE}
  ) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
  }
}
"""


def test_failed_cli_run_is_reexecuted_from_failure_through_the_ui(project, text_pdf,
                                                                  monkeypatch) -> None:
    lines, blocker = failed_cli_run(project, text_pdf, monkeypatch)
    (parent_run_id,) = {line["run_id"] for line in lines}
    blocker.unlink()  # the operator fixes the cause

    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    port = free_port()
    server = start_detached(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)], project)
    try:
        wait_until(lambda: dagster_answers(port), 120, "the Dagster webserver")
        answer = graphql(port, REEXECUTE, {"parentRunId": parent_run_id})
        launched = answer["data"]["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", answer
        child_id = launched["run"]["runId"]

        with DagsterInstance.get() as instance:
            def finished():
                run = instance.get_run_by_id(child_id)
                return run if run.status in (DagsterRunStatus.SUCCESS,
                                             DagsterRunStatus.FAILURE) else None

            child = wait_until(finished, 180, "the re-executed run (queued for the daemon)")
            assert child.status == DagsterRunStatus.SUCCESS
            assert child.parent_run_id == parent_run_id
            parent = instance.get_run_by_id(parent_run_id)
            # The same batch (so the same documents), into the same day.
            for tag in (BATCH_TAG, "dagster/partition"):
                assert child.tags[tag] == parent.tags[tag]
            ran = {s.step_key for s in instance.get_run_step_stats(child_id)}
            assert ran == {"document_chunks", "document_findings", "document_summary"}
    finally:
        stop_dagster_dev(server, project)
