"""The production topology of deploy/docker-compose.yaml, run as separate processes on this
machine (no container engine here): a code server for the `doc_runs` location, the Dagster
webserver and daemon on deploy/workspace.grpc.yaml pointing at it, and the HTTP API, each with
a DAGSTER_HOME of its own holding deploy/dagster.postgres.yaml, sharing only what the containers
share: a fresh PostgreSQL database, Redis under one key prefix, the store and the secrets file.

An upload through the API runs to success; the code server is then stopped and started again
on the same port (a new image rolled out, a crashed container restarted), and once the
webserver and the daemon have found it again the next upload runs to success too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.client import DagsterGrpcClient

from doc_runs.auth import add_tenant
from doc_runs.defs.tags import TENANT_TAG, TRIGGER_TAG
from doc_runs_tests.batches import runs_of_document
from doc_runs_tests.documents import make_pdf
from doc_runs_tests.helpers import PROJECT_ROOT
from doc_runs_tests.live import (
    api_answers,
    dagster_answers,
    running_in,
    start_detached,
    stop_detached,
    wait_until,
)
from doc_runs_tests.servers import free_port

DEPLOY = PROJECT_ROOT / "deploy"
BIN = Path(sys.executable).parent
# Generous: two cores, shared with the rest of the suite; a code server takes seconds to load.
WAIT_S = 180
LOCATION = "doc_runs"
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus versionKey
        locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


class Topology:
    """The processes of one deployment, each started detached in a session of its own with a
    DAGSTER_HOME of its own (as each container has), logging to logs/<name>.log."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()  # /proc gives working directories resolved
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: list[subprocess.Popen[bytes]] = []
        self.starts: dict[str, int] = {}
        self.logs = root / "logs"
        self.logs.mkdir()

    def start(self, name: str, command: list[str]) -> None:
        home = self.root / "homes" / name
        if not home.is_dir():
            home.mkdir(parents=True)
            shutil.copyfile(DEPLOY / "dagster.postgres.yaml", home / "dagster.yaml")
        # A restarted process logs to a file of its own: the first one's log is kept.
        self.starts[name] = self.starts.get(name, 0) + 1
        suffix = f".{self.starts[name]}" if self.starts[name] > 1 else ""
        log = self.logs / f"{name}{suffix}.log"
        self.processes[name] = start_detached(command, self.root, log,
                                              env={"DAGSTER_HOME": str(home)})

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        self.stopped.append(process)
        if process.poll() is None:
            stop_detached(process)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)

    def log_tails(self) -> str:
        return "\n".join(f"--- {log.name} ---\n" + log.read_text(errors="replace")[-3000:]
                         for log in sorted(self.logs.glob("*.log")))

    def left_running(self) -> list[str]:
        """Every process still running from this deployment's folder (the processes started
        here, the code server's run workers, their PDF workers)."""
        return [f"{pid}: {command}" for pid, command in running_in(self.root)]


def _grpc_serving(port: int) -> bool:
    # The port first: the gRPC client prints every refused connection it retries.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    try:
        return DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"
    except Exception:  # still starting: the client raises gRPC's own error types
        return False


def _location_version(port: int) -> str | None:
    """The webserver's version key of the doc_runs location (it names the code server's
    current server id) once the location is loaded, else None."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": WORKSPACE_QUERY}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except OSError:
        return None
    for entry in answer["data"]["workspaceOrError"].get("locationEntries", []):
        loaded = (entry["loadStatus"] == "LOADED"
                  and (entry["locationOrLoadError"] or {}).get("__typename")
                  == "RepositoryLocation")
        if entry["name"] == LOCATION and loaded:
            return str(entry["versionKey"])
    return None


def _daemon_ticked_queue_sensor(instance: DagsterInstance, since: float) -> bool:
    """The daemon evaluated the queue sensor through the code server (a tick that did not
    fail) after `since`."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name != "queue_sensor":
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since,
                                   statuses=[TickStatus.SKIPPED, TickStatus.SUCCESS])
        if ticks:
            return True
    return False


def _document_run(instance: DagsterInstance, document_id: str) -> DagsterRun | None:
    runs = [run for run in runs_of_document(instance, document_id)
            if run.tags.get(TRIGGER_TAG) == "queue"]
    return runs[0] if runs else None


def _finished_run(instance: DagsterInstance, document_id: str) -> DagsterRun | None:
    run = _document_run(instance, document_id)
    return run if run is not None and run.status not in UNFINISHED else None


def _assert_launched_through(run: DagsterRun, port: int) -> None:
    # Through the code server the workspace names, not one the daemon started of its own.
    assert run.remote_job_origin is not None
    origin = run.remote_job_origin.repository_origin.code_location_origin
    assert isinstance(origin, GrpcServerCodeLocationOrigin), origin
    assert (origin.location_name, origin.port) == (LOCATION, port)


def _upload_and_follow(api: str, token: str, name: str, pdf: bytes) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    sent = httpx.post(f"{api}/v1/documents", headers=headers,
                      files={"file": (name, pdf, "application/pdf")}, timeout=60)
    assert sent.status_code == 202, sent.text
    status_url = api + sent.json()["status_url"]

    def outcome() -> dict | None:
        current = httpx.get(status_url, headers=headers, timeout=30).json()
        return current if current["status"] in ("succeeded", "quarantined", "failed") else None

    return wait_until(outcome, WAIT_S, f"the run of the uploaded {name}")


def _daemon_live() -> bool:
    # The daemon's healthcheck in docker-compose.yaml, as the container runs it.
    done = subprocess.run([str(BIN / "dagster-daemon"), "liveness-check"], capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())
    return done.returncode == 0


def test_uploads_run_through_a_separate_code_server_and_survive_its_restart(
        project: Path, own_postgres_database_url: str, text_pdf: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    grpc_port, web_port, api_port = free_port(), free_port(), free_port()
    # The database of this test's own (the session's may hold other tests' runs and sensor
    # state), named with the psycopg2 driver as deployments name it.
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", own_postgres_database_url.replace(
        "postgresql://", "postgresql+psycopg2://", 1))
    monkeypatch.setenv("DOC_RUNS_CODE_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("DOC_RUNS_CODE_SERVER_PORT", str(grpc_port))
    # The test's own view of the instance, one more DAGSTER_HOME on the same database.
    shutil.copyfile(DEPLOY / "dagster.postgres.yaml", project / "dagster_home" / "dagster.yaml")
    shutil.copyfile(DEPLOY / "workspace.grpc.yaml", project / "workspace.yaml")
    token = add_tenant(project / ".secrets" / "tenants.json", "acme")
    api = f"http://127.0.0.1:{api_port}"
    code_server = [str(BIN / "dagster"), "code-server", "start", "-m", "doc_runs.definitions",
                   "--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(grpc_port)]
    topology = Topology(project)
    try:
        topology.start("code_server", code_server)
        wait_until(lambda: _grpc_serving(grpc_port), WAIT_S, "the code server")
        health = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p",
                                 str(grpc_port)], capture_output=True, text=True, timeout=120)
        assert health.returncode == 0, health.stdout + health.stderr  # the compose healthcheck
        topology.start("webserver", [str(BIN / "dagster-webserver"), "-w", "workspace.yaml",
                                     "-h", "127.0.0.1", "-p", str(web_port)])
        wait_until(lambda: dagster_answers(web_port), WAIT_S, "the webserver")
        first_server = wait_until(lambda: _location_version(web_port), WAIT_S,
                                  "the webserver to load doc_runs from the code server")
        # One process after the other, as docker-compose.yaml orders them: the first on the
        # new database creates Dagster's tables, and two doing it at once can collide.
        topology.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        topology.start("api", [str(BIN / "doc-runs"), "api", "--host", "127.0.0.1",
                               "--port", str(api_port)])
        wait_until(lambda: api_answers(api), WAIT_S, "the API")

        with DagsterInstance.get() as instance:
            wait_until(lambda: _daemon_ticked_queue_sensor(instance, 0.0), WAIT_S,
                       "the daemon to evaluate the queue sensor")
            wait_until(_daemon_live, WAIT_S, "dagster-daemon liveness-check to pass")

            first = _upload_and_follow(api, token, "quarterly report.pdf", text_pdf)
            assert first["status"] == "succeeded", first
            first_run = wait_until(lambda: _finished_run(instance, first["document_id"]),
                                   WAIT_S, "the first document's run to end")
            assert first_run.status == DagsterRunStatus.SUCCESS, topology.log_tails()
            assert first_run.tags[TENANT_TAG] == "acme"
            _assert_launched_through(first_run, grpc_port)

            # A run in flight would die with the server: restart it between runs (the report
            # sensor may ask for a report run after the document run ended).
            wait_until(lambda: not instance.get_run_ids(RunsFilter(statuses=UNFINISHED)),
                       WAIT_S, "runs in flight to end before the restart")
            topology.stop("code_server")
            assert not _grpc_serving(grpc_port)
            restarted_at = time.time()
            topology.start("code_server", code_server)
            wait_until(lambda: _grpc_serving(grpc_port), WAIT_S, "the restarted code server")
            wait_until(lambda: _location_version(web_port) not in (None, first_server), WAIT_S,
                       "the webserver to reload doc_runs from the restarted code server")
            wait_until(lambda: _daemon_ticked_queue_sensor(instance, restarted_at), WAIT_S,
                       "the daemon to evaluate the queue sensor on the restarted server")

            second_pdf = make_pdf([
                "The supplier shall deliver the goods within thirty days of the order. "
                "Payment is due within sixty days of delivery.",
                "Either party may end this agreement with ninety days written notice."])
            second = _upload_and_follow(api, token, "supply agreement.pdf", second_pdf)
            assert second["status"] == "succeeded", second
            assert second["document_id"] != first["document_id"]
            second_run = wait_until(lambda: _finished_run(instance, second["document_id"]),
                                    WAIT_S, "the second document's run to end")
            assert second_run.status == DagsterRunStatus.SUCCESS, topology.log_tails()
            _assert_launched_through(second_run, grpc_port)
            record = instance.get_run_record_by_id(second_run.run_id)
            assert record is not None and record.create_timestamp.timestamp() > restarted_at
            wait_until(lambda: not instance.get_run_ids(RunsFilter(statuses=UNFINISHED)),
                       WAIT_S, "runs in flight to end before stopping")
    finally:
        topology.stop_all()
        print(topology.log_tails())  # shown by pytest when the test failed

    assert all(process.poll() is not None for process in topology.stopped)
    try:
        wait_until(lambda: not topology.left_running(), 30, "the deployment's processes to end")
    except AssertionError:
        left = topology.left_running()
        for line in left:  # ours, found by their working directory: end them for the next test
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        raise AssertionError(f"processes left running: {left}") from None
