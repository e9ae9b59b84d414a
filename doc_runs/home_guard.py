"""One deployment per home: `bin/up` takes its DAGSTER_HOME before it starts anything, and a
second `bin/up` on the same home (started by mistake in another terminal) refuses, naming the
first. Two would run two daemons over one instance: every sensor ticking twice, two run
queues, runs launched twice.

The home is held by a lock (flock) on `.doc-runs-up.lock` in it, taken on a descriptor that
`bin/up` opened and that the processes it starts inherit: the home stays taken while any of
them runs, even if the `bin/up` shell itself was killed, and is free again once all are gone,
however they ended (the kernel drops the lock; nothing to clean up after a crash, whatever
the clock did). `.doc-runs-up.json` beside it says who took it, for the message.

    exec 9>>"$DAGSTER_HOME/.doc-runs-up.lock"
    python -m doc_runs.home_guard "$DAGSTER_HOME" "$$" 9   # 0: taken; 1: in use; 2: misuse
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = ".doc-runs-up.lock"
CLAIM_FILE = ".doc-runs-up.json"


class HomeTaken(Exception):
    """Another deployment holds the home; the message names it."""


def claim_home(home: Path, pid: int, lock_fd: int) -> None:
    """Takes `home` for process `pid` by locking `lock_fd` (open on the home's lock file), or
    raises HomeTaken naming who holds it."""
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise HomeTaken(_in_use(home)) from None
    claim = {"pid": pid, "host": socket.gethostname(), "started_at": time.time()}
    try:
        tmp = home / (CLAIM_FILE + ".tmp")
        tmp.write_text(json.dumps(claim))
        tmp.replace(home / CLAIM_FILE)
    except OSError:
        pass  # the lock is what holds the home; the note only names the holder


def _in_use(home: Path) -> str:
    said = f"{home} is already in use by another bin/up"
    claim = _claim(home / CLAIM_FILE)
    if claim is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(claim["started_at"]))
        said += f": pid {claim['pid']} on {claim['host']}, started {since}"
    holders = _holders(home / LOCK_FILE)
    if holders:
        said += f" (its processes still running here: {', '.join(holders)})"
    return (f"{said}. Stop it first (Ctrl-C in its terminal, or stop those processes), or "
            "give this one a home of its own (DAGSTER_HOME=...).")


def _claim(path: Path) -> dict | None:
    try:
        if not path.is_file():  # none, or something that is not a claim (a FIFO, a folder)
            return None
        data = json.loads(path.read_text())
        return {"pid": int(data["pid"]), "host": str(data["host"]),
                "started_at": float(data["started_at"])}
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _holders(lock: Path) -> list[str]:
    """The processes of this machine that have the lock file open ("pid (command)")."""
    try:
        target = os.stat(lock)
    except OSError:
        return []
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            for fd in (entry / "fd").iterdir():
                held = os.stat(fd)
                if (held.st_dev, held.st_ino) == (target.st_dev, target.st_ino):
                    name = (entry / "comm").read_text().strip()
                    found.append(f"{entry.name} ({name})")
                    break
        except OSError:
            continue  # gone meanwhile, or not ours to look into
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit() or not argv[2].isdigit():
        print("usage: python -m doc_runs.home_guard DAGSTER_HOME PID LOCK_FD", file=sys.stderr)
        return 2
    try:
        claim_home(Path(argv[0]), int(argv[1]), int(argv[2]))
    except OSError as failed:  # not an open descriptor, say
        print(f"bin/up: cannot lock {argv[0]}/{LOCK_FILE}: {failed}", file=sys.stderr)
        return 2
    except HomeTaken as taken:
        print(f"bin/up: {taken}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
