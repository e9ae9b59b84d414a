"""What an operator meets with `dagster dev` (webserver and daemon) running: a run terminated
from the UI while its PDF worker spins, a run's process killed with SIGKILL, a run past its
maximum runtime. Each ends visibly, leaves no process behind, and can be re-executed."""

from __future__ import annotations

import os
import signal
import time

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from doc_runs_tests.chat_server import ScriptedChatServer, point_doc_runs_at
from doc_runs_tests.documents import make_spinning_pdf
from doc_runs_tests.helpers import (
    FINISHED,
    LOCAL_INSTANCE,
    DagsterDev,
    cache_key_of,
    ended_run,
    graphql,
    model_cache_keys,
    started_run,
    step_started,
)
from doc_runs_tests.live import (
    running_in,
    wait_until,
)

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


def test_a_run_process_killed_while_its_pdf_worker_spins_leaves_no_worker(
        project, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_EXTRACT_DEADLINE_S", "3600")
    # Not retried here: a retry would start a new worker on the same document.
    instance_yaml = LOCAL_INSTANCE.read_text().replace("max_retries: 2", "max_retries: 0")
    with DagsterDev(project, instance_yaml), DagsterInstance.get() as instance:
        (project / "data" / "inbox" / "spinning.pdf").write_bytes(make_spinning_pdf())
        run = wait_until(lambda: started_run(instance), 180, "the inbox sensor's run")
        (worker, _), *_ = wait_until(lambda: running_in(project, WORKER), 120,
                                      "the run's PDF worker")
        pid = run_worker_pid(instance, run.run_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not running_in(project, WORKER), 5,
                   f"worker {worker} to die with its run's process")


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The run's process: it writes the RUN_START event itself."""
    started = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    return started[0].dagster_event.pid if started else None


def test_a_run_killed_in_findings_is_failed_and_retried_from_failure_without_resending_calls(
        project, text_pdf, monkeypatch) -> None:
    with ScriptedChatServer() as server:
        server.fault = lambda body, n: "latency:1.5"  # slow enough to be killed mid-stage
        point_doc_runs_at(server, monkeypatch)
        monkeypatch.setenv("DOC_RUNS_MODEL_TIMEOUT_S", "30")
        with DagsterDev(project) as dagster, DagsterInstance.get() as instance:
            for n in range(3):  # one run of three documents, their findings side by side
                (project / "data" / "inbox" / f"report-{n}.md").write_text(
                    f"# Report {n}\n\nThe board approved budget {n}. The audit found "
                    f"nothing in area {n}. Revenue rose by {n + 2} percent.\n")
            run = wait_until(lambda: started_run(instance), 180, "the inbox sensor's run")
            wait_until(lambda: step_started(instance, run.run_id, "document_findings"), 120,
                       "the findings stage")
            completed = wait_until(lambda: model_cache_keys(project), 60,
                                   "a model call to complete")
            pid = run_worker_pid(instance, run.run_id)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            completed = model_cache_keys(project)
            sent_before = len(server.requests)
            # Every completed call is one the server answered: the key mapping is right.
            assert completed <= {cache_key_of(body, server.url)
                                 for body in server.requests[:sent_before]}

            assert wait_until(lambda: ended_run(instance, run.run_id), 60,
                              "the killed run to be marked").status == (
                DagsterRunStatus.FAILURE), dagster.tail()
            assert time.monotonic() - killed_at < 60
            assert not running_in(project, WORKER)

            def retried():
                runs = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id":
                                                          run.run_id}))
                return runs[0] if runs and runs[0].status in FINISHED else None

            retry = wait_until(retried, 240, "the daemon's retry of the killed run")
            assert retry.status == DagsterRunStatus.SUCCESS, dagster.tail()
            assert retry.tags["dagster/retry_number"] == "1"
            ran = {s.step_key for s in instance.get_run_step_stats(retry.run_id)}
            assert ran == {"document_findings", "document_summary"}
            resent = [body for body in server.requests[sent_before:]
                      if cache_key_of(body, server.url) in completed]
            assert not resent, f"{len(resent)} completed call(s) sent again"


def test_a_run_past_its_max_runtime_is_stopped_and_failed(project, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_EXTRACT_DEADLINE_S", "3600")
    monkeypatch.setenv("DOC_RUNS_MAX_RUNTIME_S", "8")
    # Checked every 2 s here (30 s in the shipped files), and not retried: a retry would
    # spin on the same document again.
    instance_yaml = LOCAL_INSTANCE.read_text().replace(
        "poll_interval_seconds: 30", "poll_interval_seconds: 2").replace(
        "max_retries: 2", "max_retries: 0")
    assert "poll_interval_seconds: 2" in instance_yaml and "max_retries: 0" in instance_yaml
    with DagsterDev(project, instance_yaml) as dagster, DagsterInstance.get() as instance:
        (project / "data" / "inbox" / "spinning.pdf").write_bytes(make_spinning_pdf())
        run = wait_until(lambda: started_run(instance), 180, "the inbox sensor's run")
        assert run.tags["dagster/max_runtime"] == "8"
        wait_until(lambda: running_in(project, WORKER), 120, "the run's PDF worker")

        stopped = wait_until(lambda: ended_run(instance, run.run_id), 120,
                             "run monitoring to stop the run")
        assert stopped.status == DagsterRunStatus.FAILURE, dagster.tail()
        # Run monitoring always writes its reason on the canceling event; which process writes
        # the failure itself (the monitor, or the run as it is interrupted) is a race.
        canceling = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_CANCELING)
        reasons = [e.dagster_event.message or "" for e in canceling]
        assert any("exceeding maximum runtime of 8 seconds" in r for r in reasons), (
            reasons, dagster.tail())
        wait_until(lambda: not running_in(project, WORKER), 10, "the PDF worker to be gone")
