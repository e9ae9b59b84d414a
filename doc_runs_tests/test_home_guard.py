"""One `bin/up` per home: a second one on the same DAGSTER_HOME refuses, naming the first,
before it starts anything; a claim whose process is gone (ended, or from before the host
restarted), or that cannot be read, is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from doc_runs.core.run_workers import WorkerIdentity
from doc_runs.home_guard import CLAIM_FILE, HomeTaken, claim_home
from doc_runs_tests.live import running_in
from doc_runs_tests.test_cli import PROJECT_ROOT


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child
    child.kill()
    child.wait()


def test_a_second_claim_is_refused_naming_the_first_until_it_ends(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    home = tmp_path / "home"
    claim_home(home, sleeper.pid)
    with pytest.raises(HomeTaken) as taken:
        claim_home(home, os.getpid())
    assert f"pid {sleeper.pid} on " in str(taken.value)
    assert "kill that pid" in str(taken.value)
    claim_home(home, sleeper.pid)  # its own claim again: fine
    sleeper.kill()
    sleeper.wait()
    claim_home(home, os.getpid())  # the holder is gone: taken over
    assert json.loads((home / CLAIM_FILE).read_text())["pid"] == os.getpid()


def write_claim(home: Path, identity: WorkerIdentity) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / CLAIM_FILE).write_text(json.dumps({**asdict(identity), "started_at": 0}))


def test_a_claim_from_before_the_host_restarted_is_taken_over(tmp_path: Path) -> None:
    write_claim(tmp_path, replace(WorkerIdentity.of_process(), boot_id="an-earlier-boot",
                                  pid=1))
    claim_home(tmp_path, os.getpid())


def test_a_claim_of_another_machine_is_named_with_how_to_drop_it(tmp_path: Path) -> None:
    write_claim(tmp_path, replace(WorkerIdentity.of_process(), host="other.internal", pid=7))
    with pytest.raises(HomeTaken) as taken:
        claim_home(tmp_path, os.getpid())
    assert "pid 7 on other.internal" in str(taken.value)
    assert f"delete {tmp_path / CLAIM_FILE}" in str(taken.value)


@pytest.mark.parametrize("content", ["", "{not json", '{"pid": "x"}', "[]"])
def test_an_unreadable_claim_is_taken_over(tmp_path: Path, content: str) -> None:
    (tmp_path / CLAIM_FILE).write_text(content)
    claim_home(tmp_path, os.getpid())


def test_bin_up_on_a_home_in_use_stops_before_starting_anything(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    home = tmp_path / "home"
    claim_home(home, sleeper.pid)  # as the first bin/up would
    second = subprocess.run(
        ["bash", str(PROJECT_ROOT / "bin" / "up")], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, env={**os.environ, "DAGSTER_HOME": str(home),
                                     "DOC_RUNS_SECRETS_FILE": str(tmp_path / "secrets.json")})
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"already in use by another bin/up: pid {sleeper.pid}" in second.stderr
    assert not (home / "dagster.yaml").exists()  # nothing was set up
    assert not running_in(PROJECT_ROOT, b"dagster dev")


def test_the_guard_command_says_how_to_use_it(tmp_path: Path) -> None:
    usage = subprocess.run([sys.executable, "-m", "doc_runs.home_guard"], capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    missing = subprocess.run([sys.executable, "-m", "doc_runs.home_guard",
                              str(tmp_path / "home"), "999999999"], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "no process 999999999" in missing.stderr
    assert not (tmp_path / "home").exists()
