"""Run a function in a separate worker process under a hard deadline and a memory cap.

pypdf can spin for many seconds on some files and allocate without bound on others; a thread
cannot be stopped, a process can. Workers are long-lived interpreters (started once, reused
for many calls) so a call costs a pipe round trip, not an interpreter start; a worker that
misses its deadline is killed and replaced.

Nothing outlives its caller: a worker gets SIGKILL when the process that started it dies
(Linux's parent-death signal), each call runs under a CPU-time limit of its own (so a worker
whose parent cannot stop it stops itself), and a worker whose call did not end with a read
answer (an interrupt, an error) is killed rather than reused, so no document is handed the
answer meant for another. `stop_isolated_calls` stops every call in flight, for a run that
is being terminated.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import pickle
import queue
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from doc_runs.core.outcomes import DocumentRejected, Reason, TransientStageError

_HEADER = struct.Struct("!Q")
# Long-lived workers slowly accumulate memory (pypdf caches, fragmentation): recycle them.
_CALLS_PER_WORKER = 200


# A worker that neither answers nor uses CPU is stopped after this many deadlines.
WALL_FACTOR = 4
# The worker's own CPU-time limit per call, past the deadline the parent enforces: a backstop
# for a parent that is gone or stuck, never the limit that normally applies.
CPU_LIMIT_SLACK_S = 5
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


class WorkerStopped(TransientStageError):
    """The call was stopped from outside (its run is being terminated); retryable."""


def _start_worker_process(memory_bytes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "doc_runs.core.isolation_worker", str(memory_bytes),
         str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle
    )


class _Spawner:
    """Starts every worker from one thread that lives as long as the process. The kernel's
    parent-death signal fires when the *thread* that started a worker ends, not the process:
    a worker started by a step's short-lived thread pool would be killed when that pool
    shuts down, possibly in the middle of another thread's call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[int, Future[subprocess.Popen[bytes]]]] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None

    def start(self, memory_bytes: int) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="doc-runs-spawner",
                                                daemon=True)
                self._thread.start()
        answer: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((memory_bytes, answer))
        return answer.result()

    def _serve(self) -> None:
        while True:
            memory_bytes, answer = self._requests.get()
            try:
                answer.set_result(_start_worker_process(memory_bytes))
            except BaseException as failed:
                answer.set_exception(failed)


_spawner = _Spawner()


class IsolatedWorker:
    """One worker process; not thread-safe (the pool hands it to one caller at a time)."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.calls = 0
        self.stopped_because: str | None = None
        self.process = _spawner.start(memory_bytes)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], deadline_s: float) -> Any:
        """The answer of `fn(*args)`. A call that does not end with its answer read (a
        timeout, an interrupt, any error) leaves the worker killed: its pipe may still hold
        that answer, which must never reach the next caller."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.calls += 1
        cpu_limit_s = math.ceil(deadline_s) + CPU_LIMIT_SLACK_S
        payload = pickle.dumps((fn.__module__, fn.__qualname__, args, cpu_limit_s))
        answered = False
        try:
            try:
                self.process.stdin.write(_HEADER.pack(len(payload)) + payload)
                self.process.stdin.flush()
            except BrokenPipeError:
                raise TransientStageError(self._death_note()) from None
            fd = self.process.stdout.fileno()
            try:
                ceiling = self._await_answer(fd, deadline_s)
                (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, ceiling))
                answer = pickle.loads(_read_exact(fd, size, ceiling))
            except TimeoutError as late:
                raise DocumentRejected(Reason.TIMEOUT, f"{late}; stopped") from None
            except EOFError:
                raise self._death() from None
            answered = True
            return answer
        finally:
            if not answered:
                self.kill()

    def _death(self) -> Exception:
        """What a worker's death during a call means for the document."""
        self.process.wait(5)
        code = self.process.returncode
        if self.stopped_because is not None:
            return WorkerStopped(f"stopped: {self.stopped_because}")
        if code == -signal.SIGXCPU:
            return DocumentRejected(Reason.TIMEOUT, "worker reached its CPU-time limit")
        if code == -signal.SIGKILL:
            # Nobody here sent it: the kernel's OOM killer is the usual sender.
            return DocumentRejected(Reason.TOO_LARGE, "worker killed (out of memory)")
        if code == -signal.SIGABRT and self.memory_bytes > 0:
            # Native code (PDFium) aborts where an allocation fails under the cap, where
            # Python code would raise MemoryError.
            return DocumentRejected(
                Reason.TOO_LARGE, f"worker aborted under its {self.memory_bytes >> 20} MB "
                "memory cap")
        return TransientStageError(self._death_note())

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

    def kill(self, because: str | None = None) -> None:
        """Kills the worker and closes its pipes. With `because` (from another thread, while
        the owner may be waiting on the pipes) it only sends the signal: the owner's call
        then raises WorkerStopped with that reason, and the owner closes the pipes."""
        if because is not None:
            if self.stopped_because is None:
                self.stopped_because = because
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            return
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class WorkerPool:
    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._idle: list[IsolatedWorker] = []
        self._busy: set[IsolatedWorker] = set()
        self._lock = threading.Lock()

    def _take(self) -> IsolatedWorker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    self._busy.add(worker)
                    return worker
        worker = IsolatedWorker(self.memory_bytes)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: IsolatedWorker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if worker.alive and worker.calls < _CALLS_PER_WORKER \
                    and worker.stopped_because is None:
                self._idle.append(worker)
                return
        worker.kill()

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

    def close(self, because: str | None = None) -> int:
        """Kills the idle workers and, with `because`, the busy ones too; returns how many
        calls were stopped."""
        with self._lock:
            idle, self._idle = self._idle, []
            busy = list(self._busy) if because is not None else []
        for worker in idle:
            worker.kill()
        for worker in busy:
            worker.kill(because)
        return len(busy)


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


def stop_isolated_calls(because: str) -> int:
    """Kills every worker of this process, busy or idle: each call in flight raises
    WorkerStopped(`because`) in its own thread. For a run being terminated, whose threads
    would otherwise wait for a spinning parser before the process can end. Returns how many
    calls were stopped."""
    with _pools_lock:
        pools = list(_pools.values())
    return sum(pool.close(because) for pool in pools)


@atexit.register
def close_worker_pools() -> None:
    """Ends this process's idle workers (at exit; a test session ending)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.close()
