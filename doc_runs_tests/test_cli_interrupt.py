"""`doc-runs process` interrupted as users interrupt it (its terminal closed: SIGHUP to the
whole process group), and a step that fails on one document of a range."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from doc_runs.core.store import DocumentStore
from doc_runs_tests.batches import records as recorded
from doc_runs_tests.documents import ten_page_pdf
from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs
from doc_runs_tests.live import children_of, wait_until


def code_servers_of(pid: int) -> list[int]:
    """The `dagster api grpc` processes whose parent is `pid`."""
    return children_of(pid, b"grpc")


def test_a_closed_terminal_cancels_the_runs_and_frees_their_slots(project) -> None:
    inputs = project / "in"
    inputs.mkdir()
    for i in range(40):
        (inputs / f"doc-{i:02d}.pdf").write_bytes(ten_page_pdf(i))
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.local.yaml",
                    project / "dagster_home" / "dagster.yaml")
    command = subprocess.Popen(
        [sys.executable, "-m", "doc_runs.cli", "process", str(inputs), "--batch-size", "10",
         "--no-report"], cwd=project, env=os.environ.copy(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with DagsterInstance.get() as instance:
            wait_until(lambda: any(r.status == DagsterRunStatus.STARTED
                                   for r in instance.get_runs()), 240, "a started run")
            os.killpg(command.pid, signal.SIGHUP)  # what closing the terminal does
            _, stderr = command.communicate(timeout=120)
            assert command.returncode == 130, stderr
            assert "interrupted (SIGHUP)" in stderr and "Run the same command again" in stderr
            runs = instance.get_runs()
            # Each run finished, was canceled, or failed when the signal reached its worker:
            # none is left queued, starting or started.
            states = [r.status for r in runs]
            assert runs and set(states) <= {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                            DagsterRunStatus.CANCELED}, states
            assert any(r.status == DagsterRunStatus.CANCELED for r in runs)
            # No slot of the `llm` pool is left held by a canceled run.
            info = instance.event_log_storage.get_concurrency_info("llm")
            assert not info.claimed_slots, info
            # Nor a progress journal of a run the interrupted command started.
            assert not list((project / "data" / "store" / "progress").glob("*"))
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()

    again = doc_runs(project, "process", str(inputs), "--json", "--no-report")
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"succeeded"}


def test_a_step_failing_on_one_document_records_none_as_done(project, text_pdf,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_STAGE_RETRIES", "0")
    inputs = project / "in"
    inputs.mkdir()
    (inputs / "a.md").write_text("# A\n\n- The budget was approved.\n")
    (inputs / "b.md").write_text("# B\n\n- The audit is done.\n")
    store = DocumentStore(project / "data" / "store")
    b_id = store.put_bytes((inputs / "b.md").read_bytes())
    # b's chunks cannot be written (a folder where its file goes): an I/O error, transient.
    (project / "data" / "store" / "artifacts" / "document_chunks" / "v1" / f"{b_id}.json"
     ).mkdir(parents=True)
    done = doc_runs(project, "process", str(inputs), "--json", "--no-report")
    assert done.returncode == 1, done.stderr
    lines = {os.path.basename(x["path"]): x for x in map(json.loads, done.stdout.splitlines())}
    assert {line["status"] for line in lines.values()} == {"failed"}
    assert "document_chunks" in lines["a.md"]["detail"]
    assert "IsADirectoryError" in lines["b.md"]["detail"]
    # What the run printed went to a log file the command names, not over its output.
    (named,) = [line for line in done.stderr.splitlines() if "the runs' own output is in" in line]
    log = named.rsplit(" ", 1)[1]
    assert "IsADirectoryError" in Path(log).read_text(encoding="utf-8")
    assert "Traceback" not in done.stderr
    run_id = lines["a.md"]["run_id"]
    # a finished chunking before b failed, but the step did not: no record says so.
    for key in (lines["a.md"]["document_id"], b_id):
        with DagsterInstance.get() as instance:
            records = recorded(instance, key)
        assert records["document_text"]["run_id"] == run_id
        assert "document_chunks" not in records


def test_interrupted_while_storing_its_inputs_it_stops_the_code_server(project) -> None:
    """The code server starts while the inputs are stored: a SIGTERM then stops it too, and
    the command says nothing ran."""
    inputs = project / "in"
    inputs.mkdir()
    for i in range(20_000):  # seconds of storing
        (inputs / f"note-{i:05d}.txt").write_text(f"Note {i}. Two sentences here.\n")
    command = subprocess.Popen(
        [sys.executable, "-m", "doc_runs.cli", "process", str(inputs), "--no-report"],
        cwd=project, env=os.environ.copy(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (server,) = wait_until(lambda: code_servers_of(command.pid), 120, "its code server")
        command.send_signal(signal.SIGTERM)
        _, stderr = command.communicate(timeout=120)
        assert command.returncode == 130, stderr
        assert "interrupted (SIGTERM) before any run started" in stderr, stderr

        def gone() -> bool:
            try:  # a zombie (exited, not yet reaped) has an empty command line
                return b"grpc" not in Path(f"/proc/{server}/cmdline").read_bytes()
            except OSError:
                return True

        # Asked to shut down as the command exits, it is gone soon after.
        wait_until(gone, 60, "the code server to exit")
        with DagsterInstance.get() as instance:
            assert instance.get_runs() == []
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()
