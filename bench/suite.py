"""The benchmark suite: every figure a ratio of two things measured side by side in this one
invocation, on the same inputs, on this machine. Inputs are generated with fixed seeds, plus
the real PDFs in ../shared/corpus where that folder exists.

    bin/bench                      # all figures (about 12 minutes on 2 cores), or
    .venv/bin/python bench/suite.py [--documents 1000] [--only throughput peer ...]

Prints a table and writes bench/out/suite.json (figures, raw measurements, the machine).
Exits 1 when a figure could not be measured (the table says which and why).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, ratio  # noqa: E402
from bench.process_throughput import (  # noqa: E402
    doc_runs_process,
    plain_loop_process,
    write_ten_page_pdfs,
)

CORPUS = ROOT.parent / "shared" / "corpus"


class Sizes(argparse.Namespace):
    documents: int  # ten-page PDFs for throughput, overhead, first run and the peer
    per_document_runs: int  # documents for the one-run-per-document design
    extraction_documents: int  # of those PDFs, read for the extraction figures
    big_pages: int  # the large PDF of the memory figure
    scale_documents: int  # small text documents for the scale figure
    scale_history: int  # documents of history for the corpus scale figure
    scale_repeat: int  # measurements of each of its figures (the fastest counts)
    scale_batch: int  # documents of its deployments' template run and history batches
    scale_process: int  # documents of the `doc-runs process` it measures at each size
    scale_tries: int  # tries of its millisecond figures a round
    model_documents: int
    submissions: int
    messages: int
    chunk_text_mb: float
    chaos_minutes: float  # of uploads, queue messages and kills, for the chaos figure
    power_cut_documents: int  # uploads in flight when every process is killed


FULL = dict(documents=1000, per_document_runs=20, extraction_documents=100, big_pages=2000,
            scale_documents=10_000, scale_history=1_000_000, scale_repeat=3, scale_batch=50,
            scale_process=20, scale_tries=5, model_documents=12,
            submissions=50, messages=10_000, chunk_text_mb=5.0, chaos_minutes=10.0,
            power_cut_documents=600)
# For the smoke test: every code path, tiny inputs; the figures mean nothing.
QUICK = dict(documents=3, per_document_runs=2, extraction_documents=2, big_pages=40,
             scale_documents=20, scale_history=100, scale_repeat=1, scale_batch=5,
             scale_process=2, scale_tries=1, model_documents=2,
             submissions=2,
             messages=20, chunk_text_mb=0.05, chaos_minutes=1.0, power_cut_documents=20)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    memory_kb = next((int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or None
    return {"cpu": model, "cores": cores(), "memory_gib": round(memory_kb / 2**20, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "dagster": version("dagster"), "pypdf": version("pypdf"),
            "commit": commit, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_at_start": os.getloadavg()}


# --- throughput, overhead, first run ------------------------------------------------------


def store_seconds(files: list[Path], store_dir: Path) -> float:
    """What storing the files costs (the part of the first-run figure the issue excludes),
    through the same function doc-runs process uses."""
    from doc_runs.core.intake import store_file
    from doc_runs.core.store import DocumentStore

    store = DocumentStore(store_dir)
    started = time.perf_counter()
    for path in files:
        store_file(store, path)
    return time.perf_counter() - started


def measure_throughput(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    files = write_ten_page_pdfs(work / "pdfs", sizes.documents)
    shared["pdfs"] = work / "pdfs"
    n = sizes.documents
    loop = plain_loop_process(work / "pdfs", work / "loop" / "store")
    ours = doc_runs_process(work / "pdfs", work / "doc-runs")
    one_each = work / "one-run-each"
    write_ten_page_pdfs(one_each / "pdfs", sizes.per_document_runs)
    per_doc = doc_runs_process(one_each / "pdfs", one_each / "project", ["--batch-size", "1"])
    stored = store_seconds(files, work / "store-only")
    shared["doc_runs_docs_per_s"] = n / ours["wall_s"]
    for result in (loop, ours, per_doc):
        result.pop("stderr_tail", None)
    per_doc_rate = per_doc["documents"] / per_doc["wall_s"]
    throughput = Figure(
        "throughput",
        f"{n} generated 10-page PDFs: doc-runs process documents/s over the plain loop's; "
        f"one run per document ({per_doc['documents']} documents) beside it",
        ratio(loop["wall_s"], ours["wall_s"]), "x", ">= 1.2 (goal 1.6)",
        (loop["wall_s"] / ours["wall_s"]) >= 1.2 if ours["wall_s"] else None,
        {"plain_loop": loop, "doc_runs": ours, "one_run_per_document": per_doc,
         "plain_loop_docs_per_s": round(n / loop["wall_s"], 2),
         "doc_runs_docs_per_s": round(n / ours["wall_s"], 2),
         "one_run_per_document_docs_per_s": round(per_doc_rate, 2),
         "one_run_per_document_over_loop": ratio(per_doc_rate, n / loop["wall_s"])})
    extra_ms = (ours["cpu_s"] - loop["cpu_s"]) / n * 1000
    overhead = Figure(
        "overhead", "CPU a document beyond the plain loop, over every process each starts",
        round(extra_ms, 1), "ms", "< 20", extra_ms < 20,
        {"doc_runs_cpu_s": ours["cpu_s"], "plain_loop_cpu_s": loop["cpu_s"], "documents": n})
    first = ours["first_step_after_s"]
    first_run = Figure(
        "first run", f"command start to the first document stage running, {n} documents, "
        "less the time storing them takes alone",
        round(first - stored, 2) if first is not None else None, "s", "< 5",
        (first - stored) < 5 if first is not None else None,
        {"first_step_after_s": first, "store_files_s": round(stored, 2)})
    return [throughput, overhead, first_run]


def measure_peer(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.peers import llamaindex_read_and_split, peer_python

    pdfs = shared.get("pdfs") or work / "pdfs"
    if "pdfs" not in shared:
        write_ten_page_pdfs(pdfs, sizes.documents)
    python = peer_python(ROOT)
    # SentenceSplitter counts cl100k tokens: 250/40 is about our 1200/200 characters.
    runs = {workers: llamaindex_read_and_split(python, pdfs, 250, 40, workers)
            for workers in (1, 2)}
    best = max(r["documents"] / r["seconds"] for r in runs.values())
    ours = shared.get("doc_runs_docs_per_s")
    if ours is None:
        measured = doc_runs_process(pdfs, work / "doc-runs-for-peer")
        ours = measured["documents"] / measured["wall_s"]
    # Beside it, not in the figure: doc-runs with the optional PDFium engine.
    with_pdfium = doc_runs_process(pdfs, work / "doc-runs-pdfium", env={
        "DOC_RUNS_PDF_ENGINE": "pdfium"})
    with_pdfium.pop("stderr_tail", None)
    pdfium_rate = with_pdfium["documents"] / with_pdfium["wall_s"]
    return [Figure(
        "peer", "doc-runs documents/s (all five stages, the default pypdf) over LlamaIndex read "
        "+ split (SimpleDirectoryReader, SentenceSplitter; the better of 1 and 2 workers) on "
        f"the same files; with DOC_RUNS_PDF_ENGINE=pdfium {ratio(pdfium_rate, best)}x",
        ratio(ours, best), "x", "> 1 (doc-runs ahead)", ours > best,
        {"doc_runs_docs_per_s": round(ours, 2), "llamaindex_docs_per_s": round(best, 2),
         "doc_runs_pdfium_docs_per_s": round(pdfium_rate, 2),
         "doc_runs_pdfium": with_pdfium,
         "llamaindex_1_worker": runs[1], "llamaindex_2_workers": runs[2]})]


# --- extraction -----------------------------------------------------------------------------


def _raw_pypdf_pages(paths: list[Path]) -> tuple[float, int]:
    import pypdf

    started = time.perf_counter()
    pages = 0
    for path in paths:
        for page in pypdf.PdfReader(path).pages:
            page.extract_text()
            pages += 1
    return time.perf_counter() - started, pages


def _stage_pages(paths: list[Path], engine: str) -> tuple[float, list[list[str]]]:
    from doc_runs.core.extract import ExtractionLimits, extract_document_text
    from doc_runs.core.sniff import PDF

    limits = ExtractionLimits(pdf_engine=engine)  # type: ignore[arg-type]
    extract_document_text(paths[0], PDF, limits)  # a worker started, as in a running step
    started = time.perf_counter()
    texts = [[p.text for p in extract_document_text(path, PDF, limits).pages]
             for path in paths]
    return time.perf_counter() - started, texts


def _second_opinions_on_corpus() -> dict[str, Any]:
    """Of the corpus PDFs pypdf calls corrupt, those PDFium reads."""
    from doc_runs.core.extract import ExtractionLimits, extract_document_text
    from doc_runs.core.outcomes import DocumentRejected, Reason
    from doc_runs.core.sniff import PDF, sniff_media_type

    if not CORPUS.is_dir():
        return {"corpus": f"{CORPUS} not present"}
    corrupt = read_by_pdfium = 0
    for path in sorted(CORPUS.rglob("*.pdf")):
        try:  # as the pipeline does: what is not a PDF (or empty) never reaches extraction
            with path.open("rb") as head:
                if sniff_media_type(head.read(64 * 1024), path.name) != PDF:
                    continue
        except DocumentRejected:
            continue
        try:
            extract_document_text(path, PDF, ExtractionLimits(deadline_s=20))
        except DocumentRejected as rejected:
            if rejected.reason is not Reason.CORRUPT:
                continue
            corrupt += 1
            try:
                extract_document_text(path, PDF, ExtractionLimits(pdf_engine="pdfium",
                                                                  deadline_s=20))
                read_by_pdfium += 1
            except DocumentRejected:
                pass
    return {"corpus_pdfs_pypdf_calls_corrupt": corrupt, "of_those_pdfium_reads": read_by_pdfium}


def measure_extraction(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    pdfs = shared.get("pdfs") or work / "pdfs"
    if "pdfs" not in shared:
        write_ten_page_pdfs(pdfs, sizes.extraction_documents)
    paths = sorted(pdfs.iterdir())[:sizes.extraction_documents]
    # Three rounds, interleaved, each side's best round kept: a noisy neighbour costs both.
    raw_s, ours_s, fast_s = [], [], []
    pages = 0
    ours_text: list[list[str]] = []
    fast_text: list[list[str]] = []
    for _ in range(3):
        seconds, pages = _raw_pypdf_pages(paths)
        raw_s.append(seconds)
        seconds, ours_text = _stage_pages(paths, "pypdf")
        ours_s.append(seconds)
        seconds, fast_text = _stage_pages(paths, "pdfium")
        fast_s.append(seconds)
    raw_rate, ours_rate, fast_rate = (pages / min(s) for s in (raw_s, ours_s, fast_s))
    compared = [(a, b) for doc_a, doc_b in zip(ours_text, fast_text, strict=True)
                for a, b in zip(doc_a, doc_b, strict=False)]
    agree = sum(" ".join(a.split()) == " ".join(b.split()) for a, b in compared)
    return [
        Figure("extraction", f"the document_text stage's pages/s (isolated worker, pypdf) over "
               f"raw pypdf in process, {pages} pages", ratio(ours_rate, raw_rate), "x",
               ">= 0.95", ours_rate / raw_rate >= 0.95,
               {"pages": pages, "raw_pypdf_pages_per_s": round(raw_rate, 1),
                "stage_pages_per_s": round(ours_rate, 1)}),
        Figure("faster extractor", "the stage with DOC_RUNS_PDF_ENGINE=pdfium over the stage "
               "with pypdf, same pages; agreement is the share of pages with the same text "
               "(whitespace collapsed)", ratio(fast_rate, ours_rate), "x", ">= 2.5",
               fast_rate / ours_rate >= 2.5,
               {"pdfium_pages_per_s": round(fast_rate, 1),
                "pypdf_pages_per_s": round(ours_rate, 1),
                "pages_agreeing": f"{agree}/{len(compared)}",
                "agreement": ratio(agree, len(compared)),
                **_second_opinions_on_corpus()}),
    ]


# --- memory and scale ----------------------------------------------------------------------


def measure_memory(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from doc_runs_tests.documents import sentence_pages_pdf

    peaks = {}
    for pages in (20, sizes.big_pages):
        folder = work / f"pdf-{pages}"
        folder.mkdir()
        (folder / f"{pages}-pages.pdf").write_bytes(sentence_pages_pdf(0, pages))
        result = doc_runs_process(folder, work / f"project-{pages}")
        if result["statuses"] != {"succeeded": 1}:
            raise RuntimeError(f"the {pages}-page PDF did not succeed: {result['statuses']}")
        peaks[pages] = result["largest_process_peak_mb"]
    big = sizes.big_pages
    return [Figure("memory", f"peak resident memory of the largest process of a run on one "
                   f"{big}-page PDF over that on a 20-page one", ratio(peaks[big], peaks[20]),
                   "x", "< 3", peaks[big] / peaks[20] < 3,
                   {f"peak_mb_{pages}_pages": mb for pages, mb in peaks.items()})]


def measure_scale(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    folder = work / "notes"
    folder.mkdir()
    for i in range(sizes.scale_documents):
        (folder / f"note-{i:05d}.txt").write_text(
            f"Note {i}. Invoice {i * 7919 % 100003} is due on day {i % 28 + 1}. Payment terms "
            f"are thirty days. The supplier is number {i % 97}.\n")
    result = doc_runs_process(folder, work / "project")
    result.pop("stderr_tail", None)
    timeouts = result["reasons"].get("timeout", 0)
    limit = result["max_concurrent_runs"]
    holds = (result["most_runs_in_flight"] <= limit and timeouts == 0
             and result["statuses"] == {"succeeded": sizes.scale_documents})
    return [Figure("scale", f"{sizes.scale_documents} small text documents through doc-runs "
                   "process: the command's peak memory; runs in flight against the instance's "
                   "limit; documents quarantined as timeout",
                   result["command_peak_mb"], "MB", f"bounded; runs in flight <= {limit}; "
                   "no timeout", holds,
                   {**result, "docs_per_s": round(sizes.scale_documents / result["wall_s"], 1)})]


def measure_corpus_scale(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.scale import run_scale, worst_ratio

    largest = sizes.scale_history
    steps = f"0,{largest // 10},{largest}"
    results = run_scale(["sqlite", "postgresql"], steps, per_day=5000,
                        repeat=sizes.scale_repeat, batch_size=sizes.scale_batch,
                        out=work / "scale.json", process_documents=sizes.scale_process,
                        tries=sizes.scale_tries)
    worsts = {r["storage"]: worst_ratio(r) for r in results}
    worst = max(ratio for ratio, _ in worsts.values())
    partitions = max(r["sizes"][str(largest)]["partitions_per_asset"] for r in results)
    measured = {"results": results, "worst": worsts}
    return [
        Figure("corpus scale", f"the same work (doc-runs process of {sizes.scale_process} "
               "documents, each "
               f"sensor's tick, the nightly schedule, the UI's asset-page queries) with "
               f"{largest} documents of history over with none, on SQLite and PostgreSQL: "
               "the largest ratio (for an events list, which shows the newest 100, its time "
               "per event listed)", worst, "x", "<= 1.2", worst <= 1.2, measured),
        Figure("partitions", f"partitions per asset over documents at {largest}",
               round(partitions / largest, 6), "x", "<= 0.001", partitions / largest <= 0.001,
               {"partitions_per_asset": partitions}),
    ]


# --- model calls, chunker, queue -----------------------------------------------------------


def measure_model(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.model_calls import measure_model_concurrency, measure_reexecution_cost

    (work / "concurrency").mkdir()
    (work / "reexecution").mkdir()
    return [measure_model_concurrency(work / "concurrency", sizes.model_documents),
            measure_reexecution_cost(work / "reexecution", sizes.model_documents)]


def measure_chunker(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.peers import langchain_split, our_chunker, peer_python

    # Real prose: the PEPs of bench/data/peps.jsonl (public domain), repeated to the size.
    pages = [json.loads(line)["text"] for line in
             (ROOT / "bench" / "data" / "peps.jsonl").read_text().splitlines()]
    while sum(map(len, pages)) < sizes.chunk_text_mb * 1e6:
        pages = pages + pages
    kept, total = [], 0
    for page in pages:  # about the size asked for: whole PEPs up to it
        if kept and total + len(page) > sizes.chunk_text_mb * 1e6:
            break
        kept.append(page)
        total += len(page)
    pages = kept
    text, ours = our_chunker(pages, 1200, 200, repeat=3)
    text_path = work / "text.txt"
    text_path.write_text(text, encoding="utf-8")
    theirs = langchain_split(peer_python(ROOT), text_path, 1200, 200, repeat=3)
    return [Figure("chunker", f"doc_runs' chunker MB/s over LangChain's "
                   f"RecursiveCharacterTextSplitter, both 1200/200 characters, the same "
                   f"{ours['megabytes']:.1f} MB of PEP prose",
                   ratio(ours["mb_per_s"], theirs["mb_per_s"]), "x", ">= 1.0",
                   ours["mb_per_s"] >= theirs["mb_per_s"],
                   {"doc_runs": ours, "langchain": theirs})]


def measure_queue(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from doc_runs_tests.servers import redis_answers, start_throwaway_redis

    env = dict(os.environ)
    url = env.get("DOC_RUNS_REDIS_URL", "redis://127.0.0.1:6379/0")
    throwaway = None if redis_answers(url) else start_throwaway_redis()
    if throwaway is not None:
        env["DOC_RUNS_REDIS_URL"] = throwaway.url
    try:
        out, log = work / "queue.json", work / "queue.log"
        with log.open("wb") as sink:
            child = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "queue_latency.py"), "--submissions",
                 str(sizes.submissions), "--messages", str(sizes.messages), "--json-out",
                 str(out)], env=env, stdout=sink, stderr=subprocess.STDOUT)
            try:
                child.wait()
            except BaseException:
                # Its own cleanup (stop dagster dev, delete its Redis keys and folder) takes
                # seconds: let it finish instead of killing it midway.
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(120)
                except subprocess.TimeoutExpired:
                    child.kill()
                raise
        if child.returncode != 0:
            raise RuntimeError(f"queue_latency.py exited {child.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        result = json.loads(out.read_text())
    finally:
        if throwaway is not None:
            throwaway.stop()
    tick, median = result.get("longest_tick_s"), result["latency_median_s"]
    return [
        Figure("queue tick", f"longest queue sensor tick with {sizes.messages} messages "
               "waiting (every tenth poison)", tick, "s", "< 30",
               tick < 30 if tick is not None else None, result),
        Figure("queue latency", f"submit to run start, median over {sizes.submissions} "
               f"submissions with the daemon up (95th percentile "
               f"{result['latency_p95_s']} s)", median, "s", "median < 10", median < 10,
               {k: v for k, v in result.items() if k.startswith("latency")}),
    ]


def measure_chaos(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.chaos import ChaosPlan, run_chaos

    plan = ChaosPlan(seconds=sizes.chaos_minutes * 60)
    result = run_chaos(work / "deployment", plan)
    kills = len(result.kills)
    return [Figure("chaos", f"{sizes.chaos_minutes:g} min of uploads and queue messages into "
                   f"bin/up with {kills} random SIGKILLs (run worker, code server, daemon, "
                   f"webserver, API, all): {result.accepted} accepted, {result.final} final, "
                   f"{len(result.lost)} lost, {result.resent_after_answer} model answers asked "
                   "again; seconds from the end of the stream (or a later kill or restart) to "
                   "every document final",
                   result.seconds_to_all_final, "s", "< 180, none lost, every check holds",
                   result.holds and result.seconds_to_all_final is not None
                   and result.seconds_to_all_final < 180, result.as_json())]


def measure_power_cut(work: Path, sizes: Sizes, shared: dict[str, Any]) -> list[Figure]:
    from bench.power_cut import run_power_cut

    result = run_power_cut(work / "power-cut", sizes.power_cut_documents, 0, 10.0)
    took = result["seconds_from_restart_to_all_final"]
    return [Figure("power cut", f"{sizes.power_cut_documents} uploads, every process of bin/up "
                   "SIGKILLed 10 s into their processing, bin/up started again: seconds from "
                   f"the restart to every document succeeded ({result['resent_after_answer']} "
                   "model answers asked again)",
                   took, "s", "< 180, all succeeded, none asked again", bool(result["holds"]),
                   result)]


MEASUREMENTS: dict[str, Callable[[Path, Sizes, dict[str, Any]], list[Figure]]] = {
    "throughput": measure_throughput,  # also overhead and first run
    "peer": measure_peer,
    "extraction": measure_extraction,  # also the faster extractor
    "memory": measure_memory,
    "scale": measure_scale,
    "corpus_scale": measure_corpus_scale,  # also partitions
    "model": measure_model,  # model concurrency and re-execution cost
    "chunker": measure_chunker,
    "queue": measure_queue,  # queue tick and latency
    "chaos": measure_chaos,
    "power_cut": measure_power_cut,
}


def _cell(value: Any) -> str:
    return "n/a" if value is None else str(value)


def table(figures: list[Figure], failures: dict[str, str]) -> str:
    lines = ["| figure | value | target | holds | what |", "|---|---|---|---|---|"]
    for f in figures:
        value = "n/a" if f.value is None else (f"{f.value:g}{f.unit}" if f.unit == "x"
                                              else f"{f.value:g} {f.unit}")
        holds = {True: "yes", False: "NO", None: "-"}[f.holds]
        lines.append(f"| {f.name} | {value} | {f.target} | {holds} | {f.what} |")
    for name, why in failures.items():
        lines.append(f"| {name} | not measured | | | {why} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS),
                        help="these measurements only")
    parser.add_argument("--quick", action="store_true",
                        help="tiny inputs: every code path, meaningless figures (smoke test)")
    for name, default in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None,
                            help=f"default {default}, {QUICK[name]} with --quick")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "suite.json")
    args = parser.parse_args()
    sizes = Sizes(**{name: getattr(args, name) if getattr(args, name) is not None
                     else (QUICK if args.quick else FULL)[name] for name in FULL})
    for name in FULL:
        value = getattr(sizes, name)
        if not (math.isfinite(value) and 0 < value <= (
                1000 if name in ("chunk_text_mb", "chaos_minutes") else 10_000_000)):
            parser.error(f"--{name.replace('_', '-')} must be a positive number, not {value}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; name a file")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a"):  # writable now, not only after the whole run
            pass
    except OSError as unwritable:
        parser.error(f"--out {args.out}: {unwritable}")
    chosen = list(dict.fromkeys(args.only or MEASUREMENTS))
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    facts = machine()
    shared: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="doc-runs-suite-") as tmp:
        for name in chosen:
            work = Path(tmp) / name
            work.mkdir()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                figures.extend(MEASUREMENTS[name](work, sizes, shared))
            except Exception as exc:
                traceback.print_exc()
                failures[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"bench: {name} took {timings[name]} s", file=sys.stderr, flush=True)
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB; "
          f"Python {facts['python']}, Dagster {facts['dagster']}, commit {facts['commit']}, "
          f"{facts['date']}")
    print(table(figures, failures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": facts, "sizes": vars(sizes), "seconds_per_measurement": timings,
        "figures": [f.as_json() for f in figures], "not_measured": failures,
    }, indent=2, default=str))
    print(f"written: {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
