"""bench/model_calls.py measures both its figures end to end on two documents. Only that they
complete with sane raw counts is checked: no timing assertion belongs in the suite."""

from pathlib import Path

import pytest

from bench.model_calls import measure_model_concurrency, measure_reexecution_cost

# Every test here starts processes (left out by --quick).
pytestmark = pytest.mark.processes


def test_model_concurrency_is_measured_on_two_documents(tmp_path: Path) -> None:
    figure = measure_model_concurrency(tmp_path, 2)
    measured = figure.measured
    assert figure.name == "model concurrency" and figure.value is not None
    assert measured["succeeded"] == 2 and measured["calls_not_answered_200"] == 0
    assert measured["findings"]["calls"] > 0 and measured["summary"]["calls"] > 0
    assert measured["calls"] == measured["findings"]["calls"] + measured["summary"]["calls"]
    assert measured["span_s"] > 0 and measured["max_in_flight"] >= 1


def test_reexecution_cost_is_measured_on_two_documents(tmp_path: Path) -> None:
    figure = measure_reexecution_cost(tmp_path, 2)
    measured = figure.measured
    assert figure.name == "re-execution cost" and figure.value is not None
    # The first run failed in document_findings: the fault outlasted the step's one retry.
    assert measured["first_exit_code"] == 1 and len(measured["first_runs"]) == 1
    assert measured["answered_500_before"] >= 2 and measured["answered_before"] > 0
    (again,) = measured["reexecutions"]
    assert again["parent_run_id"] == measured["first_runs"][0]
    assert again["status"] == "SUCCESS"
    assert {"document_findings", "document_summary"} <= set(again["steps_succeeded"])
    assert measured["summary_requests_in_reexecution"] > 0
