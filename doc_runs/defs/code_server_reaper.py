"""Stops code servers that outlive the command that started them.

`python -m doc_runs.defs.code_server_reaper GRACE_S PID:CREATED...`, started detached by
doc_runs.defs.launch as a command leaves its workspace: each named process that is still there
after GRACE_S seconds is terminated, then killed. A code server ends on its own within about
two seconds of being asked to; one whose clean-up thread failed (Dagster's check for
orphaned runs raises when it cannot open the instance, e.g. a SQLite database another
process holds locked) never would. The command has waited for or canceled its runs by then.
Imports nothing heavy: it must cost nothing in the normal case."""

from __future__ import annotations

import contextlib
import sys

import psutil


def still_running(named: list[str]) -> list[psutil.Process]:
    """The processes named `pid:create_time` that are still the same processes."""
    found = []
    for item in named:
        pid, _, created = item.partition(":")
        try:
            process = psutil.Process(int(pid))
            if abs(process.create_time() - float(created)) < 0.01:
                found.append(process)
        except (ValueError, psutil.Error):
            continue
    return found


def stop_after(grace_s: float, processes: list[psutil.Process]) -> list[int]:
    """Waits up to `grace_s` for them to end; stops those that did not. Returns their pids."""
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, still = psutil.wait_procs(alive, timeout=5)
    for process in still:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return [process.pid for process in alive]


def main(argv: list[str]) -> int:
    if not argv:
        return 2
    stop_after(float(argv[0]), still_running(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
