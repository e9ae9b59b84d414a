"""Documents per second: `doc-runs process` (Dagster runs on a SQLite instance) against a plain
Python loop over the same core stage functions (offline model backend in both), on the same
generated 10-page PDFs, measured side by side in one invocation.

    .venv/bin/python bench/process_throughput.py [--documents 100] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_runs.core.agent.client import ModelClient  # noqa: E402
from doc_runs.core.agent.findings import DEFAULT_FIELDS  # noqa: E402
from doc_runs.core.agent.ledger import DocumentLedger, Pricing  # noqa: E402
from doc_runs.core.agent.loop import AgentLimits  # noqa: E402
from doc_runs.core.agent.offline import OfflineBackend  # noqa: E402
from doc_runs.core.chunking import ChunkingConfig  # noqa: E402
from doc_runs.core.extract import ExtractionLimits  # noqa: E402
from doc_runs.core.intake import store_file  # noqa: E402
from doc_runs.core.stages import (  # noqa: E402
    chunk_stage,
    describe_document,
    extract_stage,
    findings_stage,
    summary_stage,
)
from doc_runs.core.store import DocumentStore  # noqa: E402
from doc_runs.core.summarize import SummaryConfig  # noqa: E402
from doc_runs_tests.documents import ten_page_pdf  # noqa: E402


def plain_loop(files: list[Path], store_dir: Path) -> tuple[float, int]:
    store = DocumentStore(store_dir)
    limits = ExtractionLimits()
    started = time.perf_counter()
    succeeded = 0
    for path in files:
        document_id = store_file(store, path)
        document = describe_document(store, document_id, limits)
        text = extract_stage(store, document, limits)
        chunks = chunk_stage(text, ChunkingConfig())
        # The offline backend, as `doc-runs process` uses by default; a fresh ledger per
        # document, the same call cache in the store.
        client = ModelClient(OfflineBackend(), store, DocumentLedger(Pricing(), 0, None))
        findings = findings_stage(text, chunks, client, DEFAULT_FIELDS, AgentLimits())
        summary = summary_stage(text, chunks, findings, client, SummaryConfig(), 4,
                                AgentLimits())
        succeeded += summary.outcome.ok
    return time.perf_counter() - started, succeeded


def through_dagster(files_dir: Path, project: Path, batch_size: int | None
                    ) -> tuple[float, int, int]:
    env = {**os.environ, "DAGSTER_HOME": str(project / "dagster_home"),
           "DOC_RUNS_STORE_DIR": str(project / "store"),
           "DOC_RUNS_REPORTS_DIR": str(project / "reports")}
    (project / "dagster_home").mkdir(parents=True)
    (project / "dagster_home" / "dagster.yaml").write_text(
        (ROOT / "deploy" / "dagster.local.yaml").read_text())
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "doc_runs.cli", "process", str(files_dir), "--json",
         *(["--batch-size", str(batch_size)] if batch_size else []), "--no-report"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    )
    elapsed = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return elapsed, sum(line["status"] == "succeeded" for line in lines), len(
        {line["run_id"] for line in lines})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="as doc-runs process; by default it chooses")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doc-runs-bench-") as tmp:
        work = Path(tmp)
        files_dir = work / "pdfs"
        files_dir.mkdir()
        files = []
        for i in range(args.documents):
            path = files_dir / f"doc-{i:04d}.pdf"
            path.write_bytes(ten_page_pdf(i))
            files.append(path)
        loop_s, loop_ok = plain_loop(files, work / "loop-store")
        dagster_s, dagster_ok, runs = through_dagster(files_dir, work / "project",
                                                      args.batch_size)
    n = args.documents
    print(f"documents: {n} generated 10-page PDFs")
    print(f"plain loop over core functions: {loop_s:7.2f} s  {n / loop_s:7.1f} docs/s  "
          f"({loop_ok} succeeded)")
    print(f"doc-runs process ({runs} run(s)):  {dagster_s:7.2f} s  {n / dagster_s:7.1f} docs/s  "
          f"({dagster_ok} succeeded)")
    print(f"ratio (doc-runs process time / plain loop time): {dagster_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
