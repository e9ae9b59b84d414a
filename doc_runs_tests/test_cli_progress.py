"""What `doc-runs process` shows while it works and when it is done: per-stage progress on a
terminal (a real pseudo-terminal, as a user's), nothing when piped unless --progress, and a
table that fits 100 columns with the detail of quarantined documents."""

import io
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len

from doc_runs.cli.progress import STAGES, ProgressView, StageCounts, print_outcome_table
from doc_runs.core.store import DocumentStore
from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")  # colours, cursor moves, returns


def run_on_a_terminal(project: Path, *args: str, columns: int = 100) -> tuple[int, str]:
    """Runs doc-runs with stdin, stdout and stderr on a pseudo-terminal, as `script` or tmux
    would, and returns the exit code and everything the terminal received."""
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.local.yaml",
                    project / "dagster_home" / "dagster.yaml")
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    child = subprocess.Popen([sys.executable, "-m", "doc_runs.cli", *args], cwd=project,
                             env=env, stdin=terminal, stdout=terminal, stderr=terminal,
                             close_fds=True)
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        elif child.poll() is not None:
            break
    code = child.wait(timeout=60)
    os.close(controller)
    return code, received.decode("utf-8", "replace")


def test_a_terminal_shows_progress_per_stage_and_a_narrow_table(project, text_pdf) -> None:
    inputs = project / "in"
    inputs.mkdir()
    (inputs / "quarterly report.pdf").write_bytes(text_pdf)
    (inputs / "notes.md").write_text("# Notes\n\n- The budget was approved.\n- Audit done.\n")
    long_name = "a broken file whose name goes on far longer than any table column " * 2
    (inputs / f"{long_name.strip()}.pdf").write_bytes(b"%PDF-1.7\n" + b"1 0 obj <<" * 50)

    code, screen = run_on_a_terminal(project, "process", str(inputs), "--batch-size", "2",
                                     "--no-report")
    assert code == 0, screen
    text = ANSI.sub("", screen)

    def frames(label: str) -> list[str]:
        """What the bar of `label` said, frame after frame: "done/total" and its note."""
        return [f"{done} {note}".strip() for done, note in
                re.findall(rf"{label} +[━╺╸ ]+ (\d+/\d+) ?(\d+ quarantined)?", text)]

    # A bar per stage that moves as documents finish it, and ends at every document.
    for stage in STAGES:
        assert frames(stage), (stage, text)
        assert frames(stage)[-1].startswith("3/3"), (stage, frames(stage))
    assert frames("document")[0].startswith("0/3")
    assert frames("document_text")[-1] == "3/3 1 quarantined"
    assert frames("runs finished")[-1] == "2/2"
    # The table: no line wider than 100 columns; the quarantined file's detail under it.
    table = screen[screen.index("file "):]
    lines = [ANSI.sub("", line) for line in table.splitlines()]
    assert max(cell_len(line) for line in lines) <= 100
    (row,) = [i for i, line in enumerate(lines) if "quarantined" in line and "…" in line]
    assert lines[row + 1].startswith("    ") and len(lines[row + 1].strip()) > 10
    assert "2 succeeded" in table and "1 quarantined" in table
    # The journals were for this command only.
    assert not list((project / "data" / "store" / "progress").glob("*"))


def test_piped_output_has_no_progress_unless_asked(project, text_pdf) -> None:
    inputs = project / "in"
    inputs.mkdir()
    (inputs / "report.pdf").write_bytes(text_pdf)
    quiet = doc_runs(project, "process", str(inputs), "--no-report")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # nor anything the runs print themselves
    assert "1 succeeded" in quiet.stdout

    asked = doc_runs(project, "process", str(inputs), "--no-report", "--progress")
    assert asked.returncode == 0, asked.stderr
    lines = [line for line in asked.stderr.splitlines() if line.startswith("progress: ")]
    assert lines and "\x1b" not in asked.stderr
    assert lines[-1] == ("progress: runs 1/1, document 1/1, document_text 1/1, "
                         "document_chunks 1/1, document_findings 1/1, document_summary 1/1")


def test_counts_read_each_journal_once_and_count_a_retry_once(project) -> None:
    store = DocumentStore(project / "data" / "store")
    a, b, other = "a" * 64, "b" * 64, "c" * 64
    counts = StageCounts(store, [a, b], ["run-1"])
    counts.add_run("run-2")
    assert not counts.read()
    store.append_progress("run-1", {"stage": "document", "document_id": a,
                                    "status": "succeeded", "reason": None})
    store.append_progress("run-1", {"stage": "document", "document_id": other,  # not ours
                                    "status": "succeeded", "reason": None})
    assert counts.read() and counts.done["document"] == {a}
    # A retried step writes its documents again; a quarantined document counts where it
    # was quarantined, not at the stages it passed through afterwards.
    for stage in ("document", "document_text"):
        store.append_progress("run-2", {"stage": stage, "document_id": b,
                                        "status": "quarantined", "reason": "corrupt"})
    store.append_progress("run-1", {"stage": "document", "document_id": a,
                                    "status": "succeeded", "reason": None})
    assert counts.read()
    assert counts.done["document"] == {a, b} and counts.done["document_text"] == {b}
    assert counts.quarantined["document"] == {b} and counts.quarantined["document_text"] == set()
    assert not counts.read()
    # A half-written line waits for its end.
    with store.progress_path("run-2").open("ab") as journal:
        journal.write(b'{"stage": "document_chunks", "document_id": "' + b.encode())
    assert not counts.read()
    with store.progress_path("run-2").open("ab") as journal:
        journal.write(b'", "status": "quarantined", "reason": "corrupt"}\n')
    assert counts.read() and counts.done["document_chunks"] == {b}


def test_plain_lines_are_printed_when_counts_move_and_at_the_end(project) -> None:
    store = DocumentStore(project / "data" / "store")
    a = "a" * 64
    out = io.StringIO()
    with ProgressView(StageCounts(store, [a], ["run-1"]), live=False, runs_total=1,
                      stream=out, min_interval_s=0) as view:
        view.update(0)
        view.update(0)  # nothing moved: no line
        store.append_progress("run-1", {"stage": "document", "document_id": a,
                                        "status": "succeeded", "reason": None})
        view.update(1)
    lines = out.getvalue().splitlines()
    assert lines == [
        "progress: runs 0/1, document 0/1, document_text 0/1, document_chunks 0/1, "
        "document_findings 0/1, document_summary 0/1",
        "progress: runs 1/1, document 1/1, document_text 0/1, document_chunks 0/1, "
        "document_findings 0/1, document_summary 0/1",
    ]


def test_the_table_fits_100_columns_with_wide_and_odd_names() -> None:
    rows = [
        {"path": "in/" + "報告書" * 30 + ".pdf", "document_id": "ab" * 32,
         "status": "quarantined", "reason": "invalid_tool_payload", "pages": 1200,
         "chunks": 31000, "detail": "line one\nline two\t" + "x" * 300, "run_id": "r" * 36},
        {"path": "in/ok.pdf", "document_id": "cd" * 32, "status": "succeeded",
         "reason": None, "pages": 2, "chunks": 1, "detail": None, "run_id": "r" * 36},
        {"path": "in/fifo", "document_id": None, "status": "quarantined",
         "reason": "not_regular_file", "pages": None, "chunks": None,
         "detail": "a FIFO, socket, device or folder", "run_id": None},
    ]
    out = io.StringIO()
    print_outcome_table(rows, out)
    lines = out.getvalue().splitlines()
    assert max(cell_len(line) for line in lines) <= 100
    assert lines[0].split() == ["file", "document", "status", "reason", "pages", "chunks"]
    # A long path is cut at its start: the file's own name stays.
    assert lines[1].startswith("…") and "書.pdf " in lines[1] and "31000" in lines[1]
    assert lines[2].startswith("    line one line two xxx") and lines[2].endswith("…")
    assert lines[4].startswith("in/fifo ") and lines[5] == "    a FIFO, socket, device or folder"
    assert "2 quarantined, 1 succeeded" in lines


def test_a_narrow_terminal_drops_the_id_column_and_keeps_file_names_apart() -> None:
    class Narrow(io.StringIO):
        def isatty(self) -> bool:
            return True

    rows = [{"path": f"/srv/clients/acme-corporation-international/2026/{name}",
             "document_id": "ab" * 32, "status": "succeeded", "reason": None, "pages": 3,
             "chunks": 2, "detail": None, "run_id": f"{i}" * 36}
            for i, name in enumerate(["invoice-001.pdf", "invoice-002.pdf"] * 4)]
    out = Narrow()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "60")
        print_outcome_table(rows, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["file", "status", "reason", "pages", "chunks"]
    assert max(cell_len(line) for line in lines) <= 60
    assert "invoice-001.pdf" in lines[1] and "invoice-002.pdf" in lines[2]
