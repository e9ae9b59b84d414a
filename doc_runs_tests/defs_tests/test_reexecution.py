"""A middle stage fails for a real reason; once the cause is fixed, re-execution from failure
runs only the failed stage and what follows it."""

from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

from doc_runs.core.store import DocumentStore
from doc_runs_tests.batches import document_pipeline_job, records, run_tags


def executed_steps(instance: DagsterInstance, run_id: str) -> set[str]:
    return {
        stat.step_key
        for stat in instance.get_run_step_stats(run_id)
        if stat.status is not None and stat.status.value == "SUCCESS"
    }


def test_reexecute_from_failure_skips_completed_stages(project, text_pdf) -> None:
    store = DocumentStore(project / "data" / "store")
    ids = [store.put_bytes(text_pdf), store.put_bytes(text_pdf.replace(b"quarterly", b"monthly"))]
    for document_id in ids:
        store.add_source_name(document_id, f"{document_id[:6]}.pdf")
    # The chunks stage cannot write its artifacts: a file sits where their folder belongs.
    blocker = project / "data" / "store" / "artifacts" / "document_chunks"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")

    with DagsterInstance.get() as instance:  # SQLite under the test's DAGSTER_HOME
        tags = run_tags(instance, project, ids)
        job = reconstructable(document_pipeline_job)
        with execute_job(job, instance=instance, tags=tags, raise_on_error=False) as failed:
            assert not failed.success
        assert executed_steps(instance, failed.run_id) == {"document", "document_text"}
        text_artifacts = sorted((project / "data" / "store" / "artifacts" / "document_text")
                                .rglob("*.json"))
        written = {p: p.stat().st_mtime_ns for p in text_artifacts}
        assert len(written) == 2

        blocker.unlink()
        options = ReexecutionOptions.from_failure(failed.run_id, instance)
        # execute_job drops the parent's tags (its batch) on re-execution; the UI keeps them.
        with execute_job(job, instance=instance, reexecution_options=options, tags=tags) as again:
            assert again.success
        assert executed_steps(instance, again.run_id) == {
            "document_chunks", "document_findings", "document_summary"}
        assert {p: p.stat().st_mtime_ns for p in text_artifacts} == written
        for document_id in ids:
            assert records(instance, document_id)["document_summary"]["status"] == "succeeded"
