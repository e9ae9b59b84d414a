"""Documents per second: `doc-runs process` (Dagster runs on a SQLite instance) against a plain
Python loop over the same core stage functions (offline model backend in both), on the same
generated 10-page PDFs, measured side by side in one invocation. Both are measured over their
whole process tree (bench/process_tree.py): wall time, CPU seconds, peak memory.

    .venv/bin/python bench/process_throughput.py [--documents 100] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.process_tree import measure_in_fresh_process  # noqa: E402
from doc_runs_tests.documents import ten_page_pdf  # noqa: E402


def write_ten_page_pdfs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"doc-{i:05d}.pdf"
        path.write_bytes(ten_page_pdf(i))  # seeded by i: the same bytes on every machine
        files.append(path)
    return files


def fresh_project(project: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A project folder with its own instance (the local default's dagster.yaml) and store;
    returns the environment (`base`, else this process's) that points doc-runs at it."""
    home = project / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.local.yaml").read_text())
    return {**(os.environ if base is None else base), "DAGSTER_HOME": str(home),
            "DOC_RUNS_STORE_DIR": str(project / "store"),
            "DOC_RUNS_REPORTS_DIR": str(project / "reports"),
            "DOC_RUNS_INBOX_DIR": str(project / "inbox")}


def run_facts(home: Path) -> dict[str, Any]:
    """From the instance the command used: its runs, the most that were in flight at once, and
    when the first document stage started."""
    from dagster import DagsterEventType, DagsterInstance

    # The batching event log finds its folder through DAGSTER_HOME, as every process the
    # command starts does.
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        records = [r for r in instance.get_run_records()
                   if r.dagster_run.job_name == "document_pipeline"]
        # In flight from its creation (the command holds a slot from then) to its end.
        spans = sorted((r.create_timestamp.timestamp(), r.end_time) for r in records
                       if r.end_time)
        edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
        in_flight = most = 0
        for _, step in edges:
            in_flight += step
            most = max(most, in_flight)
        first_step = min(
            (e.timestamp for r in records for e in instance.all_logs(
                r.dagster_run.run_id, of_type=DagsterEventType.STEP_START)),
            default=None)
        return {"runs": len(records), "most_runs_in_flight": most,
                "first_step_started_at": first_step,
                "max_concurrent_runs": instance.get_concurrency_config()
                .run_queue_config.max_concurrent_runs}


def doc_runs_process(files_dir: Path, project: Path, extra: list[str] | None = None,
                     env: dict[str, str] | None = None) -> dict[str, Any]:
    """`doc-runs process FILES --json --no-report` on a fresh project (with `env` added to
    its environment), measured over its process tree, with each document's status read from
    its JSON lines."""
    env = {**fresh_project(project), **(env or {})}  # makes `project`
    out = project / "process.jsonl"
    tree = measure_in_fresh_process(
        [sys.executable, "-m", "doc_runs.cli", "process", str(files_dir), "--json",
         "--no-report", *(extra or [])], cwd=project, env=env, stdout_path=out)
    if tree["returncode"] not in (0, 1):
        raise RuntimeError(f"doc-runs process exited {tree['returncode']}: "
                           f"{tree['stderr_tail']}")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for line in lines:
        statuses[line["status"]] = statuses.get(line["status"], 0) + 1
        if line.get("reason"):
            reasons[line["reason"]] = reasons.get(line["reason"], 0) + 1
    facts = run_facts(project / "dagster_home")
    first = facts.pop("first_step_started_at")
    return {**tree, **facts, "documents": len(lines), "statuses": statuses, "reasons": reasons,
            "first_step_after_s": round(first - tree["started_at"], 3) if first else None}


def plain_loop_process(files_dir: Path, store_dir: Path) -> dict[str, Any]:
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    out = store_dir.parent / "plain_loop.json"
    tree = measure_in_fresh_process(
        [sys.executable, str(ROOT / "bench" / "plain_loop.py"), str(files_dir),
         str(store_dir)], stdout_path=out)
    if tree["returncode"] != 0:
        raise RuntimeError(f"the plain loop exited {tree['returncode']}: {tree['stderr_tail']}")
    return {**tree, **json.loads(out.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="as doc-runs process; by default it chooses")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doc-runs-bench-") as tmp:
        work = Path(tmp)
        write_ten_page_pdfs(work / "pdfs", args.documents)
        loop = plain_loop_process(work / "pdfs", work / "loop" / "store")
        dagster = doc_runs_process(
            work / "pdfs", work / "project",
            ["--batch-size", str(args.batch_size)] if args.batch_size else [])
    n = args.documents
    print(f"documents: {n} generated 10-page PDFs")
    print(f"plain loop over core functions: {loop['wall_s']:7.2f} s  "
          f"{n / loop['wall_s']:7.1f} docs/s  cpu {loop['cpu_s']:.1f} s  "
          f"({loop['succeeded']} succeeded)")
    print(f"doc-runs process ({dagster['runs']} run(s)):  {dagster['wall_s']:7.2f} s  "
          f"{n / dagster['wall_s']:7.1f} docs/s  cpu {dagster['cpu_s']:.1f} s  "
          f"({dagster['statuses'].get('succeeded', 0)} succeeded)")
    print(f"ratio (plain loop time / doc-runs process time): "
          f"{loop['wall_s'] / dagster['wall_s']:.2f}")
    print(f"first document stage started {dagster['first_step_after_s']} s after the command")


if __name__ == "__main__":
    main()
