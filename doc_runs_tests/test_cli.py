"""doc-runs process, run as a user runs it: a subprocess on a SQLite instance."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from doc_runs_tests.documents import make_pdf

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def doc_runs(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", project / "dagster_home" / "dagster.yaml")
    return subprocess.run(
        [sys.executable, "-m", "doc_runs.cli", *args],
        cwd=project, env=os.environ.copy(), capture_output=True, text=True, timeout=600,
    )


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
                             "chunks", "summary", "run_id"}
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
    assert (project / "data" / "reports" / "corpus_report.csv").exists()


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
