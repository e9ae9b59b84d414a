"""Entry point of an isolated worker process: reads calls from stdin, answers on stdout.

Arguments: the address-space cap in bytes (0: none) and the pid of the process that started
it, whose death kills this one."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import math
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from typing import Any, BinaryIO

from doc_runs.core.outcomes import DocumentRejected, Reason

_HEADER = struct.Struct("!Q")


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data and len(data) == size else None


# prctl(2): deliver this signal when the thread that started us ends.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the parent dies (Linux), and exit now if it already has: a worker
    spinning in a parser must not outlive a run that was killed."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # Set after the parent may already have died: then we have been re-parented.
    if os.getppid() != parent_pid:
        os._exit(1)


def limit_cpu_time(seconds: int) -> None:
    """This call may use at most `seconds` more CPU time (the kernel sends SIGXCPU, which
    ends the process): a backstop for a parent that cannot stop us."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = math.ceil(used.ru_utime + used.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _answer(call: tuple[str, str, tuple[Any, ...], int]) -> tuple[Any, ...]:
    module_name, qualname, args, cpu_limit_s = call
    limit_cpu_time(cpu_limit_s)
    if not module_name.startswith("doc_runs."):
        return ("error", f"refusing to call {module_name}.{qualname}")
    fn: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    try:
        return ("ok", fn(*args))
    except DocumentRejected as rejected:
        return ("rejected", rejected.reason.value, rejected.detail)
    except MemoryError:
        return ("rejected", Reason.TOO_LARGE.value, "memory cap reached")
    except OSError as exc:
        return ("transient", f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        return ("error", "".join(traceback.format_exception_only(exc)).strip())


def main() -> None:
    memory_bytes, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    die_with_parent(parent_pid)
    # A worker ended by its CPU-time limit (or an abort in native code) must not leave a core
    # file of up to its memory cap in the run's working directory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # Nothing else may write to the answer channel: it moves to a descriptor of its own, and
    # descriptor 1 (where native code such as PDFium would print) becomes standard error.
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    importlib.import_module("doc_runs.core.extract")  # warm the heavy imports once
    # Also PDFium where installed (about 30 ms, 6 MB): the deadline counts the worker's CPU
    # time, so the first pdfium call of a fresh worker would otherwise pay for the import.
    with contextlib.suppress(ImportError):
        importlib.import_module("pypdfium2")
    while (header := _read_exact(stdin, _HEADER.size)) is not None:
        (size,) = _HEADER.unpack(header)
        payload = _read_exact(stdin, size)
        if payload is None:
            break
        answer = pickle.dumps(_answer(pickle.loads(payload)))
        stdout.write(_HEADER.pack(len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
