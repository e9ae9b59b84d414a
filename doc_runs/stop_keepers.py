"""Stops `bin/up`'s keepers (the supervise loops of the HTTP API and the code server
watchdog) and everything they run, as `bin/up` exits.

`python -m doc_runs.stop_keepers [--grace-s 15] PID...`: every keeper and each process under
it gets SIGTERM once, the tree is looked at again every 0.2 s (a keeper may have started its
child again in between; it starts nothing once bin/up's stop marker exists), and what is
still there after the grace period is killed. Not only through the keepers' own TERM traps:
in the chaos test under load, a keeper took its child's SIGTERM for a failure and started it
again, which kept bin/up up with no daemon."""

from __future__ import annotations

import argparse
import contextlib
import time

import psutil

POLL_S = 0.2


def under(keepers: list[psutil.Process]) -> list[psutil.Process]:
    """The keepers still running and every process below them, zombies left out."""
    found = []
    for keeper in keepers:
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            found += [keeper, *keeper.children(recursive=True)]
    alive = []
    for process in found:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def stop_keepers(pids: list[int], grace_s: float) -> list[int]:
    """Terminates the keepers' trees, killing what is left after `grace_s`. Returns the pids
    that had to be killed."""
    keepers = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            keepers.append(psutil.Process(pid))
    deadline = time.monotonic() + grace_s
    signalled: set[int] = set()
    while time.monotonic() < deadline:
        alive = under(keepers)
        if not alive:
            return []
        for process in alive:
            if process.pid not in signalled:
                signalled.add(process.pid)
                with contextlib.suppress(psutil.Error):
                    process.terminate()
        time.sleep(POLL_S)
    killed = []
    for process in under(keepers):
        with contextlib.suppress(psutil.Error):
            process.kill()
            killed.append(process)
    psutil.wait_procs(killed, timeout=2)  # reaped by their parents, or zombies by then
    return [process.pid for process in killed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doc_runs.stop_keepers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace-s", type=float, default=15.0)
    parser.add_argument("pids", nargs="*", type=int)
    args = parser.parse_args(argv)
    stop_keepers(args.pids, args.grace_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
