"""Two figures of the model stages (document_findings, document_summary), each measured through
`doc-runs process` on a fresh project folder against a real chat-completions server on
loopback (doc_runs_tests' ScriptedChatServer, which answers like an obliging model):

- model concurrency: model calls answered per second, the server taking 200 ms over every
  answer, against what the `llm` pool and the chunk concurrency allow:
  (pool limit x chunk concurrency) calls in flight, 200 ms each. Target: at least 0.8.
- re-execution cost: a run fails in document_findings (one document's model calls answer 500,
  through the stage's retries, after the other documents' calls were answered); the server is
  healed and the run re-executed from failure as the UI does it. Figure: requests of the
  re-execution whose exact body was answered before / requests answered before. The call
  cache should answer all of those: target 0.

    .venv/bin/python bench/model_calls.py [--documents 6] [--batch-size N] [--env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, ratio  # noqa: E402
from bench.process_throughput import fresh_project, write_ten_page_pdfs  # noqa: E402
from doc_runs.defs.resources import AgentResource  # noqa: E402
from doc_runs_tests.chat_server import ScriptedChatServer, point_doc_runs_at  # noqa: E402

LATENCY_S = 0.2
CONCURRENCY_TARGET = 0.8
# Settings of the process environment that would point the runs elsewhere (another store,
# instance or model); the bench sets its own.
_OWN_SETTINGS = ("DAGSTER_", "DOC_RUNS_", "OPENAI_")


def body_digest(body: dict[str, Any]) -> str:
    """The same request body, the same digest, whatever order its keys were sent in."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def agent_prompt(body: dict[str, Any]) -> str:
    """The findings agent's first user message: it lists the document's chunks, so it names
    the document a findings request is about."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


@dataclass
class ServedCall:
    digest: str
    stage: str  # "findings" (the request offers tools) or "summary"
    document: str | None  # digest of the agent's prompt for a findings request
    phase: str  # the server's phase when it arrived: which run sent it
    started: float  # perf_counter when its body had been read
    finished: float = 0.0  # perf_counter when its answer had been written
    status: int = 0  # HTTP status answered


class TimedChatServer(ScriptedChatServer):
    """The scripted server, also keeping when each request arrived and was answered, with what
    status, and the most requests it was answering at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[ServedCall] = []
        self.phase = "first"
        self.in_flight = 0
        self.max_in_flight = 0
        # The call a handler thread is answering, for _send to note its status on.
        self._answering = threading.local()

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], n: int,
                fault: str | None) -> None:
        findings = bool(body.get("tools"))
        call = ServedCall(
            digest=body_digest(body), stage="findings" if findings else "summary",
            document=hashlib.sha256(agent_prompt(body).encode()).hexdigest() if findings
            else None,
            phase=self.phase, started=time.perf_counter())
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._answering.call = call
        try:
            super()._answer(handler, body, n, fault)
        finally:
            call.finished = time.perf_counter()
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
              headers: dict[str, str] | None = None) -> None:
        owner = handler.server.owner  # type: ignore[attr-defined]
        owner._answering.call.status = status
        ScriptedChatServer._send(handler, status, payload, headers)

    def answered(self, phase: str | None = None, stage: str | None = None) -> list[ServedCall]:
        return [c for c in self.calls if c.status == 200
                and (phase is None or c.phase == phase) and (stage is None or c.stage == stage)]


class OneDocumentFails:
    """A fault rule: the findings requests of one document (the first whose findings reach the
    server) answer 500 after its first one, until healed. Its first call is answered (and
    cached), as are those of the documents worked on beside it; every attempt of the step,
    retries included, then fails on that document's second call."""

    def __init__(self) -> None:
        self.healed = False
        self.failed = 0
        self._victim: str | None = None
        self._seen = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any], n: int) -> str | None:
        if self.healed or not body.get("tools"):
            return None
        prompt = agent_prompt(body)
        with self._lock:
            self._victim = self._victim or prompt
            if prompt != self._victim:
                return None
            self._seen += 1
            if self._seen == 1:
                return None
            self.failed += 1
            return "500"


class _Environment(dict[str, str]):
    """A process environment that point_doc_runs_at can set, as it sets a test's."""

    def setenv(self, name: str, value: str) -> None:
        self[name] = value


def new_project(project: Path, server: ScriptedChatServer, extra_env: Mapping[str, str]
                ) -> dict[str, str]:
    """A project folder of its own (store, reports, DAGSTER_HOME with the local instance
    settings) and the environment that runs doc-runs there against `server`."""
    env = _Environment(fresh_project(project, {
        k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}))
    point_doc_runs_at(server, env)
    env.update(extra_env)
    return dict(env)


def pool_limit(project: Path) -> int:
    """The `llm` pool's limit in the instance settings the runs use."""
    settings = yaml.safe_load((project / "dagster_home" / "dagster.yaml").read_text())
    return int(settings["concurrency"]["pools"]["default_limit"])


def run_to_end(command: list[str], project: Path, env: Mapping[str, str], timeout_s: float
               ) -> subprocess.CompletedProcess[str]:
    """Runs `command` in the project folder. Past the timeout it gets SIGTERM, on which it
    cancels the runs it started (SIGKILL, as subprocess.run sends, would leave their code
    server and workers running)."""
    child = subprocess.Popen(command, cwd=project, env=dict(env), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.terminate()
        try:
            child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        raise RuntimeError(f"{' '.join(command[1:4])} did not finish in {timeout_s:g} s") from None
    return subprocess.CompletedProcess(command, child.returncode, out, err)


def process(files: Path, project: Path, env: Mapping[str, str], batch_size: int | None,
            timeout_s: float = 600) -> tuple[list[dict[str, Any]], int]:
    """`doc-runs process FILES --json --no-report`: one outcome per document, and its exit code
    (1 when a document failed)."""
    done = run_to_end(
        [sys.executable, "-m", "doc_runs.cli", "process", str(files), "--json", "--no-report",
         *(["--batch-size", str(batch_size)] if batch_size else [])],
        project, env, timeout_s)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"doc-runs process exited {done.returncode}: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines()], done.returncode


def most_at_once(calls: list[ServedCall]) -> int:
    """The most of `calls` being answered at the same moment."""
    edges = sorted([(c.started, 1) for c in calls] + [(c.finished, -1) for c in calls],
                   key=lambda edge: (edge[0], edge[1]))  # an answer ends before the next starts
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def span_of(calls: list[ServedCall]) -> float:
    """From the first request's arrival to the last answer written."""
    return max(c.finished for c in calls) - min(c.started for c in calls) if calls else 0.0


def stage_figures(calls: list[ServedCall]) -> dict[str, Any]:
    span = span_of(calls)
    busy = sum(c.finished - c.started for c in calls)
    return {"calls": len(calls), "span_s": round(span, 3),
            "calls_per_s": ratio(len(calls), span),
            "max_in_flight": most_at_once(calls),
            # Calls in flight on average over the span: calls/s x seconds per call.
            "mean_in_flight": ratio(busy, span)}


def measure_model_concurrency(work: Path, documents: int, *, batch_size: int | None = None,
                              extra_env: Mapping[str, str] | None = None,
                              latency_s: float = LATENCY_S) -> Figure:
    """Model calls answered per second over `documents` generated 10-page PDFs, the server
    taking `latency_s` over each answer, against (pool limit x chunk concurrency) / latency."""
    extra_env = dict(extra_env or {})
    files = work / "concurrency-pdfs"
    write_ten_page_pdfs(files, documents)
    project = work / "concurrency-project"
    with TimedChatServer() as server:
        server.fault = lambda body, n: f"latency:{latency_s}"
        env = new_project(project, server, extra_env)
        started = time.perf_counter()
        outcomes, _ = process(files, project, env, batch_size)
        wall_s = time.perf_counter() - started
    answered = server.answered()
    findings = [c for c in answered if c.stage == "findings"]
    summary = [c for c in answered if c.stage == "summary"]
    limit = pool_limit(project)
    chunk_concurrency = int(extra_env.get("DOC_RUNS_CHUNK_CONCURRENCY",
                                          AgentResource.model_fields["chunk_concurrency"].default))
    span = span_of(answered)
    calls_per_s = len(answered) / span if span > 0 else 0.0
    ceiling = limit * chunk_concurrency / latency_s
    value = ratio(calls_per_s, ceiling)
    return Figure(
        name="model concurrency",
        what=f"model calls answered per second (server answering in {latency_s * 1000:g} ms) "
        f"through doc-runs process on {documents} generated 10-page PDFs / ((llm pool limit "
        "x chunk concurrency) / latency)",
        value=value, unit="x", target=f">= {CONCURRENCY_TARGET}",
        holds=value is not None and value >= CONCURRENCY_TARGET,
        measured={
            "documents": documents,
            "succeeded": sum(o["status"] == "succeeded" for o in outcomes),
            "runs": len({o["run_id"] for o in outcomes}),
            "chunks_per_document": sorted({o["chunks"] for o in outcomes if o["chunks"]}),
            "calls": len(answered),
            "calls_not_answered_200": len(server.calls) - len(answered),
            "span_s": round(span, 3),
            "calls_per_s": round(calls_per_s, 2),
            "max_in_flight": server.max_in_flight,
            "mean_in_flight": stage_figures(answered)["mean_in_flight"],
            "findings": stage_figures(findings),
            "summary": stage_figures(summary),
            # Between the last findings answer and the first summary request: the runs'
            # own work (records, events, loading inputs) while no model call is in flight.
            "findings_to_summary_gap_s": round(
                min(c.started for c in summary) - max(c.finished for c in findings), 3)
            if findings and summary else None,
            "process_wall_s": round(wall_s, 2),
            "ceiling_calls_per_s": round(ceiling, 2),
            "latency_s": latency_s,
            "pool_limit": limit,
            "chunk_concurrency": chunk_concurrency,
            "document_concurrency": AgentResource.model_fields["document_concurrency"].default,
            "batch_size": batch_size,
            "extra_env": extra_env,
        },
    )


def measure_reexecution_cost(work: Path, documents: int, *,
                             extra_env: Mapping[str, str] | None = None) -> Figure:
    """A run fails in document_findings on one document after the others' findings calls were
    answered; healed, it is re-executed from failure. Counts the re-execution's requests
    whose body was answered before."""
    files = work / "reexecution-pdfs"
    write_ten_page_pdfs(files, documents)
    project = work / "reexecution-project"
    fault = OneDocumentFails()
    with TimedChatServer() as server:
        server.fault = fault
        env = new_project(project, server, {
            # One retry shows the fault outlasting the stage's RetryPolicy, without waiting
            # out the default backoff (3 retries from 2 s, exponential).
            "DOC_RUNS_STAGE_RETRIES": "1", "DOC_RUNS_RETRY_DELAY_S": "0.2",
            **(extra_env or {})})
        outcomes, exit_code = process(files, project, env, None)
        fault.healed = True
        server.phase = "again"
        run_ids = sorted({o["run_id"] for o in outcomes if o["run_id"]})
        again = [reexecute(project, env, run_id) for run_id in run_ids]
    answered_before = {c.digest for c in server.answered("first")}
    findings_before = server.answered("first", "findings")
    sent_again = [c for c in server.calls if c.phase == "again"]
    resent = [c for c in sent_again if c.digest in answered_before]
    return Figure(
        name="re-execution cost",
        what=f"model requests a re-execution from failure sent again although the same request "
        f"was answered before / requests answered before ({documents} generated 10-page PDFs, "
        "the run failed in document_findings on one document)",
        value=ratio(len(resent), len(answered_before)), unit="x", target="== 0",
        holds=bool(answered_before) and not resent,
        measured={
            "documents": documents,
            "first_exit_code": exit_code,
            "first_runs": run_ids,
            "first_statuses": sorted({o["status"] for o in outcomes}),
            "first_failures": sorted({(o["detail"] or "")[:160] for o in outcomes
                                      if o["status"] == "failed"}),
            "answered_before": len(answered_before),
            "answered_before_findings": len({c.digest for c in findings_before}),
            # The failing document included. Documents whose findings had not started when
            # it failed are not started at all (the step's pool.map cancels them).
            "documents_with_findings_answered_before": len({c.document
                                                            for c in findings_before}),
            "answered_500_before": fault.failed,
            "reexecutions": again,
            "requests_in_reexecution": len(sent_again),
            "findings_requests_in_reexecution": sum(c.stage == "findings" for c in sent_again),
            "summary_requests_in_reexecution": sum(c.stage == "summary" for c in sent_again),
            "resent": len(resent),
            "resent_findings": sum(c.stage == "findings" for c in resent),
        },
    )


def reexecute(project: Path, env: Mapping[str, str], run_id: str) -> dict[str, Any]:
    """Re-executes `run_id` from failure in a process of its own: the code server and the run
    worker it starts take their settings (store, model, retries) from its environment."""
    done = run_to_end(
        [sys.executable, str(Path(__file__).resolve()), "--reexecute-from-failure", run_id],
        project, env, timeout_s=600)
    if done.returncode != 0:
        raise RuntimeError(f"re-executing {run_id} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def reexecute_from_failure(run_id: str) -> dict[str, Any]:
    """What the UI's "Re-execute -> From failure" does (dagster-webserver's
    launchPipelineReexecution, with the parent's tags), against the code location as
    `doc-runs process` launches; waits for the new run."""
    from dagster import DagsterInstance
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy

    from doc_runs.cli.runs import (
        child_log_path,
        children_output_to,
        interrupts_raised,
        wait_or_cancel,
    )
    from doc_runs.defs.launch import CODE_LOCATION, code_location_workspace
    from doc_runs.project import project_dir

    with DagsterInstance.get() as instance:
        parent = instance.get_run_by_id(run_id)
        if parent is None:
            raise SystemExit(f"no run {run_id}")
        # Stopped (the bench's timeout sends SIGTERM), it cancels the run as doc-runs does.
        with interrupts_raised(), children_output_to(child_log_path(instance)), \
                code_location_workspace(instance, project_dir()) as workspace:
            location = workspace.get_code_location(CODE_LOCATION)
            (repository,) = location.get_repositories().values()
            run = instance.create_reexecuted_run(
                parent_run=parent, request_context=workspace, code_location=location,
                remote_job=repository.get_full_job(parent.job_name),
                strategy=ReexecutionStrategy.FROM_FAILURE, use_parent_run_tags=True)
            try:
                instance.launch_run(run.run_id, workspace)
            except BaseException:
                instance.report_run_canceled(run, message="the run could not be launched")
                raise
            status = wait_or_cancel(instance, [run.run_id])[run.run_id]
        succeeded = sorted(s.step_key for s in instance.get_run_step_stats(run.run_id)
                           if s.status is not None and s.status.value == "SUCCESS")
    return {"run_id": run.run_id, "parent_run_id": run.parent_run_id, "status": status.value,
            "steps_succeeded": succeeded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="as doc-runs process, for the concurrency figure")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the runs, e.g. DOC_RUNS_CHUNK_CONCURRENCY=8")
    parser.add_argument("--only", choices=["concurrency", "reexecution"], default=None)
    parser.add_argument("--work", type=Path, default=None,
                        help="an empty folder to work in (default: a temporary one, removed)")
    # Internal: how measure_reexecution_cost re-executes a run in a process of its own.
    parser.add_argument("--reexecute-from-failure", metavar="RUN_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reexecute_from_failure:
        print(json.dumps(reexecute_from_failure(args.reexecute_from_failure)))
        return
    extra_env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="doc-runs-bench-") as tmp:
        work = args.work or Path(tmp)
        figures = []
        if args.only in (None, "concurrency"):
            figures.append(measure_model_concurrency(work, args.documents,
                                                     batch_size=args.batch_size,
                                                     extra_env=extra_env))
        if args.only in (None, "reexecution"):
            figures.append(measure_reexecution_cost(work, args.documents, extra_env=extra_env))
    for figure in figures:
        print(json.dumps(figure.as_json(), indent=2))


if __name__ == "__main__":
    main()
