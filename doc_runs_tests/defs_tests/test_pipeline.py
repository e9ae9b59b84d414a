"""The whole Definitions object, run over batches of documents."""

import json

from dagster import AssetKey, DagsterEventType, instance_for_test
from dagster._core.storage.dagster_run import DagsterRunStatus

from doc_runs.defs.partitions import days
from doc_runs_tests.batches import (
    add_documents,
    catalog_of,
    execute,
    load_defs,
    records,
    run_tags,
    table_of,
)
from doc_runs_tests.documents import encrypt_pdf, make_image_only_pdf


def test_definitions_load_with_jobs_sensors_and_checks(project) -> None:
    defs = load_defs()
    assert defs.resolve_job_def("document_pipeline").partitions_def == days
    assert {s.name for s in defs.sensors} == {
        "inbox_sensor", "queue_sensor", "outcome_events_sensor", "report_refresh_sensor",
        "starting_runs_sensor",
    }
    assert {s.name for s in defs.schedules} == {
        "unfinished_documents_schedule", "corpus_report_schedule"
    }
    graph = defs.resolve_asset_graph()
    assert {c.name for c in graph.asset_check_keys} == {"document_succeeded"}


def test_a_batch_quarantines_bad_documents_and_finishes_the_rest(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        ids, tags = add_documents(instance, project, {
            "good.pdf": text_pdf,
            "locked.pdf": encrypt_pdf(text_pdf, "secret"),
            "scan.pdf": make_image_only_pdf(),
            "fake.pdf": b"not even a pdf file.\n",
            "empty.pdf": b"",
            "notes.md": b"# Notes\n\n- The budget was approved.\n- The audit is done.\n",
        })
        result = execute(defs, instance, tags)
        assert result.success
        final = {i: records(instance, i)["document_summary"] for i in ids}
        assert [(final[i]["status"], final[i]["reason"]) for i in ids] == [
            ("succeeded", None),
            ("quarantined", "encrypted"),
            ("quarantined", "no_text"),
            ("quarantined", "not_pdf"),
            ("quarantined", "empty_file"),
            ("succeeded", None),
        ]
        # One materialization per stage for the run, into the batch's day, with a row per
        # document carrying its own facts.
        (event,) = instance.fetch_materializations(
            records_filter=AssetKey("document_text"), limit=100).records
        assert event.partition_key == tags["dagster/partition"]
        text_rows = table_of(result, "document_text")
        assert list(text_rows) == ids
        assert text_rows[ids[0]]["pages"] == 2 and text_rows[ids[0]]["name"] == "good.pdf"
        assert text_rows[ids[1]]["reason"] == "encrypted"
        assert records(instance, ids[1])["document_text"]["attempt"] == 1
        summary_rows = table_of(result, "document_summary")
        assert summary_rows[ids[0]]["summary"].startswith("The quarterly report")
        assert summary_rows[ids[2]]["status"] == "quarantined"
        # The check of the batch: failed, naming each quarantined document with its reason,
        # tied to the materialization it judges.
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == "document_succeeded" and not check.passed
        assert check.partition == tags["dagster/partition"]
        assert check.description.startswith("4 of 6 documents quarantined: locked.pdf "
                                            "(encrypted), scan.pdf (no_text)")
        held = {r.data["document_id"]: r.data["reason"]
                for r in check.metadata["quarantined_documents"].value.records}
        assert held == {ids[1]: "encrypted", ids[2]: "no_text", ids[3]: "not_pdf",
                        ids[4]: "empty_file"}
        (summary,) = instance.fetch_materializations(AssetKey("document_summary"),
                                                     limit=10).records
        assert check.target_materialization_data.storage_id == summary.storage_id
        with catalog_of(instance) as catalog:
            states = {i: catalog.document(i).state for i in ids}
        assert list(states.values()) == ["succeeded", "quarantined", "quarantined",
                                         "quarantined", "quarantined", "succeeded"]


def test_a_batch_of_good_documents_passes_its_check(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        _, tags = add_documents(instance, project, {"good.pdf": text_pdf, "n.md": b"# A\n\nB."})
        (check,) = execute(defs, instance, tags).get_asset_check_evaluations()
        assert check.passed and check.metadata["succeeded"].value == 2


def test_rerun_writes_the_same_artifacts(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        (doc,), tags = add_documents(instance, project, {"a.pdf": text_pdf})
        assert execute(defs, instance, tags).success
        artifacts = sorted((project / "data" / "store" / "artifacts").rglob("*.json"))
        first = [p.read_bytes() for p in artifacts]
        assert execute(defs, instance, run_tags(instance, project, [doc])).success
        assert sorted((project / "data" / "store" / "artifacts").rglob("*.json")) == artifacts
        assert [p.read_bytes() for p in artifacts] == first
        (summary_path,) = [p for p in artifacts if "document_summary" in p.parts]
        assert json.loads(summary_path.read_bytes())["summary"]["sentences"]


def test_corpus_report_lists_every_document_of_the_day(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        ids, tags = add_documents(instance, project,
                                  {"a.pdf": text_pdf, "b.pdf": b"%PDF-1.4 junk"})
        execute(defs, instance, tags)
        day = tags["dagster/partition"]
        result = defs.resolve_job_def("corpus_report_job").execute_in_process(
            instance=instance, partition_key=day)
        assert result.success
        import pandas as pd

        report = pd.read_csv(project / "data" / "reports" / f"corpus_report-{day}.csv")
        # Newest first; what a reader needs first leads.
        assert list(report.columns[:7]) == ["source_name", "status", "reason", "detail",
                                            "pages", "chunks", "summary"]
        assert sorted(report["source_name"]) == ["a.pdf", "b.pdf"]
        report = report.sort_values("source_name").reset_index(drop=True)
        assert list(report["status"]) == ["succeeded", "quarantined"]
        assert list(report["reason"].fillna("")) == ["", "corrupt"]
        assert report.loc[0, "pages"] == 2 and report.loc[0, "chunks"] >= 1
        assert report.loc[0, "summary"].startswith("The quarterly report")
        assert report["document_text_s"].notna().all()
        meta = result.asset_materializations_for_node("corpus_report")[0].metadata
        preview = meta["preview"].value
        assert [c.strip() for c in preview.splitlines()[0].split("|")[1:-1]] == [
            "name", "status", "reason", "detail", "pages", "chunks", "summary", "document_id"]
        assert "nan" not in preview and "<NA>" not in preview
        assert all(i in preview for i in ids)  # the document id beside each name
        assert meta["by_reason"].value == {"corrupt": 1}


def test_a_bug_fails_the_step_without_retries(project, text_pdf, monkeypatch) -> None:
    import doc_runs.defs.assets as assets

    def broken_chunking(text, config):
        raise ValueError("a programming error, not a property of the document")

    monkeypatch.setattr(assets, "chunk_stage", broken_chunking)
    defs = load_defs()
    with instance_for_test() as instance:
        _, tags = add_documents(instance, project, {"a.pdf": text_pdf})
        result = execute(defs, instance, tags, raise_on_error=False)
        assert not result.success
        assert not instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        (failure,) = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
        assert "document_chunks failed on document" in str(
            failure.dagster_event.step_failure_data.user_failure_data.description
        )


def test_a_document_whose_stored_bytes_went_missing_is_quarantined_alone(project,
                                                                         text_pdf) -> None:
    """Bytes deleted from the store (a hand-cleaned folder, a partial restore) are not an
    I/O error worth retrying: the one document is quarantined saying so, its batch goes on."""
    from doc_runs.core.store import DocumentStore

    defs = load_defs()
    with instance_for_test() as instance:
        (good, lost), tags = add_documents(instance, project, {
            "good.pdf": text_pdf, "lost.md": b"# Lost\n\nThese bytes will be deleted."})
        DocumentStore(project / "data" / "store").blob_path(lost).unlink()
        result = execute(defs, instance, tags)
        assert result.success
        assert records(instance, good)["document_summary"]["status"] == "succeeded"
        gone = records(instance, lost)["document"]
        assert (gone["status"], gone["reason"]) == ("quarantined", "unreadable")
        assert "missing from the store" in gone["detail"]
        assert gone["attempt"] == 1  # not retried
        with catalog_of(instance) as catalog:
            assert catalog.document(lost).state == "quarantined"


def test_a_batch_naming_a_document_never_stored_fails_without_processing(project) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        missing = "f" * 64
        tags = run_tags(instance, project, [missing])
        result = execute(defs, instance, tags, raise_on_error=False)
        assert not result.success
        assert instance.get_run_by_id(result.run_id).status == DagsterRunStatus.FAILURE
        (failure,) = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
        assert "do not exist" in failure.dagster_event.step_failure_data.user_failure_data \
            .description
        assert records(instance, missing) == {}


def test_a_run_without_a_batch_is_refused_saying_how_to_start_one(project) -> None:
    """What an operator gets for "Materialize" on a day in the UI: no documents of its own."""
    defs = load_defs()
    with instance_for_test() as instance:
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, partition_key="2026-12-01", raise_on_error=False)
        assert not result.success
        assert not instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        (failure,) = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
        description = failure.dagster_event.step_failure_data.user_failure_data.description
        assert "names no batch" in description and "doc-runs rerun" in description
