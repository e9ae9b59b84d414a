"""One `bin/up` per home: a second one on the same DAGSTER_HOME refuses, naming the first,
before it starts anything, for as long as anything the first started still runs (even with
the first shell killed); once all of it is gone, however it ended, the home is free again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from doc_runs.home_guard import CLAIM_FILE, LOCK_FILE, HomeTaken, claim_home
from doc_runs_tests.helpers import PROJECT_ROOT

# Every test here starts processes (left out by --quick).
pytestmark = pytest.mark.processes

# A stand-in for bin/up's shell: takes the home as bin/up does, then starts a child that
# inherits the locked descriptor (as dagster dev and the API do), and waits.
HOLDER = """
exec 9>>"$1/.doc-runs-up.lock"
"$2" -m doc_runs.home_guard "$1" $$ 9 || exit 1
"$2" -c 'import time; time.sleep(120)' &
echo "$!" > "$1/child.pid"
wait
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    made = tmp_path / "home"
    made.mkdir()
    return made


def hold(home: Path) -> subprocess.Popen[bytes]:
    shell = subprocess.Popen(["bash", "-c", HOLDER, "holder", str(home), sys.executable],
                             start_new_session=True)
    deadline = time.monotonic() + 30
    while not (home / "child.pid").exists() or not (home / "child.pid").read_text().strip():
        assert shell.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.05)
    return shell


@pytest.fixture
def holder(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    shell = hold(home)
    yield shell
    os.killpg(shell.pid, signal.SIGKILL)
    shell.wait()


def try_claim(home: Path, pid: int | None = None) -> None:
    fd = os.open(home / LOCK_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        claim_home(home, os.getpid() if pid is None else pid, fd)
    finally:
        os.close(fd)  # the lock goes with it


def test_a_second_claim_is_refused_naming_the_first(
        home: Path, holder: subprocess.Popen[bytes]) -> None:
    with pytest.raises(HomeTaken) as taken:
        try_claim(home)
    said = str(taken.value)
    assert f"already in use by another bin/up: pid {holder.pid} on " in said
    child = (home / "child.pid").read_text().strip()
    assert f"{holder.pid} (bash)" in said and f"{child} (python" in said


def test_the_home_stays_taken_while_a_process_the_first_started_runs(
        home: Path, holder: subprocess.Popen[bytes]) -> None:
    holder.kill()  # the bin/up shell alone killed: what it started runs on
    holder.wait()
    with pytest.raises(HomeTaken):
        try_claim(home)
    os.kill(int((home / "child.pid").read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:  # the last holder gone: the home is free, nothing to clean
        try:
            try_claim(home)
            break
        except HomeTaken:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert json.loads((home / CLAIM_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("claim", ["", "{not json", '{"pid": "x"}', "[]", "fifo", "folder"])
def test_a_claim_note_that_cannot_be_read_neither_blocks_nor_breaks(
        home: Path, claim: str) -> None:
    note = home / CLAIM_FILE
    if claim == "fifo":
        os.mkfifo(note)
    elif claim == "folder":
        note.mkdir()
    else:
        note.write_text(claim)
    try_claim(home)  # free: taken, whatever the note
    shell = hold(home)
    try:
        with pytest.raises(HomeTaken) as taken:
            try_claim(home)
        assert "already in use by another bin/up" in str(taken.value)
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_bin_up_on_a_home_in_use_stops_before_starting_anything(
        home: Path, holder: subprocess.Popen[bytes], tmp_path: Path) -> None:
    second = subprocess.run(
        ["bash", str(PROJECT_ROOT / "bin" / "up")], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, env={**os.environ, "DAGSTER_HOME": str(home),
                                     "DOC_RUNS_SECRETS_FILE": str(tmp_path / "secrets.json")})
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"already in use by another bin/up: pid {holder.pid}" in second.stderr
    assert not (home / "dagster.yaml").exists()  # nothing was set up
    assert "Dagster UI" not in second.stdout


def test_the_guard_command_says_how_to_use_it(home: Path) -> None:
    usage = subprocess.run([sys.executable, "-m", "doc_runs.home_guard"], capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    closed = subprocess.run([sys.executable, "-m", "doc_runs.home_guard", str(home), "1",
                             "77"], capture_output=True, text=True)
    assert closed.returncode == 2 and "cannot lock" in closed.stderr
