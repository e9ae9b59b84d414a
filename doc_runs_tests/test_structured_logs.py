"""Structured logs: with DOC_RUNS_LOG_FORMAT=json every process writes JSON lines with the same
fields, and one uploaded document is followed by its id from the HTTP API through the queue
sensor (in the code server) to each stage in the run worker."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from doc_runs import logs
from doc_runs.auth import add_tenant
from doc_runs_tests.batches import LOAD_DEFINITIONS
from doc_runs_tests.helpers import PROJECT_ROOT
from doc_runs_tests.live import (
    api_answers,
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    stop_detached,
    wait_until,
)
from doc_runs_tests.servers import free_port

STAGES = ("document", "document_text", "document_chunks", "document_findings",
          "document_summary")


def json_lines(*paths: Path) -> list[dict]:
    found = []
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            start = line.find('{"time"')  # a process may prefix its children's lines
            if start < 0:
                continue
            try:
                found.append(json.loads(line[start:]))
            except ValueError:
                continue
    return found


def test_one_document_is_followed_across_processes_by_its_id(project, text_pdf,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_LOG_FORMAT", "json")
    token = add_tenant(project / ".secrets" / "tenants.json", "acme")
    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    dagster_port, api_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    dagster_log, api_log = project / "dagster.log", project / "api.log"
    dagster = start_detached([str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml",
                              "-h", "127.0.0.1", "-p", str(dagster_port)], project, dagster_log)
    api = start_detached([str(bin_dir / "doc-runs"), "api", "--port", str(api_port)], project,
                         api_log)
    try:
        wait_until(lambda: dagster_answers(dagster_port), 120, "the Dagster webserver")
        base = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: api_answers(base), 60, "the API")
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(f"{base}/v1/documents", headers=headers,
                            files={"file": ("q3 report.pdf", text_pdf, "application/pdf")})
        assert answer.status_code == 202, answer.text
        document_id = answer.json()["document_id"]

        def finished():
            current = httpx.get(base + answer.json()["status_url"], headers=headers).json()
            return current if current["status"] in ("succeeded", "quarantined") else None

        assert wait_until(finished, 180, "the uploaded document")["status"] == "succeeded"

        def summary_logged():
            lines = [line for line in json_lines(api_log, dagster_log)
                     if line.get("document_id") == document_id]
            return lines if any(line["stage"] == "document_summary" for line in lines) else None

        mine = wait_until(summary_logged, 30, "the run worker's last line")
    finally:
        stop_detached(api)
        stop_dagster_dev(dagster, project)

    for line in mine:
        assert set(logs.FIELDS) <= set(line), line
        assert line["time"].endswith("Z") and line["level"] in ("info", "warning")
        assert line["tenant"] == "acme"
    by_process = {}
    for line in mine:
        by_process.setdefault(line["process"], set()).add(line["pid"])
    assert {"api", "code_server", "run_worker"} <= set(by_process), by_process
    assert len({pid for pids in by_process.values() for pid in pids}) >= 3
    upload = next(line for line in mine if line["process"] == "api")
    assert upload["outcome"] == "queued" and upload["stage"] == "upload"
    requested = next(line for line in mine if line["process"] == "code_server")
    assert requested["outcome"] == "run_requested" and requested["stage"] == "queue_sensor"
    in_run = [line for line in mine if line["process"] == "run_worker"]
    assert [line["stage"] for line in in_run] == list(STAGES)
    assert len({line["run_id"] for line in in_run}) == 1
    for line in in_run:
        assert line["outcome"] == "succeeded" and line["attempt"] == 1
        assert isinstance(line["duration_ms"], int) and line["reason"] is None


def test_a_failure_carries_its_reason_and_a_dagster_record_its_run() -> None:
    formatter = logs.JsonLineFormatter(role="run_worker")
    record = logging.LogRecord("doc_runs.facts", logging.WARNING, __file__, 1,
                               "document_findings failed", None, None)
    record.doc_runs_facts = {"document_id": "d" * 64, "stage": "document_findings",
                             "attempt": 3, "outcome": "failed",
                             "reason": "ModelRateLimited: HTTP 429"}
    line = json.loads(formatter.format(record))
    assert line["level"] == "warning" and line["attempt"] == 3
    assert line["reason"] == "ModelRateLimited: HTTP 429" and line["run_id"] is None
    dagster = logging.LogRecord("dagster", logging.INFO, __file__, 1, "step started", None,
                                None)
    dagster.dagster_meta = {"run_id": "r-1", "step_key": "document_text"}
    line = json.loads(formatter.format(dagster))
    assert (line["run_id"], line["stage"], line["document_id"]) == ("r-1", "document_text",
                                                                    None)


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("DOC_RUNS_LOG_FORMAT", "xml", "DOC_RUNS_LOG_FORMAT='xml': expected 'off', 'json' or 'text'"),
    ("DOC_RUNS_LOG_LEVEL", "LOUD", "DOC_RUNS_LOG_LEVEL='LOUD': expected a level"),
])
def test_a_wrong_log_setting_stops_the_code_location_from_loading(project, variable, value,
                                                                  says, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_LOG_FORMAT", "json")
    monkeypatch.setenv(variable, value)
    loaded = subprocess.run([sys.executable, "-c", LOAD_DEFINITIONS],
                            cwd=project, capture_output=True, text=True, timeout=120)
    assert loaded.returncode != 0
    assert says in loaded.stderr


@pytest.mark.parametrize(("argv", "role"), [
    (["/venv/bin/doc-runs", "api", "--port", "8000"], "api"),
    (["/venv/bin/doc-runs", "status"], "cli"),
    # `python -m doc_runs.cli api`, as sys.argv has it.
    (["/srv/doc_runs/doc_runs/cli/__main__.py", "api"], "api"),
    (["/srv/doc_runs/doc_runs/cli/__main__.py", "process", "inbox"], "cli"),
])
def test_the_command_line_is_told_by_its_command(argv: list[str], role: str) -> None:
    assert logs.process_role(argv) == role
