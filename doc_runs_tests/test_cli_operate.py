"""`doc-runs status` and `doc-runs reexecute`: an operator sees why a run failed, fixes the
cause and re-executes the run from its failed step, from a terminal; what cannot be
re-executed is refused with a reason and a non-zero exit."""

from __future__ import annotations

import json
import uuid

import pytest

from doc_runs_tests.failed_runs import failed_cli_run
from doc_runs_tests.helpers import doc_runs


def test_a_failed_run_is_shown_then_reexecuted_from_failure(project, text_pdf,
                                                            monkeypatch) -> None:
    lines, blocker = failed_cli_run(project, text_pdf, monkeypatch)
    (run_id,) = {line["run_id"] for line in lines}

    shown = doc_runs(project, "status", run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}  FAILURE" in shown.stdout
    chunks_line = next(line for line in shown.stdout.splitlines()
                       if line.strip().startswith("document_chunks"))
    assert "FAILURE" in chunks_line and "document_chunks" in chunks_line
    assert f"doc-runs reexecute {run_id}" in shown.stdout
    view = json.loads(doc_runs(project, "status", run_id, "--json").stdout)
    assert {s["step"]: s["status"] for s in view["steps"]}["document_text"] == "SUCCESS"
    assert len(view["documents"]) == 2

    document = lines[0]["document_id"]
    per_document = json.loads(doc_runs(project, "status", document, "--json").stdout)
    assert per_document["document_id"] == document
    # No daemon was there: the command that waited for the run recorded its failure for
    # each document, and the run says why.
    assert (per_document["state"], per_document["reason"]) == ("failed", "run_failed")
    assert per_document["stages"][-1]["stage"] == "run_failure"
    assert per_document["last_run"]["run_id"] == run_id
    assert per_document["last_run"]["status"] == "FAILURE"
    assert per_document["last_run"]["failure"].startswith("document_chunks")
    shown_document = doc_runs(project, "status", document.upper())
    assert f"re-execute it: doc-runs reexecute {run_id}" in shown_document.stdout
    assert [s["stage"] for s in per_document["stages"]][:2] == ["document", "document_text"]
    assert all(s["run_id"] == run_id for s in per_document["stages"][:2])

    # Without a daemon to launch queued runs, the command runs the re-execution itself.
    blocked_still = doc_runs(project, "reexecute", run_id)
    assert blocked_still.returncode == 1, blocked_still.stderr
    assert "no daemon is launching queued runs here" in blocked_still.stderr

    blocker.unlink()  # the operator fixes the cause
    again = doc_runs(project, "reexecute", run_id, "--wait")
    assert again.returncode == 0, again.stderr
    child_id = again.stdout.strip()
    child = json.loads(doc_runs(project, "status", child_id, "--json").stdout)
    assert child["status"] == "SUCCESS"
    assert child["parent_run_id"] == run_id
    assert child["root_run_id"] == run_id
    # Completed stages did not run again.
    assert {s["step"] for s in child["steps"]} == {
        "document_chunks", "document_findings", "document_summary"}
    assert {d["state"] for d in child["documents"]} == {"succeeded"}

    # What may not be re-executed is refused, saying why.
    succeeded = doc_runs(project, "reexecute", child_id)
    assert succeeded.returncode == 2
    assert "succeeded: there is nothing to re-execute" in succeeded.stderr
    unknown = str(uuid.uuid4())
    missing = doc_runs(project, "reexecute", unknown)
    assert missing.returncode == 2 and f"no run {unknown}" in missing.stderr
    malformed = doc_runs(project, "reexecute", "yesterday's run")
    assert malformed.returncode == 2 and "is not a run id" in malformed.stderr
    assert doc_runs(project, "status", unknown).returncode == 1
    assert doc_runs(project, "status", "0" * 64).returncode == 1
    assert doc_runs(project, "status", "../etc").returncode == 2

    recent = doc_runs(project, "status")
    assert recent.returncode == 0
    assert run_id in recent.stdout and child_id in recent.stdout


def test_a_run_being_reexecuted_is_not_reexecuted_again() -> None:
    from dagster import DagsterRunStatus, instance_for_test
    from dagster._core.test_utils import create_run_for_test

    from doc_runs.defs.launch import NotReexecutable, reexecutable_run

    with instance_for_test() as instance:
        parent = create_run_for_test(instance, job_name="document_pipeline",
                                     status=DagsterRunStatus.FAILURE)
        retry = create_run_for_test(instance, job_name="document_pipeline",
                                    status=DagsterRunStatus.STARTED,
                                    parent_run_id=parent.run_id, root_run_id=parent.run_id,
                                    tags={"dagster/parent_run_id": parent.run_id})
        with pytest.raises(NotReexecutable,
                           match=f"re-executed already by run {retry.run_id} \\(STARTED"):
            reexecutable_run(instance, parent.run_id)


def test_setup_problems_are_said_not_raised(project, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", "/proc/no-such-home")
    for command in (["status"], ["reexecute", str(uuid.uuid4())]):
        done = doc_runs(project, *command)
        assert done.returncode == 2, done.stderr
        assert "cannot use DAGSTER_HOME" in done.stderr and "Traceback" not in done.stderr


def test_one_document_is_run_again_alone(project, text_pdf) -> None:
    """`doc-runs rerun`: a run of its own for the document, for its owner, shown among the
    document's runs; what cannot be run again is refused with a reason."""
    (project / "in").mkdir()
    (project / "in" / "a.pdf").write_bytes(text_pdf)
    (project / "in" / "b.md").write_text("# B\n\n- Budget approved.\n")
    done = doc_runs(project, "process", str(project / "in"), "--json", "--tenant", "acme")
    assert done.returncode == 0, done.stderr
    first, other = (json.loads(line) for line in done.stdout.splitlines())

    again = doc_runs(project, "rerun", first["document_id"], "--wait")
    assert again.returncode == 0, again.stderr
    run_id = again.stdout.strip()
    view = json.loads(doc_runs(project, "status", run_id, "--json").stdout)
    assert [d["document_id"] for d in view["documents"]] == [first["document_id"]]
    assert (view["status"], view["tenant"], view["trigger"]) == ("SUCCESS", "acme", "rerun")
    document = json.loads(doc_runs(project, "status", first["document_id"], "--json").stdout)
    assert [r["run_id"] for r in document["runs"]] == [run_id, first["run_id"]]
    assert {s["run_id"] for s in document["stages"]} == {run_id}
    # The other document of the first run was not touched.
    untouched = json.loads(doc_runs(project, "status", other["document_id"], "--json").stdout)
    assert {s["run_id"] for s in untouched["stages"]} == {first["run_id"]}
    # The first run's view says which of its documents a newer request has taken over.
    earlier = doc_runs(project, "status", first["run_id"])
    taken = [line for line in earlier.stdout.splitlines() if "taken over" in line]
    assert len(taken) == 1 and first["document_id"][:12] in taken[0], earlier.stdout
    shown = json.loads(doc_runs(project, "status", first["run_id"], "--json").stdout)
    assert {d["document_id"]: d["latest_batch"] for d in shown["documents"]} == {
        first["document_id"]: False, other["document_id"]: True}

    assert doc_runs(project, "rerun", "nonsense").returncode == 2
    missing = doc_runs(project, "rerun", "0" * 64)
    assert missing.returncode == 1 and "no document" in missing.stderr
    # Another tenant's document reads exactly as a missing one.
    theirs = doc_runs(project, "rerun", first["document_id"], "--tenant", "beta")
    nobodys = doc_runs(project, "rerun", "0" * 64, "--tenant", "beta")
    assert theirs.returncode == nobodys.returncode == 1 and "no document" in theirs.stderr
    assert theirs.stderr.replace(first["document_id"], "0" * 64) == nobodys.stderr
