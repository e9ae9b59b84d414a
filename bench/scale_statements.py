"""What the UI's asset pages cost the database, counted rather than timed, at deployments kept
by `bench/scale.py --keep`: the SQL statements each page query runs, and each statement's
work in units this shared machine's speed does not move: PostgreSQL's shared buffers touched
(EXPLAIN (ANALYZE, BUFFERS)), SQLite's virtual-machine instructions (a progress handler,
counted in tens). A figure that grows with the past grows here too, whatever the machine
does meanwhile; a millisecond figure that moves while its count stays put is the machine.

    .venv/bin/python bench/scale_statements.py STATE_OF_0 STATE_OF_N [--out FILE.json]

Each state file is the `scale-state.json` that `--keep` printed. Every query is asked once
to warm the caches, then once more with its statements recorded; only SELECTs are costed, each
again on a connection of its own (read-only on SQLite; rolled back on PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASSETS = ("document_summary", "corpus_report")
PROGRESS_STEP = 10  # SQLite instructions between two calls of the progress handler


def record_statements(state_file: Path) -> dict[str, list[dict[str, Any]]]:
    """In this process, with the kept deployment's environment: each page query's statements
    and their cost. Run in a child process per deployment (the definitions read the
    environment when they load)."""
    state = json.loads(state_file.read_text())
    os.environ.update(state["env"])
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster_graphql.test.utils import execute_dagster_graphql
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from doc_runs_tests.ui_queries import asset_page_variables, ui_queries

    recorded: list[tuple[str, str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        recorded.append((conn.engine.url.render_as_string(hide_password=False), statement,
                         parameters))

    pages: dict[str, list[tuple[str, str, Any]]] = {}
    target = ModuleTarget(module_name="doc_runs.definitions", attribute=None,
                          working_directory=str(ROOT), location_name="doc_runs")
    with DagsterInstance.get() as instance, \
            WorkspaceProcessContext(instance, target) as process_context:
        for asset in ASSETS:
            variables = asset_page_variables(asset)
            for name, query in ui_queries().items():
                execute_dagster_graphql(process_context.create_request_context(), query,
                                        variables)
                event.listen(Engine, "before_cursor_execute", record)
                try:
                    answer = execute_dagster_graphql(process_context.create_request_context(),
                                                     query, variables)
                finally:
                    event.remove(Engine, "before_cursor_execute", record)
                if answer.errors:
                    raise RuntimeError(f"{asset} {name}: {answer.errors}")
                pages[f"{asset} {name}"], recorded = recorded, []
    return {page: [{"sql": " ".join(statement.split()),
                    "cost": statement_cost(url, statement, parameters)}
                   for url, statement, parameters in statements]
            for page, statements in pages.items()}


def statement_cost(url: str, statement: str, parameters: Any) -> int | None:
    if not statement.lstrip().upper().startswith("SELECT"):
        return None
    if url.startswith("sqlite"):
        return sqlite_instructions(url.split(":///", 1)[1], statement, parameters)
    return postgres_buffers(url, statement, parameters)


def sqlite_instructions(path: str, statement: str, parameters: Any) -> int:
    calls = 0

    def counted() -> int:
        nonlocal calls
        calls += 1
        return 0  # go on

    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        connection.set_progress_handler(counted, PROGRESS_STEP)
        connection.execute(statement, parameters or ()).fetchall()
    finally:
        connection.close()
    return calls * PROGRESS_STEP


def postgres_buffers(url: str, statement: str, parameters: Any) -> int:
    import psycopg2

    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
            plan = cursor.fetchone()[0][0]["Plan"]  # its counts include its children's
        return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
    finally:
        connection.rollback()
        connection.close()


def in_child(state_file: Path) -> dict[str, Any]:
    # The answer comes back in a file: what Dagster prints on stdout (its code server's
    # shutdown) would mix with it.
    with tempfile.TemporaryDirectory() as folder:
        answer = Path(folder) / "statements.json"
        done = subprocess.run([sys.executable, __file__, "--record", str(state_file),
                               "--out", str(answer)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"recording {state_file} failed:\n{done.stderr[-3000:]}")
        return json.loads(answer.read_text())


def table(before: dict[str, Any], after: dict[str, Any], sizes: tuple[int, int]) -> str:
    lines = [f"| page query | statements | cost at {sizes[0]:,} | cost at {sizes[1]:,} | ratio "
             "| statements whose cost changed |", "|---|---|---|---|---|---|"]
    for page in before:
        old, new = before[page], after.get(page, [])
        total_old = sum(s["cost"] or 0 for s in old)
        total_new = sum(s["cost"] or 0 for s in new)
        changed = [f"{a['cost']}→{b['cost']} `{a['sql'][:70]}…`"
                   for a, b in zip(old, new, strict=False) if a["cost"] != b["cost"]]
        count = str(len(old)) if len(old) == len(new) else f"{len(old)}→{len(new)}"
        ratio = f"{total_new / total_old:.2f}" if total_old else "-"
        lines.append(f"| {page} | {count} | {total_old} | {total_new} | {ratio} | "
                     f"{'; '.join(changed) or 'none'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("states", nargs="*", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record:
        args.out.write_text(json.dumps(record_statements(args.record)))
        return 0
    if len(args.states) != 2:
        parser.error("give two state files: the smaller deployment's, then the larger's")
    kept = [json.loads(path.read_text()) for path in args.states]
    if kept[0]["storage"] != kept[1]["storage"]:
        parser.error("the two deployments are on different storages")
    results = [in_child(path) for path in args.states]
    print(f"{kept[0]['storage']}: {kept[0]['size']:,} against {kept[1]['size']:,} documents")
    print(table(results[0], results[1], (kept[0]["size"], kept[1]["size"])))
    if args.out:
        args.out.write_text(json.dumps({"deployments": kept, "pages": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
