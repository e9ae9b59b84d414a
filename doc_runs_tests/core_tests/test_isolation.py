"""PDF workers never outlive their caller and never hand one document's answer to another:
they die with the process that started them, stop themselves at a CPU-time limit, are
discarded after any call that did not end cleanly, and can all be stopped at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from doc_runs.core import isolation
from doc_runs.core.extract import extract_pdf_pages
from doc_runs.core.isolation import IsolatedWorker, WorkerStopped, run_isolated
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs_tests.documents import make_pdf, make_spinning_pdf
from doc_runs_tests.live import children_of, wait_until

# Every test here starts processes (left out by --quick).
pytestmark = pytest.mark.processes

WORKER_MODULE = "doc_runs.core.isolation_worker"


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (Z: a zombie, dead but not reaped), or None
    when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def workers_of(parent_pid: int) -> list[int]:
    return children_of(parent_pid, WORKER_MODULE.encode())


@pytest.fixture()
def spinning_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "spinning.pdf"
    path.write_bytes(make_spinning_pdf())
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_worker_spinning_on_a_pdf_dies_with_the_process_that_started_it(
        tmp_path: Path, spinning_pdf: Path) -> None:
    caller = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from doc_runs.core.extract import extract_pdf_pages
            from doc_runs.core.isolation import run_isolated
            run_isolated(extract_pdf_pages, ({str(spinning_pdf)!r}, 5000),
                         deadline_s=600, memory_bytes=0)
        """)],
        cwd=tmp_path,
    )
    worker = None
    try:
        (worker,) = wait_until(lambda: workers_of(caller.pid), 60, "the caller's worker")
        # The worker is busy on the document: its CPU time grows.
        spent = isolation._cpu_seconds(worker)
        wait_until(lambda: (isolation._cpu_seconds(worker) or 0) > (spent or 0) + 0.2, 30,
                 "the worker to spin")
        caller.kill()
        caller.wait()
        wait_until(lambda: not is_running(worker), 5, f"worker {worker} to die with its caller")
    finally:
        caller.kill()
        caller.wait()
        if worker is not None and is_running(worker):
            os.kill(worker, signal.SIGKILL)  # left by a failure: not by the suite


def test_a_worker_started_by_a_thread_that_ended_still_serves_the_others(tmp_path: Path
                                                                         ) -> None:
    """The parent-death signal belongs to the thread that started a worker; workers are
    started by one long-lived thread, so a step's ending thread pool kills none of them."""
    path = tmp_path / "one.pdf"
    path.write_bytes(make_pdf(["One page of text."]))
    memory = 512 * 1024 * 1024 + 4096  # a pool of this test's own
    starter = threading.Thread(
        target=run_isolated, args=(extract_pdf_pages, (str(path), 10)),
        kwargs={"deadline_s": 30, "memory_bytes": memory})
    starter.start()
    starter.join()
    pool = isolation._pools[memory]
    (worker,) = pool._idle
    time.sleep(0.5)  # a parent-death signal would have arrived by now
    assert worker.alive
    pages, _, _ = run_isolated(extract_pdf_pages, (str(path), 10), deadline_s=30,
                               memory_bytes=memory)
    assert pages[0].strip() == "One page of text."
    assert pool._idle == [worker] and worker.calls == 2
    pool.close()


class Interrupted(BaseException):
    """What Dagster raises in a step's thread when its run is terminated."""


def test_an_interrupted_call_never_hands_its_answer_to_the_next_document(tmp_path: Path
                                                                         ) -> None:
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(make_spinning_pdf(pages=1, operators_per_page=40_000))
    other = tmp_path / "other.pdf"
    other.write_bytes(make_pdf(["The other document, its own text."]))
    memory = 512 * 1024 * 1024 + 8192
    # Warm the worker so the interrupt lands in the middle of the slow call.
    run_isolated(extract_pdf_pages, (str(other), 10), deadline_s=30, memory_bytes=memory)
    (worker,) = isolation._pools[memory]._idle

    def interrupt(_signum, _frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Interrupted):
            run_isolated(extract_pdf_pages, (str(slow), 10), deadline_s=30,
                         memory_bytes=memory)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # Long enough for the slow document's answer to have been written, had the worker lived.
    time.sleep(2)
    assert not worker.alive
    pages, _, _ = run_isolated(extract_pdf_pages, (str(other), 10), deadline_s=30,
                               memory_bytes=memory)
    assert [page.strip() for page in pages] == ["The other document, its own text."]
    isolation._pools[memory].close()


def test_a_worker_whose_parent_does_not_stop_it_stops_itself_at_its_cpu_limit(
        monkeypatch, spinning_pdf: Path) -> None:
    monkeypatch.setattr(isolation, "CPU_LIMIT_SLACK_S", 1)
    # A parent that stopped enforcing the deadline (stuck, or busy elsewhere): it only waits.
    monkeypatch.setattr(IsolatedWorker, "_await_answer",
                        lambda self, fd, deadline_s: time.monotonic() + 120)
    worker = IsolatedWorker(0)
    started = time.monotonic()
    try:
        with pytest.raises(DocumentRejected) as rejected:
            worker.call(extract_pdf_pages, (str(spinning_pdf), 5000), 0.5)
    finally:
        worker.kill()
    assert rejected.value.reason == Reason.TIMEOUT
    assert "CPU-time limit" in rejected.value.detail
    # 1 s of deadline (rounded up) plus 1 s of slack, in CPU time; waiting for a core adds.
    assert time.monotonic() - started < 60


def test_stopping_every_call_ends_the_threads_waiting_on_spinning_workers(
        spinning_pdf: Path) -> None:
    memory = 512 * 1024 * 1024 + 16384
    errors: list[BaseException] = []

    def read() -> None:
        try:
            run_isolated(extract_pdf_pages, (str(spinning_pdf), 5000), deadline_s=600,
                         memory_bytes=memory)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    pool = wait_until(lambda: isolation._pools.get(memory), 30, "the pool")
    wait_until(lambda: len(pool._busy) == 2, 60, "two busy workers")
    busy = list(pool._busy)
    assert isolation.stop_isolated_calls("run terminated") >= 2
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert len(errors) == 2
    assert all(isinstance(e, WorkerStopped) and "run terminated" in str(e) for e in errors)
    assert not any(worker.alive for worker in busy)
    assert not pool._busy and not pool._idle
