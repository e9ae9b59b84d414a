"""A deployment killed all at once (every process of `dagster dev`: webserver, daemon, code
server, the run's own process; as when the host loses power) in the middle of a run, then
started again on the same home: the run that was in flight is failed saying its process is
gone, run retries take it up from its failed stage, and every accepted document succeeds
within three minutes of the restart, with no answered model call sent again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from doc_runs.cli.status import describe_run
from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.defs.resources import instance_catalog_url
from doc_runs_tests.chat_server import ScriptedChatServer, point_doc_runs_at
from doc_runs_tests.helpers import (
    FINISHED,
    DagsterDev,
    cache_key_of,
    ended_run,
    model_cache_keys,
    started_run,
    step_started,
)
from doc_runs_tests.live import running_in, wait_until

DOCUMENTS = 6


def kill_everything_in(project: Path, process: subprocess.Popen[bytes]) -> int:
    """SIGKILL to every process working in the project folder, at once."""
    killed = 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid, _ in running_in(project):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    process.wait()
    wait_until(lambda: not running_in(project), 10, "every process to be gone")
    return killed


def test_a_deployment_killed_mid_run_finishes_every_document_after_restart(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedChatServer() as server:
        server.fault = lambda body, n: "latency:1.5"  # slow enough to be killed mid-stage
        point_doc_runs_at(server, monkeypatch)
        monkeypatch.setenv("DOC_RUNS_MODEL_TIMEOUT_S", "30")
        first = DagsterDev(project)
        try:
            first.__enter__()
            with DagsterInstance.get() as instance:
                for n in range(DOCUMENTS):
                    (project / "data" / "inbox" / f"report-{n}.md").write_text(
                        f"# Report {n}\n\nThe board approved budget {n}. The audit found "
                        f"nothing in area {n}. Revenue rose by {n + 2} percent.\n")
                run = wait_until(lambda: started_run(instance), 180, "the inbox sensor's run")
                wait_until(lambda: step_started(instance, run.run_id, "document_findings"),
                           120, "the findings stage")
                wait_until(lambda: model_cache_keys(project), 60, "a model call to complete")
        except BaseException:
            kill_everything_in(project, first.process)
            raise
        kill_everything_in(project, first.process)
        completed = model_cache_keys(project)
        sent_before = len(server.requests)
        assert completed <= {cache_key_of(body, server.url)
                             for body in server.requests[:sent_before]}

        restarted_at = time.monotonic()
        with DagsterDev(project) as dagster, DagsterInstance.get() as instance:
            dead = wait_until(lambda: ended_run(instance, run.run_id), 150,
                              "the dead run to be failed")
            assert dead.status == DagsterRunStatus.FAILURE, dagster.tail()
            failure = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
            assert any("its process is gone" in (e.dagster_event.message or "")
                       for e in failure), [e.dagster_event.message for e in failure]

            with DocumentCatalog(instance_catalog_url(instance)) as catalog:
                # `doc-runs status RUN`: the stage cut off reads not finished, not in progress.
                store = DocumentStore(project / "data" / "store")
                steps = describe_run(instance, catalog, store, run.run_id)["steps"]
                assert "IN_PROGRESS" not in {s["status"] for s in steps}, steps
                assert "NOT_FINISHED" in {s["status"] for s in steps}, steps

                def all_final():
                    states = catalog.count_by_state()
                    return states if sum(states.values()) == DOCUMENTS and set(states) == {
                        "succeeded"} else None

                states = wait_until(all_final, 240, "every document to succeed")
            took = time.monotonic() - restarted_at
            assert states == {"succeeded": DOCUMENTS}
            assert took < 180, f"{took:.0f} s from the restart to every document final"

            def retry_ended():
                retries = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id":
                                                             run.run_id}))
                return retries if retries and all(r.status in FINISHED for r in retries) else None

            retries = wait_until(retry_ended, 60, "the retry to end")
            assert [r.status for r in retries] == [DagsterRunStatus.SUCCESS]
            assert retries[0].tags["dagster/retry_number"] == "1"
            resent = [body for body in server.requests[sent_before:]
                      if cache_key_of(body, server.url) in completed]
            assert not resent, f"{len(resent)} answered call(s) sent again"
