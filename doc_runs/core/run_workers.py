"""Which process runs each Dagster run, and whether it still does.

A run's worker writes who it is as its run starts (host, boot, process namespace, pid and
the process's start time) and beats every few seconds while it works. Whoever watches runs
(doc_runs.defs.run_launcher, asked by Dagster's run monitoring) answers from that:

- a worker whose processes this watcher can see (same host, same boot, same pid namespace) is
  alive while its pid is, with the same start time (pids are reused; counted from the boot,
  so a stepped wall clock changes nothing) and not a zombie;
- a worker on this host whose last beat came before this host's boot is gone: it restarted;
- any other worker is alive while its beats keep coming, timed on the watcher's own clock, so
  a clock that jumped or differs between hosts does not make a healthy run look dead.

Rows are kept for a week after their last beat (a run's row is looked up by its id only, so
the table's size does not slow anything; the week bounds it)."""

from __future__ import annotations

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
_SAME_START_S = 0.005  # start times are counted in clock ticks


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
        pid = os.getpid() if pid is None else pid
        return cls(host=socket.gethostname(), boot_id=boot_id(), pid_namespace=pid_namespace(),
                   pid=pid, process_started=process_start(pid))

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


def process_start(pid: int) -> float:
    """When process `pid` started, in seconds since this boot: read from the kernel's own
    count (Linux), so a wall clock stepped meanwhile (NTP, a resumed VM, `date -s`) does not
    change it; elsewhere psutil's start time. Raises psutil.NoSuchProcess when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            raise psutil.NoSuchProcess(pid) from None
        return psutil.Process(pid).create_time()
    # Fields after the command name (which may hold spaces and parentheses): the 22nd field
    # of the line, start time in clock ticks since boot, is the 20th of these.
    ticks = int(stat.rsplit(b")", 1)[1].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_is_alive(identity: WorkerIdentity) -> bool:
    """Whether the process `identity` names still runs (this host and namespace only)."""
    try:
        if abs(process_start(identity.pid) - identity.process_started) > _SAME_START_S:
            return False  # the pid was given to another process
        return psutil.Process(identity.pid).status() != psutil.STATUS_ZOMBIE
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
               "process_started": identity.process_started, "beat_at": now}
        with self.database._write() as conn:
            conn.execute(run_workers_table.delete().where(
                run_workers_table.c.beat_at < now - KEEP_ROWS_S))
            # Recorded again (the database was away): the beats count on, so a watcher never
            # sees them stand still.
            updated = conn.execute(run_workers_table.update()
                                   .where(run_workers_table.c.run_id == run_id)
                                   .values(**row, beats=run_workers_table.c.beats + 1))
            if not updated.rowcount:
                conn.execute(run_workers_table.insert().values(run_id=run_id, beats=0, **row))

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

