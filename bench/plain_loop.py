"""The plain Python loop doc-runs is measured against: every file through the same core stage
functions, one after another in one process (the offline backend, as `doc-runs process` uses
by default), no Dagster.

    python bench/plain_loop.py FILES_DIR STORE_DIR   (prints one JSON object)
"""

from __future__ import annotations

import json
import sys
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
        # A fresh ledger per document, the same call cache in the store.
        client = ModelClient(OfflineBackend(), store, DocumentLedger(Pricing(), 0, None))
        findings = findings_stage(text, chunks, client, DEFAULT_FIELDS, AgentLimits())
        summary = summary_stage(text, chunks, findings, client, SummaryConfig(), 4,
                                AgentLimits())
        succeeded += summary.outcome.ok
    return time.perf_counter() - started, succeeded


def main() -> None:
    files_dir, store_dir = Path(sys.argv[1]), Path(sys.argv[2])
    files = sorted(p for p in files_dir.iterdir() if p.is_file())
    seconds, succeeded = plain_loop(files, store_dir)
    print(json.dumps({"documents": len(files), "seconds": round(seconds, 3),
                      "succeeded": succeeded}))


if __name__ == "__main__":
    main()
