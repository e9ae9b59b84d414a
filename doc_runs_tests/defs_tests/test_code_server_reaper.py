"""A code server that does not end when its command leaves is stopped after a grace period
(doc_runs.defs.code_server_reaper); the reaper never touches another process that happens to
get the same pid."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from doc_runs.defs.code_server_reaper import main, still_running

# Every test here starts processes (left out by --quick).
pytestmark = pytest.mark.processes


def sleeper() -> subprocess.Popen[bytes]:
    # Ignores SIGTERM, like a server stuck past its own shutdown: only the kill ends it.
    return subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE)


def test_a_process_still_there_after_the_grace_period_is_stopped() -> None:
    stuck = sleeper()
    assert stuck.stdout is not None and stuck.stdout.readline() == b"ready\n"
    created = psutil.Process(stuck.pid).create_time()
    started = time.monotonic()
    assert main(["0.5", f"{stuck.pid}:{created}"]) == 0
    assert stuck.wait(timeout=10) is not None
    assert time.monotonic() - started < 10


def test_a_process_that_is_not_the_named_one_is_left_alone() -> None:
    other = sleeper()
    try:
        assert other.stdout is not None and other.stdout.readline() == b"ready\n"
        # The same pid, another start time: a reused pid, not the server that was named.
        assert still_running([f"{other.pid}:12345.0", "not-a-pid:1", "999999999:1.0"]) == []
        assert main(["0.1", f"{other.pid}:12345.0"]) == 0
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
