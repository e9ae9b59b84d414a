"""Run a function in a separate worker process under a hard deadline and a memory cap.

pypdf can spin for many seconds on some files and allocate without bound on others; a thread
cannot be stopped, a process can. Workers are long-lived interpreters (started once, reused
for many calls) so a call costs a pipe round trip, not an interpreter start; a worker that
misses its deadline is killed and replaced.
"""

from __future__ import annotations

import atexit
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from doc_runs.core.outcomes import DocumentRejected, Reason, TransientStageError

_HEADER = struct.Struct("!Q")
# Long-lived workers slowly accumulate memory (pypdf caches, fragmentation): recycle them.
_CALLS_PER_WORKER = 200


# A worker that neither answers nor uses CPU is stopped after this many deadlines.
WALL_FACTOR = 4
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from /proc; None where there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while remaining:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not selector.select(timeout):
                raise TimeoutError
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)


class IsolatedWorker:
    """One worker process; not thread-safe (the pool hands it to one caller at a time)."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.calls = 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "doc_runs.core.isolation_worker", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle
        )

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], deadline_s: float) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.calls += 1
        payload = pickle.dumps((fn.__module__, fn.__qualname__, args))
        try:
            self.process.stdin.write(_HEADER.pack(len(payload)) + payload)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise TransientStageError(self._death_note()) from None
        fd = self.process.stdout.fileno()
        try:
            ceiling = self._await_answer(fd, deadline_s)
            (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, ceiling))
            return pickle.loads(_read_exact(fd, size, ceiling))
        except TimeoutError as late:
            self.kill()
            raise DocumentRejected(Reason.TIMEOUT, f"{late}; stopped") from None
        except EOFError:
            self.process.wait(5)
            if self.process.returncode == -signal.SIGKILL:
                # Nobody here sent it: the kernel's OOM killer is the usual sender.
                raise DocumentRejected(Reason.TOO_LARGE, "worker killed (out of memory)") from None
            if self.process.returncode == -signal.SIGABRT and self.memory_bytes > 0:
                # Native code (PDFium) aborts where an allocation fails under the cap, where
                # Python code would raise MemoryError.
                raise DocumentRejected(
                    Reason.TOO_LARGE, f"worker aborted under its {self.memory_bytes >> 20} MB "
                    "memory cap") from None
            raise TransientStageError(self._death_note()) from None

    def _await_answer(self, fd: int, deadline_s: float) -> float:
        """Waits until the answer starts; returns the wall-clock time by which it must be
        read. The deadline counts the worker's own CPU time where the system tells it
        (Linux): a document that waited for a core, behind other runs' work, is not cut
        short for it. A worker that uses no CPU and still does not answer (blocked) is
        stopped at WALL_FACTOR times the deadline."""
        started = time.monotonic()
        ceiling = started + max(WALL_FACTOR * deadline_s, deadline_s + 10)
        cpu_at_start = _cpu_seconds(self.process.pid)
        check_at = started + deadline_s
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if selector.select(max(min(check_at, ceiling) - time.monotonic(), 0)):
                    return ceiling
                now = time.monotonic()
                if now >= ceiling:
                    raise TimeoutError(f"no answer after {now - started:.0f} s")
                cpu_now = _cpu_seconds(self.process.pid)
                if cpu_at_start is None or cpu_now is None:  # no CPU accounting here
                    raise TimeoutError(f"still running after {deadline_s:g} s")
                spent = cpu_now - cpu_at_start
                if spent >= deadline_s:
                    raise TimeoutError(f"still running after {spent:.1f} s of CPU time")
                check_at = now + max(deadline_s - spent, 0.05)

    def _death_note(self) -> str:
        return f"isolated worker died (exit code {self.process.poll()})"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class WorkerPool:
    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._idle: list[IsolatedWorker] = []
        self._lock = threading.Lock()

    def _take(self) -> IsolatedWorker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
        return IsolatedWorker(self.memory_bytes)

    def _give_back(self, worker: IsolatedWorker) -> None:
        if not worker.alive or worker.calls >= _CALLS_PER_WORKER:
            worker.kill()
            return
        with self._lock:
            self._idle.append(worker)

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], deadline_s: float) -> Any:
        worker = self._take()
        try:
            kind, *rest = worker.call(fn, args, deadline_s)
        finally:
            self._give_back(worker)
        if kind == "ok":
            return rest[0]
        if kind == "rejected":
            raise DocumentRejected(Reason(rest[0]), rest[1])
        if kind == "transient":
            raise TransientStageError(rest[0])
        raise RuntimeError(f"in isolated worker: {rest[0]}")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_pools: dict[int, WorkerPool] = {}
_pools_lock = threading.Lock()


def run_isolated(
    fn: Callable[..., Any], args: tuple[Any, ...], *, deadline_s: float, memory_bytes: int
) -> Any:
    """`fn(*args)` in a worker process (fn must be importable by module and name). Past
    `deadline_s` the worker is killed and the call is rejected with reason `timeout`; a
    DocumentRejected raised by `fn` comes back as itself."""
    with _pools_lock:
        pool = _pools.get(memory_bytes)
        if pool is None:
            pool = _pools[memory_bytes] = WorkerPool(memory_bytes)
    return pool.run(fn, args, deadline_s)


@atexit.register
def _close_pools() -> None:
    for pool in list(_pools.values()):
        pool.close()
