"""bin/up's stop of its keepers (doc_runs/stop_keepers.py): a keeper that ends on SIGTERM is
gone with its child at once; one that takes the signal for its child's failure and starts the
child again (what the chaos test met under load) is killed with all it started once the grace
period is over, and leaves nothing running."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from doc_runs.stop_keepers import stop_keepers

# Every test here starts processes (left out by --quick).
pytestmark = pytest.mark.processes

# A keeper as bin/up's supervise loop: runs its child, waits for it, starts it again.
OBEDIENT = 'trap "exit 0" TERM; while true; do sleep 60 & wait $!; done'
# One whose trap never fires: each end of its child is taken for a failure.
STUBBORN = 'trap "" TERM; while true; do sleep 60 & wait $!; done'


@pytest.fixture
def keepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # whatever a failed test left running
        if process.poll() is None:
            for left in psutil.Process(process.pid).children(recursive=True):
                left.kill()
            process.kill()
        process.wait()


def start(keepers: list[subprocess.Popen[bytes]], script: str) -> psutil.Process:
    keeper = subprocess.Popen(["bash", "-c", script])
    keepers.append(keeper)
    process = psutil.Process(keeper.pid)
    deadline = time.monotonic() + 10
    while not process.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.children(), "the keeper started no child"
    return process


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_obedient_keeper_and_its_child_end_without_being_killed(keepers) -> None:
    keeper = start(keepers, OBEDIENT)
    child = keeper.children()[0]
    started = time.monotonic()
    assert stop_keepers([keeper.pid], grace_s=10) == []
    assert time.monotonic() - started < 5
    assert gone(keeper) and gone(child)


def test_a_keeper_that_restarts_its_child_is_killed_with_all_it_started(keepers) -> None:
    keeper = start(keepers, STUBBORN)
    first_child = keeper.children()[0]
    killed = stop_keepers([keeper.pid], grace_s=1.5)
    assert keeper.pid in killed
    assert gone(keeper) and gone(first_child)
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == keeper.pid]
