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


# Each measurement of bench/suite.py and the figures it writes, one test each so that they
# spread over the test workers; but `model` (test_bench_model_calls.py runs its two), `chaos`
# (test_chaos.py runs its short form) and `power_cut` (minutes even when small; the recovery
# it measures is test_crash_recovery.py's).
SUITE_FIGURES = {
    "throughput": {"throughput", "overhead", "first run"},
    "peer": {"peer"},
    "extraction": {"extraction", "faster extractor"},
    "memory": {"memory"},
    "scale": {"scale"},
    "corpus_scale": {"corpus scale", "partitions"},
    "chunker": {"chunker"},
    "queue": {"queue tick", "queue latency"},
}


def test_every_measurement_of_the_suite_but_model_chaos_and_power_cut_has_a_smoke_test() -> None:
    from bench.suite import MEASUREMENTS

    assert set(MEASUREMENTS) - {"model", "chaos", "power_cut"} == set(SUITE_FIGURES)


@pytest.mark.parametrize("measurement", sorted(SUITE_FIGURES))
def test_the_suite_measures_each_figure_on_tiny_inputs(measurement, tmp_path,
                                                       postgres_server_url,
                                                       redis_server_url) -> None:
    """bench/suite.py --quick --only MEASUREMENT: it sets up what the measurement needs (the
    peers' venv, dagster dev for the queue, deployments for the corpus scale) and writes
    each of its figures. Whether the figures hold is not checked."""
    out = tmp_path / "suite.json"
    printed = bench("suite.py", "--quick", "--only", measurement, "--out", str(out),
                    # The corpus scale figure's deployments use the suite's servers.
                    env={"TEST_POSTGRES_URL": postgres_server_url,
                         "DOC_RUNS_REDIS_URL": redis_server_url})
    written = json.loads(out.read_text())
    assert written["not_measured"] == {}, written["not_measured"]
    figures = {f["name"]: f for f in written["figures"]}
    assert set(figures) == SUITE_FIGURES[measurement]
    assert all(f["value"] is not None for f in figures.values()), figures
    if measurement == "throughput":
        assert figures["throughput"]["measured"]["doc_runs"]["statuses"] == {"succeeded": 3}
    if measurement == "scale":
        assert figures["scale"]["measured"]["statuses"] == {"succeeded": 20}
    if measurement == "corpus_scale":
        scaled = figures["corpus scale"]["measured"]["results"]
        assert [r["storage"] for r in scaled] == ["sqlite", "postgresql"]
        assert all(list(r["sizes"]) == ["0", "10", "100"] for r in scaled)
    assert written["machine"]["cores"] >= 1
    for name in figures:
        assert f"| {name} |" in printed


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_scale_statements_counts_each_page_query_at_two_kept_deployments(
        storage, tmp_path, postgres_server_url, redis_server_url) -> None:
    """bench/scale.py --keep, then bench/scale_statements.py over the two kept deployments of
    the storage: every page query's statements recorded and costed (SQLite's instructions,
    PostgreSQL's buffers) at both sizes; the kept deployments are removed afterwards."""
    from bench.scale import STATE_FILE, cleanup

    env = {"TEST_POSTGRES_URL": postgres_server_url, "DOC_RUNS_REDIS_URL": redis_server_url,
           "TMPDIR": str(tmp_path)}
    bench("scale.py", "--storage", storage, "--sizes", "0,100", "--repeat", "1", "--keep",
          "--batch-size", "5", "--process-documents", "2", "--tries", "1",
          "--out", str(tmp_path / "scale.json"), env=env)
    states = {}
    for path in tmp_path.glob(f"doc-runs-scale-*/{STATE_FILE}"):
        kept = json.loads(path.read_text())
        states[(kept["storage"], kept["size"])] = (path, kept)
    assert set(states) == {(storage, 0), (storage, 100)}
    try:
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
