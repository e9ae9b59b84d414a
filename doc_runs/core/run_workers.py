"""Which process runs each Dagster run, and whether it still does.

A run's worker writes who it is when its run sets up (host, boot, process namespace, pid and
the process's start time) and beats every few seconds while it works. Whoever watches runs
(doc_runs.defs.run_launcher, asked by Dagster's run monitoring) answers from that:

- a worker whose processes this watcher can see (same host, same boot, same pid namespace) is
  alive while its pid is, with the same start time (pids are reused) and not a zombie;
- a worker on the same host under an earlier boot is gone: the host restarted;
- any other worker is alive while its beats keep coming, timed on the watcher's own clock, so
  a clock that jumped or differs between hosts does not make a healthy run look dead.

Rows are kept for a week after their last beat (a run's row is looked up by its id only, so
the table's size does not slow anything; the week bounds it)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import sqlalchemy as sa

from doc_runs.core.catalog_database import CatalogDatabase
from doc_runs.core.catalog_schema import run_workers_table

KEEP_ROWS_S = 7 * 24 * 3600
_SAME_START_S = 1.0  # psutil's start times are rounded to the clock tick


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    process_started: float

    @classmethod
    def of_process(cls, pid: int | None = None) -> WorkerIdentity:
        """The identity of process `pid` (this one by default), which must be on this host
        and in this process's pid namespace."""
        process = psutil.Process(pid)
        return cls(host=socket.gethostname(), boot_id=boot_id(), pid_namespace=pid_namespace(),
                   pid=process.pid, process_started=process.create_time())

    def same_machine_view(self, other: WorkerIdentity) -> bool:
        """Whether a process of `other` could look up this one's pid."""
        return (self.host, self.boot_id, self.pid_namespace) == (
            other.host, other.boot_id, other.pid_namespace)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def boot_id() -> str:
    """This boot of this machine (Linux: the kernel's boot id; elsewhere its boot time)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot-{psutil.boot_time():.0f}"


def pid_namespace() -> str:
    """The pid namespace this process sees (containers on one host each have their own)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


def process_is_alive(identity: WorkerIdentity) -> bool:
    """Whether the process `identity` names still runs (this host and namespace only)."""
    try:
        process = psutil.Process(identity.pid)
        if abs(process.create_time() - identity.process_started) > _SAME_START_S:
            return False  # the pid was given to another process
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # there, but not ours to inspect


@dataclass(frozen=True)
class RunWorker:
    run_id: str
    identity: WorkerIdentity
    beat_at: float
    beats: int


class RunWorkers:
    """The run workers' rows in the catalog's database."""

    def __init__(self, database: CatalogDatabase) -> None:
        self.database = database

    def started(self, run_id: str, identity: WorkerIdentity, at: float | None = None) -> None:
        now = time.time() if at is None else at
        row = {"host": identity.host[:255], "boot_id": identity.boot_id[:64],
               "pid_namespace": identity.pid_namespace[:64], "pid": identity.pid,
               "process_started": identity.process_started, "beat_at": now, "beats": 0}
        with self.database._write() as conn:
            conn.execute(run_workers_table.delete().where(
                run_workers_table.c.beat_at < now - KEEP_ROWS_S))
            updated = conn.execute(run_workers_table.update()
                                   .where(run_workers_table.c.run_id == run_id).values(**row))
            if not updated.rowcount:
                conn.execute(run_workers_table.insert().values(run_id=run_id, **row))

    def beat(self, run_id: str, at: float | None = None) -> bool:
        """Records a beat; False when the run has no row (its start was not recorded)."""
        with self.database._write() as conn:
            return bool(conn.execute(
                run_workers_table.update().where(run_workers_table.c.run_id == run_id)
                .values(beat_at=time.time() if at is None else at,
                        beats=run_workers_table.c.beats + 1)).rowcount)

    def of(self, run_id: str) -> RunWorker | None:
        with self.database._read() as conn:
            row = conn.execute(sa.select(run_workers_table)
                               .where(run_workers_table.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        return RunWorker(run_id=run_id, beat_at=row["beat_at"], beats=row["beats"],
                         identity=WorkerIdentity(
                             host=row["host"], boot_id=row["boot_id"],
                             pid_namespace=row["pid_namespace"], pid=row["pid"],
                             process_started=row["process_started"]))


def run_worker_pid(start_pid: int | None) -> int:
    """The pid of the process that runs the run, seen from a process setting it up: this one
    (a run whose steps run in its own process), or its parent when that is the process that
    started the run (`start_pid`, from the run's start event) and this one runs one step."""
    if start_pid is not None and start_pid != os.getpid():
        with contextlib.suppress(psutil.Error):
            if psutil.Process().ppid() == start_pid:
                return start_pid
    return os.getpid()
