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
        deadline = time.monotonic() + deadline_s
        fd = self.process.stdout.fileno()
        try:
            (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
            return pickle.loads(_read_exact(fd, size, deadline))
        except TimeoutError:
            self.kill()
            raise DocumentRejected(
                Reason.TIMEOUT, f"still running after {deadline_s:g} s; stopped"
            ) from None
        except EOFError:
            self.process.wait(5)
            if self.process.returncode == -signal.SIGKILL:
                # Nobody here sent it: the kernel's OOM killer is the usual sender.
                raise DocumentRejected(Reason.TOO_LARGE, "worker killed (out of memory)") from None
            raise TransientStageError(self._death_note()) from None

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
