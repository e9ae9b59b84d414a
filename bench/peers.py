"""What a user would pick instead of doc_runs, measured in their own virtualenv (.venv-peers:
llama-index-readers-file needs pypdf<7, doc_runs pypdf>=7.1, so they cannot share one):

- LlamaIndex: SimpleDirectoryReader (its default PDF reader, pypdf, one Document per page) then
  SentenceSplitter, single process and with `load_data(num_workers=N)`;
- LangChain: RecursiveCharacterTextSplitter over one text, default separators, `len` lengths.

Imported by bench/suite.py in the project's venv, so only the standard library is imported at
module level; the peers run in bench/peer_worker.py under the peer venv's Python, and each call
returns the JSON object it prints. No network is needed beyond the package index at install:
llama-index-core ships tiktoken's and NLTK's data (llama_index/core/_static), and the variables
that would point them elsewhere are removed from the worker's environment.

By hand (from the project venv), on generated ten-page PDFs:

    .venv/bin/python bench/peers.py --documents 20
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "bench" / "peer_worker.py"
VENV_NAME = ".venv-peers"
REQUIREMENTS = Path("bench") / "peer-requirements.txt"  # relative to the repository root
STAMP_NAME = ".peer-requirements-installed"  # in the venv: sha256 of the requirements installed

# Set in the caller's environment they would send tiktoken and NLTK to a cache that may be
# empty, and so to the network; unset, llama-index-core uses the data it ships.
_CACHE_VARIABLES = ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "NLTK_DATA")


class PeerError(RuntimeError):
    """The peer venv could not be made, or a peer measurement failed."""


def _base_python() -> str:
    # The interpreter the project venv was made from, not the venv's own python: a venv made
    # from another venv's python would depend on that venv staying where it is.
    return getattr(sys, "_base_executable", None) or sys.executable


def peer_python(root: Path) -> Path:
    """The peer venv's python, creating the venv and installing bench/peer-requirements.txt
    once, and again whenever that file changes. Quiet unless pip fails (then its output is
    shown and PeerError raised)."""
    venv = root / VENV_NAME
    python = venv / "bin" / "python"
    requirements = root / REQUIREMENTS
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / STAMP_NAME
    if python.exists() and _read(stamp) == wanted:
        return python
    venv.mkdir(exist_ok=True)
    # Two suites starting at once would otherwise both run pip into the same venv.
    with open(venv / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and _read(stamp) == wanted:
            return python
        print(f"Installing the benchmark peers into {VENV_NAME} (once, or when "
              f"{REQUIREMENTS} changes)...", file=sys.stderr)
        steps = [
            [_base_python(), "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stdout + done.stderr)
                raise PeerError(f"{' '.join(step)} failed (exit {done.returncode}; above)")
        stamp.write_text(wanted + "\n")
    return python


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _run_worker(python: Path, arguments: list[str], timeout_s: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARIABLES}
    started = time.perf_counter()
    try:
        # -I: no PYTHONPATH, user site-packages or script directory, so nothing from the
        # project's side can be imported by the peers.
        done = subprocess.run([str(python), "-I", str(WORKER), *arguments], env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"peer worker {arguments[0]} ran over {timeout_s:.0f} s") from exc
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise PeerError(f"peer worker {arguments[0]} exited {done.returncode}:\n"
                        f"{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["process_seconds"] = elapsed  # interpreter start and imports included
    return result


def llamaindex_read_and_split(python: Path, files_dir: Path, chunk_size: int,
                              chunk_overlap: int, workers: int,
                              *, timeout_s: float = 1800.0) -> dict[str, Any]:
    """SimpleDirectoryReader(files_dir).load_data(num_workers=workers) then SentenceSplitter.

    chunk_size and chunk_overlap are SentenceSplitter's, in tokens (tiktoken cl100k_base), not
    characters. Returns documents (PDF files), pages (LlamaIndex's Documents: one per page),
    nodes, characters, seconds (wall time of load and split, after imports and the splitter's
    setup: documents/s = documents / seconds), load_seconds, split_seconds, cpu_seconds (the
    worker's and its pool's, over the same span), import_seconds, setup_seconds,
    process_seconds (the whole subprocess), versions.

    With workers > 1 the pool is LlamaIndex's own ("spawn": each worker imports llama_index
    again, which is inside `seconds`, as a user would pay it); splitting is single-process.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    return _run_worker(python, [
        "llamaindex", "--files-dir", str(files_dir), "--chunk-size", str(chunk_size),
        "--chunk-overlap", str(chunk_overlap), "--workers", str(workers),
    ], timeout_s)


def langchain_split(python: Path, text_path: Path, chunk_size: int, chunk_overlap: int,
                    repeat: int, *, timeout_s: float = 1800.0) -> dict[str, Any]:
    """RecursiveCharacterTextSplitter(chunk_size, chunk_overlap, length_function=len,
    default separators).split_text over the UTF-8 text at text_path, `repeat` times.

    Returns megabytes (10^6 bytes of UTF-8), characters, chunks (of one pass), seconds (the
    total of the passes), best_pass_seconds, mb_per_s (megabytes * repeat / total seconds),
    cpu_seconds, import_seconds, process_seconds, versions.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    return _run_worker(python, [
        "langchain", "--text", str(text_path), "--chunk-size", str(chunk_size),
        "--chunk-overlap", str(chunk_overlap), "--repeat", str(repeat),
    ], timeout_s)


def our_chunker(pages: list[str], chunk_size: int, chunk_overlap: int,
                 repeat: int) -> tuple[str, dict[str, Any]]:
    """doc_runs' chunk_text over the pages as one document: its text (what the peers split
    too) and the same figures as langchain_split."""
    from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text

    paged = PagedText(list(enumerate(pages, 1)))
    config = ChunkingConfig(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    megabytes = len(paged.text.encode("utf-8")) / 1e6
    passes = []
    chunks = []
    for _ in range(repeat):
        started = time.perf_counter()
        chunks = chunk_text("bench", paged, config)
        passes.append(time.perf_counter() - started)
    return paged.text, {"megabytes": megabytes, "chunks": len(chunks), "seconds": sum(passes),
                        "mb_per_s": megabytes * repeat / sum(passes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20, help="ten-page PDFs to generate")
    parser.add_argument("--workers", type=int, default=2, help="LlamaIndex's load_data pool")
    # English runs about 4.5 to 5 characters a cl100k token: these match 1200 and 200 below.
    parser.add_argument("--llama-chunk-size", type=int, default=250,
                        help="SentenceSplitter's, in tokens")
    parser.add_argument("--llama-chunk-overlap", type=int, default=40, help="in tokens")
    parser.add_argument("--chunk-size", type=int, default=1200,
                        help="LangChain's and doc_runs', in characters")
    parser.add_argument("--chunk-overlap", type=int, default=200, help="in characters")
    parser.add_argument("--text-mb", type=float, default=1.0,
                        help="the splitting text: the PDFs' pages, repeated up to this size")
    parser.add_argument("--repeat", type=int, default=3, help="splitting passes over the text")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from doc_runs.core.extract import extract_pdf_pages, normalize_text
    from doc_runs_tests.documents import ten_page_pdf

    started = time.perf_counter()
    python = peer_python(ROOT)
    print(f"peer venv ready: {python} ({time.perf_counter() - started:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="doc-runs-peers-") as tmp:
        work = Path(tmp)
        files_dir = work / "pdfs"
        files_dir.mkdir()
        pages: list[str] = []
        for i in range(args.documents):
            path = files_dir / f"doc-{i:04d}.pdf"
            path.write_bytes(ten_page_pdf(i))
            raw, _, _ = extract_pdf_pages(str(path), 5000)
            pages.extend(normalize_text(text or "") for text in raw)

        for workers in sorted({1, args.workers}):
            result = llamaindex_read_and_split(python, files_dir, args.llama_chunk_size,
                                               args.llama_chunk_overlap, workers)
            print(f"LlamaIndex, {workers} worker(s): {result['documents']} documents "
                  f"({result['pages']} pages, {result['nodes']} nodes) in "
                  f"{result['seconds']:.2f} s = {result['documents'] / result['seconds']:.1f} "
                  f"documents/s (load {result['load_seconds']:.2f} s, split "
                  f"{result['split_seconds']:.2f} s, cpu {result['cpu_seconds']:.2f} s; "
                  f"import {result['import_seconds']:.2f} s, setup "
                  f"{result['setup_seconds']:.2f} s, process {result['process_seconds']:.2f} s)")

        # One text for both splitters: the pages as doc_runs joins them, repeated to size.
        size = sum(len(page) for page in pages) or 1
        pages = pages * max(1, round(args.text_mb * 1e6 / size))
        text, ours = our_chunker(pages, args.chunk_size, args.chunk_overlap, args.repeat)
        text_path = work / "text.txt"
        text_path.write_text(text, encoding="utf-8")
        theirs = langchain_split(python, text_path, args.chunk_size, args.chunk_overlap,
                                 args.repeat)
    print(f"LangChain RecursiveCharacterTextSplitter: {theirs['megabytes']:.2f} MB x "
          f"{theirs['repeat']} in {theirs['seconds']:.2f} s = {theirs['mb_per_s']:.1f} MB/s "
          f"({theirs['chunks']} chunks; import {theirs['import_seconds']:.2f} s)")
    print(f"doc_runs chunk_text (same text):          {ours['megabytes']:.2f} MB x "
          f"{args.repeat} in {ours['seconds']:.2f} s = {ours['mb_per_s']:.1f} MB/s "
          f"({ours['chunks']} chunks)")


if __name__ == "__main__":
    main()
