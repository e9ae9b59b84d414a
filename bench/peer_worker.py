"""The peers' side of bench/peers.py: runs in the peer virtualenv (.venv-peers), never in the
project's, so it imports nothing from doc_runs. Prints one JSON object on standard output.

    .venv-peers/bin/python bench/peer_worker.py llamaindex --files-dir DIR --chunk-size 300 \
        --chunk-overlap 50 --workers 2
    .venv-peers/bin/python bench/peer_worker.py langchain --text FILE --chunk-size 1200 \
        --chunk-overlap 200 --repeat 3

The peers' libraries are imported inside the functions: `load_data(num_workers=2)` starts its
pool with the "spawn" method, whose children import this file again as `__mp_main__`, and they
should pay only for what unpickling their task needs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any


def _cpu_seconds() -> float:
    # Children count once reaped: the spawn pool's workers are joined when its `with` ends.
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _pools_end_gracefully() -> None:
    """`load_data` leaves its `with multiprocessing.Pool(...)` after collecting every result,
    and `Pool.__exit__` terminates the workers: one killed while it holds the task queue's
    lock leaves the other blocked on that lock for good, and the join then waits forever
    (seen: a worker in `SemLock.__enter__` under `SimpleQueue.get`, the parent in
    `Pool._terminate_pool`). With every task done, closing and joining ends the same
    workers without that race; the work measured is the same."""
    from multiprocessing.pool import Pool

    def close_and_join(pool: Pool, *_: object) -> None:
        pool.close()
        pool.join()

    Pool.__exit__ = close_and_join  # type: ignore[method-assign,assignment]


def llamaindex(files_dir: Path, chunk_size: int, chunk_overlap: int,
               workers: int) -> dict[str, Any]:
    """SimpleDirectoryReader with its default PDF reader (llama-index-readers-file's PDFReader,
    pypdf, one Document per page), then SentenceSplitter; chunk sizes are in tokens."""
    started = time.perf_counter()
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import SentenceSplitter
    import_seconds = time.perf_counter() - started

    # Loads the tokenizer (tiktoken's cl100k_base from llama-index-core's bundled cache) and
    # NLTK's punkt (bundled too): set up once per process, so kept out of the timed part.
    started = time.perf_counter()
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    setup_seconds = time.perf_counter() - started

    _pools_end_gracefully()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    reader = SimpleDirectoryReader(input_dir=str(files_dir), required_exts=[".pdf"])
    pages = reader.load_data(num_workers=workers if workers > 1 else None)
    loaded = time.perf_counter()
    nodes = splitter.get_nodes_from_documents(pages)
    finished = time.perf_counter()
    return {
        "peer": "llamaindex",
        "documents": len(reader.input_files),
        "pages": len(pages),
        "nodes": len(nodes),
        "characters": sum(len(page.text) for page in pages),
        "workers": workers,
        "chunk_size_tokens": chunk_size,
        "chunk_overlap_tokens": chunk_overlap,
        "seconds": finished - started,
        "load_seconds": loaded - started,
        "split_seconds": finished - loaded,
        "cpu_seconds": _cpu_seconds() - cpu_before,
        "import_seconds": import_seconds,
        "setup_seconds": setup_seconds,
        "versions": _versions("llama-index-core", "llama-index-readers-file", "pypdf",
                              "tiktoken", "nltk"),
    }


def langchain(text_path: Path, chunk_size: int, chunk_overlap: int,
              repeat: int) -> dict[str, Any]:
    """RecursiveCharacterTextSplitter with its default separators, lengths in characters."""
    started = time.perf_counter()
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    import_seconds = time.perf_counter() - started

    text = text_path.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                              length_function=len)
    passes: list[float] = []
    chunks: list[str] = []
    cpu_before = _cpu_seconds()
    for _ in range(repeat):
        started = time.perf_counter()
        chunks = splitter.split_text(text)
        passes.append(time.perf_counter() - started)
    total = sum(passes)
    return {
        "peer": "langchain",
        "megabytes": megabytes,
        "characters": len(text),
        "chunks": len(chunks),
        "chunk_size_characters": chunk_size,
        "chunk_overlap_characters": chunk_overlap,
        "repeat": repeat,
        "seconds": total,
        "best_pass_seconds": min(passes),
        "mb_per_s": megabytes * repeat / total if total > 0 else None,
        "cpu_seconds": _cpu_seconds() - cpu_before,
        "import_seconds": import_seconds,
        "versions": _versions("langchain-text-splitters", "langchain-core"),
    }


def _versions(*distributions: str) -> dict[str, str]:
    return {name: version(name) for name in distributions}


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    llama = commands.add_parser("llamaindex")
    llama.add_argument("--files-dir", type=Path, required=True)
    llama.add_argument("--workers", type=int, default=1)
    chain = commands.add_parser("langchain")
    chain.add_argument("--text", type=Path, required=True)
    chain.add_argument("--repeat", type=int, default=1)
    for command in (llama, chain):
        command.add_argument("--chunk-size", type=int, required=True)
        command.add_argument("--chunk-overlap", type=int, required=True)
    args = parser.parse_args()

    # The libraries (and the pool's children, which inherit descriptor 1) may print; only the
    # result goes to the real standard output, so the caller can read it as one JSON object.
    result_out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    if args.command == "llamaindex":
        result = llamaindex(args.files_dir, args.chunk_size, args.chunk_overlap, args.workers)
    else:
        result = langchain(args.text, args.chunk_size, args.chunk_overlap, args.repeat)
    json.dump(result, result_out)
    result_out.write("\n")
    result_out.close()


if __name__ == "__main__":
    main()
