"""Run a command and account for every process it starts: wall time, CPU seconds and the
largest resident set of the whole process tree, plus the command's own peak memory.

A command such as `doc-runs process` starts a code server, which starts run workers, which
start extraction workers; some of them outlive their parent. This process makes itself a
child subreaper (Linux prctl), so orphaned descendants are re-parented to it and reaped here;
a reaped process's CPU time is added to its reaper's children's usage, which makes
RUSAGE_CHILDREN the CPU of the whole tree. Run it once per measurement: RUSAGE_CHILDREN's
maxrss is a maximum over this process's life.

    python bench/process_tree.py [--cwd DIR] -- COMMAND ARGS...   (prints one JSON object)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reap_orphans(grace_s: float) -> int:
    """Waits for descendants that outlived the command (re-parented here); their CPU time
    counts only once reaped. Returns how many were still there."""
    reaped = 0
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped  # none left
        if pid:
            reaped += 1
        else:
            time.sleep(0.05)
    return reaped


def _stop_gently(process: subprocess.Popen[bytes]) -> None:
    """Interrupted: pass the interrupt on and wait, so that the command stops what it started
    (doc-runs process cancels its runs) instead of being left running by a killed parent.
    A Ctrl-C in a terminal reaches the whole process group: the command may be stopping
    already, and a second signal would cut its cleanup short."""
    for signal_first, wait_s in ((None, 30), (signal.SIGINT, 120), (signal.SIGKILL, None)):
        if signal_first is not None:
            process.send_signal(signal_first)
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
            stdout_path: Path | None = None) -> dict[str, Any]:
    _become_subreaper()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at = time.time()
    started = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.PIPE)
        own_peak = [0]

        def watch() -> None:
            # VmHWM is the command's own high-water mark; the last reading before it exits
            # is within one poll of the truth.
            while process.poll() is None:
                own_peak[0] = max(own_peak[0], _peak_rss_kb(process.pid) or 0)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            _, stderr = process.communicate()
        except BaseException:
            _stop_gently(process)
            raise
        watcher.join()
    wall = time.perf_counter() - started
    orphans = _reap_orphans(grace_s=30.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "returncode": process.returncode,
        "started_at": started_at,
        "wall_s": round(wall, 3),
        "cpu_user_s": round(after.ru_utime - before.ru_utime, 3),
        "cpu_system_s": round(after.ru_stime - before.ru_stime, 3),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3),
        # The largest single process of the tree (Linux reports kilobytes).
        "largest_process_peak_mb": round(after.ru_maxrss / 1024, 1),
        "command_peak_mb": round(own_peak[0] / 1024, 1),
        "orphans_reaped": orphans,
        "stderr_tail": stderr.decode(errors="replace")[-2000:],
    }


def measure_in_fresh_process(command: list[str], cwd: Path | None = None,
                             env: dict[str, str] | None = None,
                             stdout_path: Path | None = None) -> dict[str, Any]:
    """`measure` in a process of its own, so that its maxima start from zero."""
    wrapper = [sys.executable, str(Path(__file__).resolve()),
               *(["--stdout", str(stdout_path)] if stdout_path else []), "--", *command]
    with subprocess.Popen(wrapper, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as child:
        try:
            stdout, stderr = child.communicate()
        except BaseException:
            _stop_gently(child)
            raise
    if child.returncode != 0:
        raise RuntimeError(f"measuring {command[:3]} failed: "
                           f"{stderr.decode(errors='replace')[-2000:]}")
    return json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", type=Path, help="where the command's stdout goes")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    print(json.dumps(measure(command, stdout_path=args.stdout)))


if __name__ == "__main__":
    main()
