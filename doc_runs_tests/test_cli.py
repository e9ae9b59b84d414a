"""doc-runs process, run as a user runs it: a subprocess on a SQLite instance."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from doc_runs_tests.documents import make_pdf
from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs, instance_day


def test_process_prints_one_json_line_per_file(project, text_pdf) -> None:
    inputs = project / "in"
    (inputs / "nested").mkdir(parents=True)
    (inputs / "report.pdf").write_bytes(text_pdf)
    (inputs / "nested" / "copy-of-report.pdf").write_bytes(text_pdf)  # the same document
    (inputs / "report-named-wrong.txt").write_bytes(make_pdf(["A PDF named as text. It works."]))
    (inputs / "fake.pdf").write_text("not even a pdf file.\n")
    (inputs / "unreadable.pdf").symlink_to(project / "nowhere.pdf")

    done = doc_runs(project, "process", str(inputs), "--json", "--batch-size", "1")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_name = {Path(line["path"]).name: line for line in lines}
    assert len(lines) == 5
    assert set(lines[0]) == {"path", "document_id", "status", "reason", "detail", "pages",
                             "chunks", "findings", "summary", "usage", "run_id"}
    report, copy = by_name["report.pdf"], by_name["copy-of-report.pdf"]
    assert report["document_id"] == copy["document_id"] and report["run_id"] == copy["run_id"]
    assert (report["status"], report["pages"]) == ("succeeded", 2)
    assert report["chunks"] >= 1 and "Revenue" in report["summary"]
    assert by_name["report-named-wrong.txt"]["status"] == "succeeded"
    assert (by_name["fake.pdf"]["status"], by_name["fake.pdf"]["reason"]) == (
        "quarantined", "not_pdf")
    unreadable = by_name["unreadable.pdf"]
    assert (unreadable["status"], unreadable["reason"], unreadable["document_id"]) == (
        "quarantined", "unreadable", None)

    with DagsterInstance.get() as instance:
        run_ids = {line["run_id"] for line in lines if line["run_id"]}
        assert len(run_ids) == 3  # --batch-size 1: one run per distinct document
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert run.is_success
            # Created against the code location, so the UI can re-execute it.
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == "doc_runs"
    day = instance_day(run_ids)
    assert (project / "data" / "reports" / f"corpus_report-{day}.csv").exists()


def test_missing_path_is_a_usage_error(project) -> None:
    done = doc_runs(project, "process", str(project / "does-not-exist"), "--json")
    assert done.returncode == 2
    assert "no such file or directory" in done.stderr
    assert done.stdout == ""


def test_empty_folder_prints_nothing_and_succeeds(project) -> None:
    (project / "empty").mkdir()
    done = doc_runs(project, "process", str(project / "empty"), "--json", "--no-report")
    assert (done.returncode, done.stdout) == (0, "")


def test_transient_failure_reports_failed_and_exits_1(project, text_pdf, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_RETRY_DELAY_S", "0.1")
    (project / "in").mkdir()
    (project / "in" / "a.pdf").write_bytes(text_pdf)
    # The chunks stage cannot write: a file sits where its artifact folder belongs.
    blocker = project / "data" / "store" / "artifacts" / "document_chunks"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    done = doc_runs(project, "process", str(project / "in"), "--json", "--no-report")
    assert done.returncode == 1, done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert line["status"] == "failed" and line["reason"] is None
    assert line["detail"].startswith("document_chunks:")
    with DagsterInstance.get() as instance:
        retries = instance.all_logs(line["run_id"], of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        assert len(retries) == 3  # transient: retried by the RetryPolicy, then failed


def _citations_exist(project: Path, line: dict) -> None:
    chunks_file = next((project / "data" / "store" / "artifacts" / "document_chunks")
                       .rglob(f"{line['document_id']}.json"))
    chunk_ids = {c["id"] for c in json.loads(chunks_file.read_text())["chunks"]}
    pages = set(range(1, line["pages"] + 1))
    for answer in line["findings"].values():
        for citation in (c for v in answer["values"] for c in v["citations"]):
            assert citation in chunk_ids or int(citation.lstrip("p")) in pages
    summary_file = next((project / "data" / "store" / "artifacts" / "document_summary")
                        .rglob(f"{line['document_id']}.json"))
    for sentence in json.loads(summary_file.read_text())["summary"]["sentences"]:
        assert sentence["chunk_id"] in chunk_ids


def test_shipped_samples_get_findings_and_summaries_offline(project) -> None:
    done = doc_runs(project, "process", str(PROJECT_ROOT / "data" / "samples"), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert len(lines) == 3 and all(line["status"] == "succeeded" for line in lines)
    for line in lines:
        assert line["summary"]
        answered = [v for v in line["findings"].values() if v["values"]]
        assert line["findings"]["title"]["values"] and len(answered) >= 4
        assert line["usage"]["model_calls"] == 2 and line["usage"]["cost_usd"] == 0
        _citations_exist(project, line)
    agreement = next(x for x in lines if x["path"].endswith("service-agreement.pdf"))
    found = {name: [v["value"] for v in answer["values"]]
             for name, answer in agreement["findings"].items()}
    assert found["document_type"] == ["contract"]
    assert "Northwind Traders Ltd" in found["parties"]
    assert {"amount": 12500, "currency": "EUR"} in found["amounts"]


def test_same_command_against_an_openai_compatible_server(project, monkeypatch) -> None:
    from doc_runs_tests.chat_server import ScriptedChatServer, point_doc_runs_at

    with ScriptedChatServer() as server:
        point_doc_runs_at(server, monkeypatch)
        monkeypatch.setenv("DOC_RUNS_PRICE_IN_PER_MTOK", "1.5")
        monkeypatch.setenv("DOC_RUNS_PRICE_OUT_PER_MTOK", "6")
        sample = PROJECT_ROOT / "data" / "samples" / "incident-report.txt"
        done = doc_runs(project, "process", str(sample), "--json", "--tenant", "acme")
        assert done.returncode == 0, done.stderr
        (line,) = [json.loads(x) for x in done.stdout.splitlines()]
        assert line["status"] == "succeeded"
        usage = line["usage"]
        # findings: search + submit; summary: one chunk mapped, then reduced.
        assert usage["model_calls"] == len(server.requests) == 4
        expected = (usage["tokens_in"] * 1.5 + usage["tokens_out"] * 6) / 1e6
        assert usage["cost_usd"] == pytest.approx(expected)
        assert {r["model"] for r in server.requests} == {"scripted-model"}
        _citations_exist(project, line)
        import pandas as pd

        day = instance_day({line["run_id"]})
        ledger = pd.read_csv(project / "data" / "reports" / f"usage_ledger-{day}.csv")
        assert set(ledger["tenant"]) == {"acme"}
        report = pd.read_csv(project / "data" / "reports" / f"corpus_report-{day}.csv")
        assert report.loc[0, "model_calls"] == 4


def test_runs_respect_the_instance_run_limit(project, text_pdf) -> None:
    """With max_concurrent_runs: 1 on the instance, the command's runs never overlap."""
    import yaml

    inputs = project / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"note-{i}.md").write_text(f"# Note {i}\n\n- Item {i} was approved.\n")
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = 1
    done = doc_runs(project, "process", str(inputs), "--json", "--batch-size", "1",
                    "--no-report", dagster_yaml=yaml.safe_dump(config))
    assert done.returncode == 0, done.stderr
    with DagsterInstance.get() as instance:
        records = sorted(instance.get_run_records(), key=lambda r: r.start_time)
    assert len(records) == 3
    for earlier, later in itertools.pairwise(records):
        assert earlier.end_time <= later.start_time


def test_batches_follow_the_document_count_and_the_cores() -> None:
    from doc_runs.cli.runs import plan_batches

    assert plan_batches(1000, None, 2) == 500  # 2 runs, one per core
    assert plan_batches(1500, None, 2) == 375  # 4 runs: two waves of two
    assert plan_batches(10, None, 2) == 10  # one run: a second would cost more than it saves
    assert plan_batches(100, None, 2) == 50
    assert plan_batches(1, None, 4) == 1
    assert plan_batches(10_000, None, 2) == 500
    assert plan_batches(1000, 50, 2) == 50  # --batch-size wins


def test_inputs_all_refused_start_no_run(project) -> None:
    inputs = project / "in"
    inputs.mkdir()
    os.mkfifo(inputs / "pipe.pdf")
    done = doc_runs(project, "process", str(inputs), "--json")
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert (line["status"], line["reason"]) == ("quarantined", "not_regular_file")
    with DagsterInstance.get() as instance:
        assert instance.get_runs() == []  # not even the report


def test_a_new_dagster_home_is_made_with_the_local_settings(project, monkeypatch) -> None:
    home = project / "fresh" / "home"  # does not exist yet
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (project / "note.txt").write_text("A note. It has two sentences.\n")
    done = subprocess.run([sys.executable, "-m", "doc_runs.cli", "process", "note.txt",
                           "--json", "--no-report"], cwd=project, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert (home / "dagster.yaml").read_text() == (
        PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text()
    assert "No dagster instance configuration file" not in done.stderr


def test_an_unknown_pdf_engine_is_a_configuration_error_before_any_run(
        project, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_PDF_ENGINE", "pdfiun")
    (project / "note.txt").write_text("A note.\n")
    done = doc_runs(project, "process", "note.txt", "--no-report")
    assert done.returncode == 2
    assert "DOC_RUNS_PDF_ENGINE='pdfiun': expected 'pypdf' or 'pdfium'" in done.stderr
    assert "Traceback" not in done.stderr
    with DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def test_a_document_taken_by_a_newer_request_reads_superseded(tmp_path) -> None:
    """What `process --json` says of a document its run did not record: superseded when the
    run ended well (a newer batch took the document meanwhile), failed with the run's reason
    when it did not."""
    from doc_runs.cli.process import document_result
    from doc_runs.core.catalog import DocumentCatalog, NewDocument
    from doc_runs.core.store import DocumentStore

    store = DocumentStore(tmp_path / "store")
    document_id = store.put_bytes(b"A note asked for twice. Two sentences.")
    with DocumentCatalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        first = catalog.register_batch("first", "default", [NewDocument(document_id)], "cli")
        catalog.write_stage_records(first, "document", {document_id: {
            "status": "succeeded", "run_id": "run-1"}})
        catalog.register_batch("again", "default", [NewDocument(document_id)], "queue")
        taken = document_result(store, catalog, document_id, "run-1", None)
        failed = document_result(store, catalog, document_id, "run-1", "document_text: boom")
    assert taken["status"] == "superseded" and f"status {document_id}" in taken["detail"]
    assert (failed["status"], failed["detail"]) == ("failed", "document_text: boom")


def test_a_reader_that_stops_early_is_not_an_error(project) -> None:
    """`doc-runs status | head`: the reader closes the pipe before the command writes."""
    (project / "dagster_home" / "dagster.yaml").write_text(
        (PROJECT_ROOT / "deploy" / "dagster.local.yaml").read_text())
    command = subprocess.Popen([sys.executable, "-m", "doc_runs.cli", "status"], cwd=project,
                               env=os.environ.copy(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()  # long before the command has loaded
    errors = command.stderr.read().decode()
    assert command.wait(timeout=120) == 0, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
