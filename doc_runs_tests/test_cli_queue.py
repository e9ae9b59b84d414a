"""doc-runs submit, dlq and tenant, and `process` on the inputs that used to hang or crash it,
run as a user runs them: subprocesses against the real Redis."""

import json
import os
import time

import pytest

from doc_runs.queue.streams import StreamNames
from doc_runs_tests.helpers import doc_runs


@pytest.fixture
def queue_env(project, redis_server_url, redis_client, monkeypatch):
    client, prefix = redis_client
    monkeypatch.setenv("DOC_RUNS_STREAM_PREFIX", prefix)
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


def test_tenant_rotate_replaces_the_signing_key_and_revokes_old_tokens(project) -> None:
    from doc_runs.auth import Secrets, load_secrets

    secrets_file = project / "private" / "tenants.json"
    first = doc_runs(project, "tenant", "add", "acme", "--secrets-file", str(secrets_file))
    second = doc_runs(project, "tenant", "add", "acme", "--secrets-file", str(secrets_file))
    old_tokens = [first.stdout.strip(), second.stdout.strip()]

    def current() -> Secrets:
        return load_secrets({"DOC_RUNS_SECRETS_FILE": str(secrets_file)})

    old_key = current().tenant_secrets("acme").signing_key
    kept = doc_runs(project, "tenant", "rotate", "acme", "--keep-tokens",
                    "--secrets-file", str(secrets_file))
    assert kept.returncode == 0, kept.stderr
    assert current().tenant_secrets("acme").signing_key != old_key
    assert all(current().tenant_for_token(t) == "acme" for t in old_tokens)
    rotated = doc_runs(project, "tenant", "rotate", "acme", "--secrets-file", str(secrets_file))
    new_token = rotated.stdout.strip()
    assert rotated.returncode == 0 and len(new_token) >= 40
    assert current().tenant_for_token(new_token) == "acme"
    assert not any(current().tenant_for_token(t) for t in [*old_tokens, kept.stdout.strip()])
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    unknown = doc_runs(project, "tenant", "rotate", "beta", "--secrets-file", str(secrets_file))
    assert unknown.returncode == 1 and "no tenant 'beta'" in unknown.stderr


def test_a_token_file_that_cannot_be_written_changes_nothing(project) -> None:
    secrets_file = project / "private" / "tenants.json"
    first = doc_runs(project, "tenant", "add", "acme", "--secrets-file", str(secrets_file))
    before = secrets_file.read_bytes()
    for bad in (project / "private", project / "private" / "tenants.json" / "token"):
        refused = doc_runs(project, "tenant", "rotate", "acme", "--secrets-file",
                           str(secrets_file), "--token-file", str(bad))
        assert refused.returncode == 2, refused.stderr
        assert "cannot write the token file" in refused.stderr
        assert "Traceback" not in refused.stderr
    (project / "elsewhere").write_text("keep me")
    (project / "link").symlink_to(project / "elsewhere")
    linked = doc_runs(project, "tenant", "rotate", "acme", "--secrets-file", str(secrets_file),
                      "--token-file", str(project / "link"))
    assert linked.returncode == 2 and (project / "elsewhere").read_text() == "keep me"
    assert secrets_file.read_bytes() == before  # the old token still works
    assert first.stdout.strip()
    loose = project / "loose-token"
    loose.write_text("old")
    loose.chmod(0o644)
    rotated = doc_runs(project, "tenant", "rotate", "acme", "--secrets-file",
                       str(secrets_file), "--token-file", str(loose))
    assert rotated.returncode == 0, rotated.stderr
    assert loose.stat().st_mode & 0o777 == 0o600 and len(loose.read_text().strip()) >= 40
    missing = doc_runs(project, "tenant", "rotate", "acme", "--secrets-file",
                       str(project / "nowhere" / "tenants.json"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_a_redis_password_is_never_printed(project, monkeypatch) -> None:
    from doc_runs.queue.streams import redis_url_shown

    monkeypatch.setenv("DOC_RUNS_REDIS_URL", "redis://user:SeCrEtPw@127.0.0.1:1/0")
    down = doc_runs(project, "dlq", "list")
    assert down.returncode == 1 and "did not answer" in down.stderr
    assert "SeCrEtPw" not in down.stderr and "user:***@127.0.0.1:1" in down.stderr
    assert redis_url_shown("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redis_url_shown("redis://h:6379/0") == "redis://h:6379/0"


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


def test_bad_arguments_and_settings_are_clear_errors(project, queue_env, monkeypatch) -> None:
    sample = project / "a.txt"
    sample.write_text("A note. Two sentences.")
    for key in ("a\tb", "k" * 201):
        bad_key = doc_runs(project, "submit", str(sample), "--tenant", "acme",
                           "--idempotency-key", key)
        assert bad_key.returncode == 2 and "--idempotency-key must be" in bad_key.stderr
    assert not (project / "data" / "store" / "blobs").exists()  # refused before storing
    bad_fields = doc_runs(project, "submit", str(sample), "--tenant", "acme",
                          "--extra-fields", '{"Bad": "x"}')
    assert bad_fields.returncode == 2 and "https://" not in bad_fields.stderr
    missing = doc_runs(project, "dlq", "replay", "0" * 20, "--payload", "/nonexistent/file")
    assert missing.returncode == 2 and "No such file" in missing.stderr
    assert doc_runs(project, "dlq", "list", "--limit", "0").returncode == 2
    monkeypatch.setenv("DOC_RUNS_MAX_BYTES", "abc")
    for command in (("submit", str(sample), "--tenant", "acme"), ("process", str(sample))):
        broken = doc_runs(project, *command)
        assert broken.returncode == 2 and "configuration:" in broken.stderr
        assert "Traceback" not in broken.stderr
    monkeypatch.delenv("DOC_RUNS_MAX_BYTES")
    monkeypatch.setenv("DOC_RUNS_ALLOWED_ROOTS", "[")
    broken = doc_runs(project, "dlq", "list")
    assert broken.returncode == 2 and "DOC_RUNS_ALLOWED_ROOTS='[': expected JSON" in broken.stderr


def test_every_process_of_a_checkout_finds_the_same_state_and_keys(
        tmp_path, monkeypatch) -> None:
    from doc_runs.project import default_stream_prefix, project_dir
    from doc_runs_tests.helpers import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)  # a user in another folder
    assert project_dir() == PROJECT_ROOT
    for home in ("one", "two"):
        (tmp_path / home).mkdir()
    first = default_stream_prefix(str(tmp_path / "one"))
    assert first == default_stream_prefix(str(tmp_path / "one"))
    assert first.startswith("doc_runs:")
    # A wiped or another deployment: its own keys.
    assert default_stream_prefix(str(tmp_path / "two")) != first


def test_a_key_reused_for_another_file_is_refused_by_submit(project, queue_env) -> None:
    first, second = project / "first.txt", project / "second.txt"
    first.write_text("The first note. Two sentences.")
    second.write_text("The second note. Two sentences.")
    assert doc_runs(project, "submit", str(first), "--tenant", "acme",
                    "--idempotency-key", "order-17").returncode == 0
    again = doc_runs(project, "submit", str(second), "--tenant", "acme", "--json",
                     "--idempotency-key", "order-17")
    assert again.returncode == 1
    assert json.loads(again.stdout)["reason"] == "idempotency_conflict"
