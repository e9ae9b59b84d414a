"""The benchmark scripts run end to end on tiny inputs (their figures are not checked: no
timing assertion belongs in the suite)."""

import json
import os
import subprocess
import sys

import pytest

from doc_runs_tests.helpers import PROJECT_ROOT


def bench(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / script), *args],
                          cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.processes
def test_process_throughput_runs_on_two_documents() -> None:
    out = bench("process_throughput.py", "--documents", "2")
    assert "plain loop over core functions:" in out and "(2 succeeded)" in out
    assert "doc-runs process (1 run(s))" in out and "ratio" in out


@pytest.mark.processes
def test_profile_run_runs_on_two_documents() -> None:
    out = bench("profile_run.py", "--documents", "2", "--top", "5")
    assert "run: " in out and "succeeded" in out and "events (" in out
    assert "execute_in_process" in out


def test_the_suite_measures_every_figure_on_tiny_inputs(tmp_path, postgres_server_url,
                                                       redis_server_url) -> None:
    """Every measurement of bench/suite.py but `model` (test_bench_model_calls.py runs those
    two), on tiny inputs: it sets up the peers' venv, runs dagster dev for the queue, and
    writes a figure for each. Whether the figures hold is not checked."""
    out = tmp_path / "suite.json"
    printed = bench("suite.py", "--quick", "--only", "throughput", "peer", "extraction",
                    "memory", "scale", "corpus_scale", "chunker", "queue", "--out", str(out),
                    # The corpus scale figure's deployments use the suite's servers.
                    env={"TEST_POSTGRES_URL": postgres_server_url,
                         "DOC_RUNS_REDIS_URL": redis_server_url})
    written = json.loads(out.read_text())
    assert written["not_measured"] == {}, written["not_measured"]
    figures = {f["name"]: f for f in written["figures"]}
    assert set(figures) == {"throughput", "overhead", "first run", "peer", "extraction",
                            "faster extractor", "memory", "scale", "corpus scale", "partitions",
                            "chunker", "queue tick", "queue latency"}
    assert all(f["value"] is not None for f in figures.values()), figures
    assert figures["throughput"]["measured"]["doc_runs"]["statuses"] == {"succeeded": 3}
    assert figures["scale"]["measured"]["statuses"] == {"succeeded": 20}
    scaled = figures["corpus scale"]["measured"]["results"]
    assert [r["storage"] for r in scaled] == ["sqlite", "postgresql"]
    assert all(list(r["sizes"]) == ["0", "10", "100"] for r in scaled)
    assert written["machine"]["cores"] >= 1
    for name in figures:
        assert f"| {name} |" in printed


def test_scale_statements_counts_each_page_query_at_two_kept_deployments(
        tmp_path, postgres_server_url, redis_server_url) -> None:
    """bench/scale.py --keep, then bench/scale_statements.py over the two kept deployments of
    each storage: every page query's statements recorded and costed (SQLite's instructions,
    PostgreSQL's buffers) at both sizes; the kept deployments are removed afterwards."""
    from bench.scale import STATE_FILE, cleanup

    env = {"TEST_POSTGRES_URL": postgres_server_url, "DOC_RUNS_REDIS_URL": redis_server_url,
           "TMPDIR": str(tmp_path)}
    bench("scale.py", "--storage", "sqlite,postgresql", "--sizes", "0,100", "--repeat", "1",
          "--keep", "--out", str(tmp_path / "scale.json"), env=env)
    states = {}
    for path in tmp_path.glob(f"doc-runs-scale-*/{STATE_FILE}"):
        kept = json.loads(path.read_text())
        states[(kept["storage"], kept["size"])] = (path, kept)
    assert set(states) == {(s, n) for s in ("sqlite", "postgresql") for n in (0, 100)}
    try:
        for storage in ("sqlite", "postgresql"):
            out = tmp_path / f"{storage}.json"
            printed = bench("scale_statements.py", str(states[(storage, 0)][0]),
                            str(states[(storage, 100)][0]), "--out", str(out), env=env)
            assert printed.startswith(f"{storage}: 0 against 100 documents"), printed
            pages = json.loads(out.read_text())["pages"]
            for page in ("document_summary LatestAssetPartitionsQuery",
                         "corpus_report PartitionHealthQuery"):
                assert f"| {page} |" in printed
                for at_size in pages:
                    costs = [s["cost"] for s in at_size[page] if s["cost"] is not None]
                    assert costs and sum(costs) > 0, (storage, page, at_size)
    finally:
        for _, kept in states.values():
            cleanup(kept["storage"], kept["env"])
