"""Long-running processes the end-to-end tests and benchmarks start as a user would (`dagster
dev`, `doc-runs api`): each in a session of its own, so stopping it stops its children too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def children_of(parent_pid: int, marker: bytes) -> list[int]:
    """Pids of the processes whose parent is `parent_pid` and whose command line holds
    `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in command and int(stat.rsplit(b")", 1)[1].split()[1]) == parent_pid:
            found.append(int(entry.name))
    return found


def stop_dagster_dev(process: subprocess.Popen[bytes], folder: Path, grace_s: float = 60
                     ) -> None:
    """Stops `dagster dev` and every process it left in `folder`: it leaves its code servers
    to notice their missing heartbeat, and a code server waits for its runs. They are asked to
    stop (SIGTERM) as an operator would; what is still there after `grace_s` is killed and
    named in an AssertionError."""
    stop_detached(process)
    for pid, _ in running_in(folder, b"dagster"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (left := running_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.25)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        raise AssertionError(f"still running {grace_s:g} s after dagster dev stopped: {left}")


def running_in(folder: Path, marker: bytes = b"") -> list[tuple[int, str]]:
    """(pid, command line) of every process but this one working in `folder` or below whose
    command line holds `marker`, whatever its session or parent: what a test's servers, their
    run workers and those workers' PDF workers leave if they leak."""
    folder = folder.resolve()  # /proc gives working directories resolved
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or a zombie
            continue
        if (cwd == folder or folder in cwd.parents) and marker in command:
            found.append((int(entry.name), command.replace(b"\0", b" ").decode(
                errors="replace").strip()))
    return found


def wait_for_none(find: Callable[[], list[tuple[int, str]]], timeout: float
                  ) -> list[tuple[int, str]]:
    """What `find` still finds after up to `timeout` seconds (processes may be ending)."""
    deadline = time.monotonic() + timeout
    while (found := find()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def api_answers(base_url: str) -> bool:
    """Whether the doc_runs HTTP API at `base_url` says it can take an upload."""
    import httpx

    try:
        return httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def dagster_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
            return True
    except OSError:
        return False


def start_detached(command: list[str], cwd: Path, log: Path | None = None,
                   env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`command` in a session of its own, with this environment and `env` on top."""
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})},
                                start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            output.close()  # the child has its own copy


def stop_detached(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group ended already
        process.wait()
        return
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
