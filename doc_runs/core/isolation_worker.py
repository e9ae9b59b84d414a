"""Entry point of an isolated worker process: reads calls from stdin, answers on stdout."""

from __future__ import annotations

import contextlib
import importlib
import pickle
import resource
import struct
import sys
import traceback
from typing import Any, BinaryIO

from doc_runs.core.outcomes import DocumentRejected, Reason

_HEADER = struct.Struct("!Q")


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data and len(data) == size else None


def _answer(call: tuple[str, str, tuple[Any, ...]]) -> tuple[Any, ...]:
    module_name, qualname, args = call
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
    memory_bytes = int(sys.argv[1])
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the answer channel.
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
