"""The benchmark scripts run end to end on tiny inputs (their figures are not checked: no
timing assertion belongs in the suite)."""

import os
import subprocess
import sys

from doc_runs_tests.test_cli import PROJECT_ROOT


def bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / script), *args],
                          cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_process_throughput_runs_on_two_documents() -> None:
    out = bench("process_throughput.py", "--documents", "2")
    assert "plain loop over core functions:" in out and "(2 succeeded)" in out
    assert "doc-runs process (1 run(s))" in out and "ratio" in out


def test_profile_run_runs_on_two_documents() -> None:
    out = bench("profile_run.py", "--documents", "2", "--top", "5")
    assert "run: " in out and "succeeded" in out and "events (" in out
    assert "execute_in_process" in out
