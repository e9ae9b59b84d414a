"""doc-runs submit, dlq and tenant, and `process` on the inputs that used to hang or crash it,
run as a user runs them: subprocesses against the real Redis."""

import json
import os
import time

import pytest

from doc_runs.queue.streams import StreamNames
from doc_runs_tests.test_cli import doc_runs


@pytest.fixture
def queue_env(project, redis_server_url, redis_client, monkeypatch):
    client, prefix = redis_client
    monkeypatch.setenv("DOC_RUNS_REDIS_URL", redis_server_url)
    monkeypatch.setenv("DOC_RUNS_STREAM_PREFIX", prefix)
    monkeypatch.setenv("DOC_RUNS_SECRETS_FILE", str(project / ".secrets" / "tenants.json"))
    assert doc_runs(project, "tenant", "add", "acme").returncode == 0
    return client, StreamNames(prefix)


def test_tenant_add_prints_a_token_once_and_keeps_only_its_hash(project, monkeypatch) -> None:
    secrets_file = project / "private" / "tenants.json"
    added = doc_runs(project, "tenant", "add", "acme", "--secrets-file", str(secrets_file))
    token = added.stdout.strip()
    assert added.returncode == 0 and len(token) >= 40
    assert token not in secrets_file.read_text()
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    bad = doc_runs(project, "tenant", "add", "Not A Name", "--secrets-file", str(secrets_file))
    assert bad.returncode == 2 and "is not a tenant name" in bad.stderr


def test_submit_stores_signs_and_enqueues_and_refuses_what_it_cannot_read(
        project, queue_env) -> None:
    client, names = queue_env
    inputs = project / "in"
    inputs.mkdir()
    raw = os.path.join(os.fsencode(inputs), b"Vertr\xe4ge.txt")
    with open(raw, "wb") as handle:
        handle.write(b"Contract notes. Two sentences.")
    os.mkfifo(inputs / "pipe.pdf")
    started = time.monotonic()
    done = doc_runs(project, "submit", str(inputs), "--tenant", "acme", "--json")
    assert time.monotonic() - started < 60  # the FIFO did not block it
    assert done.returncode == 1  # one file refused
    lines = {line["status"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert lines["refused"]["reason"] == "not_regular_file"
    enqueued = lines["enqueued"]
    assert enqueued["path"].endswith("Vertr\\xe4ge.txt")
    ((entry_id, fields),) = client.xrange(names.documents)
    assert entry_id.decode() == enqueued["entry_id"]
    envelope = json.loads(fields[b"envelope"])
    assert envelope["tenant"] == "acme"
    assert envelope["document"]["document_id"] == enqueued["document_id"]


def test_submit_says_clearly_what_is_missing(project, queue_env, monkeypatch) -> None:
    sample = project / "a.txt"
    sample.write_text("A note. Two sentences.")
    unknown = doc_runs(project, "submit", str(sample), "--tenant", "beta")
    assert unknown.returncode == 2 and "tenant 'beta' has no signing key" in unknown.stderr
    monkeypatch.setenv("DOC_RUNS_REDIS_URL", "redis://127.0.0.1:1/0")
    down = doc_runs(project, "submit", str(sample), "--tenant", "acme")
    assert down.returncode == 1 and "did not answer" in down.stderr
    assert "Traceback" not in down.stderr


def test_dlq_list_show_purge_and_replay_an_invalid_one(project, queue_env) -> None:
    client, names = queue_env
    client.xadd(names.documents, {"envelope": b"{broken"})
    from doc_runs.queue.dead_letters import dead_letter

    letter = dead_letter(client, names, source_entry_id="1-1", payload=b"{broken",
                         reason="invalid_json", detail="Expecting property name")
    listed = doc_runs(project, "dlq", "list", "--json")
    (shown,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (shown["id"], shown["reason"], shown["payload"]) == (
        letter.id, "invalid_json", "{broken")
    still_bad = doc_runs(project, "dlq", "replay", letter.id)
    assert still_bad.returncode == 1 and "still poison (invalid_json)" in still_bad.stderr
    assert doc_runs(project, "dlq", "show", "nope").returncode == 1
    assert doc_runs(project, "dlq", "purge", "nope").returncode == 1
    assert doc_runs(project, "dlq", "purge", letter.id).returncode == 0
    assert doc_runs(project, "dlq", "list").stdout.strip() == "no dead letters"


def test_process_refuses_a_fifo_and_keeps_an_odd_name(project, text_pdf) -> None:
    inputs = project / "in"
    inputs.mkdir()
    raw = os.path.join(os.fsencode(inputs), b"Bericht-\xff.pdf")
    with open(raw, "wb") as handle:
        handle.write(text_pdf)
    os.mkfifo(inputs / "pipe.pdf")
    started = time.monotonic()
    done = doc_runs(project, "process", str(inputs), "--json", "--no-report")
    assert time.monotonic() - started < 300
    assert done.returncode == 0, done.stderr
    by_status = {line["status"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert by_status["quarantined"]["reason"] == "not_regular_file"
    assert by_status["succeeded"]["path"].endswith("Bericht-\\xff.pdf")
