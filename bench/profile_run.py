"""Where a run's time goes: cProfile of one ranged `document_pipeline` run over generated
ten-page PDFs, executed in process on a fresh SQLite instance made from the local default's
`dagster.yaml`. Prints the wall time, the events the run wrote, and the functions with the
most cumulative time (Dagster's and ours).

    .venv/bin/python bench/profile_run.py [--documents 50] [--top 30] [--save prof.out]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def profile_run(documents: int, work: Path) -> tuple[float, int, bool, cProfile.Profile]:
    for name in ("store", "reports", "inbox", "dagster_home"):
        (work / name).mkdir()
    os.environ.update(DOC_RUNS_STORE_DIR=str(work / "store"),
                      DOC_RUNS_REPORTS_DIR=str(work / "reports"),
                      DOC_RUNS_INBOX_DIR=str(work / "inbox"),
                      DAGSTER_HOME=str(work / "dagster_home"))
    (work / "dagster_home" / "dagster.yaml").write_text(
        (ROOT / "deploy" / "dagster.local.yaml").read_text())
    # After the environment is set: the definitions read it when they load.
    from dagster import DagsterInstance

    import doc_runs.definitions
    from doc_runs.core.catalog import DocumentCatalog
    from doc_runs.core.intake import store_file
    from doc_runs.core.store import DocumentStore
    from doc_runs.defs.batches import register
    from doc_runs.defs.resources import instance_catalog_url
    from doc_runs_tests.documents import ten_page_pdf

    store = DocumentStore(work / "store")
    keys = []
    for i in range(documents):
        path = work / "inbox" / f"doc-{i:04d}.pdf"
        path.write_bytes(ten_page_pdf(i))
        keys.append(store_file(store, path))
    with DagsterInstance.get() as instance:
        with DocumentCatalog(instance_catalog_url(instance)) as catalog:
            batch, tags = register(catalog, store, "profile", "default", keys, "cli")
        job = doc_runs.definitions.defs().resolve_job_def("document_pipeline")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        result = job.execute_in_process(
            instance=instance, partition_key=batch.day, tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        profiler.disable()
        elapsed = time.perf_counter() - started
        events = len(instance.all_logs(result.run_id))
    return elapsed, events, result.success, profiler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=50)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", help="also write the raw profile here (for snakeviz etc.)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doc-runs-profile-") as tmp:
        elapsed, events, success, profiler = profile_run(args.documents, Path(tmp))
    if args.save:
        profiler.dump_stats(args.save)
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("cumulative").print_stats(args.top)
    print(f"documents: {args.documents} generated 10-page PDFs, one ranged run, in process")
    print(f"run: {elapsed:.2f} s, {'succeeded' if success else 'FAILED'}, {events} events "
          f"({events / args.documents:.1f} a document)")
    print(listing.getvalue())


if __name__ == "__main__":
    main()
