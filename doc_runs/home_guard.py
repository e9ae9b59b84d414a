"""One deployment per home: `bin/up` claims its DAGSTER_HOME before it starts anything, and a
second `bin/up` on the same home (started by mistake in another terminal) refuses, naming the
first. Two would run two daemons over one instance: every sensor ticking twice, two run
queues, runs launched twice.

The claim is a small file in the home naming the process that holds it (its identity, as the
run launcher records a run's process: doc_runs.core.run_workers). It needs no cleaning up: a
claim whose process is gone (ended, killed, the host restarted) is taken over.

    python -m doc_runs.home_guard DAGSTER_HOME PID   # exit 0: claimed for PID; 1: refused
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil

from doc_runs.core.run_workers import WorkerIdentity, process_is_alive

CLAIM_FILE = ".doc-runs-up.json"


class HomeTaken(Exception):
    """Another live process holds the home; the message names it."""


def claim_home(home: Path, pid: int) -> None:
    """Claims `home` for process `pid`, or raises HomeTaken naming the live holder."""
    mine = WorkerIdentity.of_process(pid)
    home.mkdir(parents=True, exist_ok=True)
    claim = home / CLAIM_FILE
    with open(home / (CLAIM_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two starting at once: one after the other
        holder = _holder(claim)
        if holder is not None and holder[0].pid != pid and _alive(holder[0], mine):
            identity, started_at = holder
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))
            remedy = ("stop it first (Ctrl-C in its terminal, or kill that pid)"
                      if mine.same_machine_view(identity) else
                      f"stop it there first, or delete {claim} if that machine is gone")
            raise HomeTaken(f"{home} is already in use by another bin/up: pid "
                            f"{identity.pid} on {identity.host}, started {since}. Either "
                            f"{remedy}, or give this one a home of its own (DAGSTER_HOME=...).")
        tmp = claim.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(mine), "started_at": time.time()}))
        tmp.replace(claim)


def _holder(claim: Path) -> tuple[WorkerIdentity, float] | None:
    try:
        data = json.loads(claim.read_text())
        started_at = float(data.pop("started_at"))
        return WorkerIdentity(**data), started_at
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none, or unreadable: nobody to name


def _alive(holder: WorkerIdentity, here: WorkerIdentity) -> bool:
    if not here.same_machine_view(holder):
        # Another host or container shares this home (a network folder): its process cannot
        # be looked up from here, so it is taken as alive; its claim is named.
        return holder.host != here.host or holder.boot_id == here.boot_id
    return process_is_alive(holder)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m doc_runs.home_guard DAGSTER_HOME PID", file=sys.stderr)
        return 2
    try:
        claim_home(Path(argv[0]), int(argv[1]))
    except psutil.NoSuchProcess:
        print(f"bin/up: no process {argv[1]} to claim {argv[0]} for", file=sys.stderr)
        return 2
    except HomeTaken as taken:
        print(f"bin/up: {taken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
