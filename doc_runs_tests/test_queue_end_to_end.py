"""The ways in, as a user meets them with `bin/up` running: `doc-runs submit`, an upload over
HTTP, a poison message and its replay, each ending in (or kept out of) a real run started by
the daemon's queue sensor on the real Redis."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from dagster import DagsterInstance, DagsterRunStatus

from doc_runs.defs.tags import TENANT_TAG, TRIGGER_TAG
from doc_runs_tests.batches import documents_of_run
from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs
from doc_runs_tests.live import (
    api_answers,
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    stop_detached,
    wait_until,
)
from doc_runs_tests.servers import free_port

SAMPLE = PROJECT_ROOT / "data" / "samples" / "service-agreement.pdf"


def queue_runs(instance: DagsterInstance) -> list:
    return [r for r in instance.get_runs()
            if r.job_name == "document_pipeline" and r.tags.get(TRIGGER_TAG) == "queue"]


def finished(instance: DagsterInstance, count: int):
    runs = queue_runs(instance)
    done = [r for r in runs if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)]
    return done if len(done) >= count else None


def test_submit_upload_and_dead_letters_with_the_daemon_up(project, redis_server_url,
                                                            redis_client, monkeypatch) -> None:
    client, prefix = redis_client
    monkeypatch.setenv("DOC_RUNS_REDIS_URL", redis_server_url)
    monkeypatch.setenv("DOC_RUNS_STREAM_PREFIX", prefix)
    monkeypatch.setenv("DOC_RUNS_SECRETS_FILE", str(project / ".secrets" / "tenants.json"))
    added = doc_runs(project, "tenant", "add", "acme", "--token-file",
                     str(project / ".secrets" / "token"))
    assert added.returncode == 0, added.stderr
    token = (project / ".secrets" / "token").read_text().strip()
    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    dagster_port, api_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    dagster = start_detached([str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml",
                              "-h", "127.0.0.1", "-p", str(dagster_port)],
                             project, project / "dagster.log")
    api = start_detached([str(bin_dir / "doc-runs"), "api", "--port", str(api_port)], project,
                project / "api.log")
    try:
        wait_until(lambda: dagster_answers(dagster_port), 120, "the Dagster webserver")
        base = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: api_answers(base), 60, "the API")

        # doc-runs submit: one run, and sending the same file again starts nothing.
        sent = doc_runs(project, "submit", str(SAMPLE), "--tenant", "acme", "--json")
        assert sent.returncode == 0, sent.stderr
        submitted = json.loads(sent.stdout)
        with DagsterInstance.get() as instance:
            (run,) = wait_until(lambda: finished(instance, 1), 180, "the submitted run")
            assert run.status == DagsterRunStatus.SUCCESS, (project / "dagster.log").read_text()
            assert run.tags[TENANT_TAG] == "acme"
            assert documents_of_run(instance, run) == [submitted["document_id"]]
            again = doc_runs(project, "submit", str(SAMPLE), "--tenant", "acme", "--json")
            assert json.loads(again.stdout)["idempotency_key"] == submitted["idempotency_key"]

            # An upload over HTTP, followed to its summary and findings, and its events.
            headers = {"Authorization": f"Bearer {token}"}
            with SAMPLE.with_name("incident-report.txt").open("rb") as handle:
                answer = httpx.post(f"{base}/v1/documents", headers=headers,
                                    files={"file": ("incident report.txt", handle)})
            assert answer.status_code == 202, answer.text
            upload = answer.json()

            def status():
                current = httpx.get(base + upload["status_url"], headers=headers).json()
                return current if current["status"] in ("succeeded", "quarantined") else None

            done = wait_until(status, 180, "the uploaded document")
            assert done["status"] == "succeeded" and "certificate" in done["summary"]["text"]
            assert done["findings"]["title"]["values"][0]["value"]
            with httpx.stream("GET", base + upload["events_url"], headers=headers,
                              timeout=60) as stream:
                stages = [line.removeprefix("event: ") for line in stream.iter_lines()
                          if line.startswith("event: ")]
            assert stages[-1] == "final" and stages[0] == "document"
            assert httpx.get(base + upload["status_url"],
                             headers={"Authorization": "Bearer wrong"}).status_code == 401

            # A poison message is dead-lettered; replayed corrected, it runs.
            document_id = done["document_id"]
            good = json.loads(_envelope(project, document_id))
            bad = dict(good, signature="0" * 64)
            client.xadd(prefix + "documents", {"envelope": json.dumps(bad)})

            def dead_letters():
                listed = doc_runs(project, "dlq", "list", "--json")
                return [json.loads(line) for line in listed.stdout.splitlines()] or None

            (letter,) = wait_until(dead_letters, 60, "the dead letter")
            assert letter["reason"] == "bad_signature"
            replay_file = project / "corrected.json"
            replay_file.write_text(json.dumps(good))
            replayed = doc_runs(project, "dlq", "replay", letter["id"], "--payload",
                                str(replay_file))
            assert replayed.returncode == 0, replayed.stderr
            runs = wait_until(lambda: finished(instance, 3), 180, "the replayed message's run")
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
            assert len(queue_runs(instance)) == 3  # submit, upload, replay; never the repeat
            assert doc_runs(project, "dlq", "list", "--json").stdout == ""
    finally:
        stop_detached(api)
        stop_dagster_dev(dagster, project)


def _envelope(project: Path, document_id: str) -> str:
    """A correctly signed envelope for an upload, made the way a producer makes one."""
    code = (
        "import sys\n"
        "from doc_runs.auth import load_secrets\n"
        "from doc_runs.queue.envelope import UploadRef, build_envelope\n"
        "from doc_runs.settings import load_settings\n"
        "secrets = load_secrets(load_settings().secrets_variables())\n"
        "env = build_envelope(secrets, tenant='acme', idempotency_key='replayed-1',\n"
        f"    document=UploadRef(kind='upload', document_id='{document_id}'))\n"
        "print(env.model_dump_json())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, check=True, env=os.environ.copy())
    return done.stdout
