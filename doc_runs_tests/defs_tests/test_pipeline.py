"""The whole Definitions object, run over single documents and ranges of them."""

import json

from dagster import AssetKey, DagsterEventType, DagsterInstance, instance_for_test
from dagster._core.storage.dagster_run import DagsterRunStatus

from doc_runs.core.store import DocumentStore
from doc_runs.defs.partitions import contiguous_batches, range_tags
from doc_runs_tests.documents import encrypt_pdf, make_image_only_pdf


def load_defs():
    # Imported inside the test: definitions read the environment the `project` fixture set.
    import importlib

    import doc_runs.definitions

    return importlib.reload(doc_runs.definitions).defs


def add_documents(instance: DagsterInstance, project, files: dict[str, bytes]) -> list[str]:
    store = DocumentStore(project / "data" / "store")
    ids = []
    for name, data in files.items():
        document_id = store.put_bytes(data)
        store.add_source_name(document_id, name)
        ids.append(document_id)
    instance.add_dynamic_partitions("documents", ids)
    return ids


def test_definitions_load_with_jobs_sensors_and_checks(project) -> None:
    defs = load_defs()
    assert defs.resolve_job_def("document_pipeline").partitions_def.name == "documents"
    assert {s.name for s in defs.sensors} == {
        "inbox_sensor", "queue_sensor", "outcome_events_sensor", "report_refresh_sensor"
    }
    assert {s.name for s in defs.schedules} == {
        "unfinished_documents_schedule", "corpus_report_schedule"
    }
    graph = defs.resolve_asset_graph()
    assert {c.name for c in graph.asset_check_keys} == {"document_succeeded"}


def test_ranged_run_quarantines_bad_documents_and_finishes_the_rest(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        ids = add_documents(instance, project, {
            "good.pdf": text_pdf,
            "locked.pdf": encrypt_pdf(text_pdf, "secret"),
            "scan.pdf": make_image_only_pdf(),
            "fake.pdf": b"not even a pdf file.\n",
            "empty.pdf": b"",
            "notes.md": b"# Notes\n\n- The budget was approved.\n- The audit is done.\n",
        })
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, tags=range_tags(ids[0], ids[-1])
        )
        assert result.success
        store = DocumentStore(project / "data" / "store")
        final = {i: store.read_records(i)["document_summary"] for i in ids}
        assert [(final[i]["status"], final[i]["reason"]) for i in ids] == [
            ("succeeded", None),
            ("quarantined", "encrypted"),
            ("quarantined", "no_text"),
            ("quarantined", "not_pdf"),
            ("quarantined", "empty_file"),
            ("succeeded", None),
        ]
        # One materialization per document and stage, each with its own facts.
        events = instance.fetch_materializations(
            records_filter=AssetKey("document_text"), limit=100
        ).records
        by_key = {e.partition_key: e.asset_materialization.metadata for e in events}
        assert set(by_key) == set(ids)
        assert by_key[ids[0]]["pages"].value == 2
        assert by_key[ids[1]]["reason"].value == "encrypted"
        assert by_key[ids[1]]["attempt"].value == 1
        # The check per document: failed for each quarantined one with its reason, tied to
        # the materialization it judges.
        per_document = {c.partition: c for c in result.get_asset_check_evaluations()
                        if c.check_name == "document_succeeded"}
        assert {k: c.passed for k, c in per_document.items()} == {
            ids[0]: True, ids[1]: False, ids[2]: False, ids[3]: False, ids[4]: False,
            ids[5]: True}
        assert {k: c.metadata["reason"].value for k, c in per_document.items()
                if not c.passed} == {ids[1]: "encrypted", ids[2]: "no_text", ids[3]: "not_pdf",
                                     ids[4]: "empty_file"}
        assert per_document[ids[1]].metadata["source_name"].value == "locked.pdf"
        summaries = {r.partition_key: r.storage_id for r in instance.fetch_materializations(
            AssetKey("document_summary"), limit=100).records}
        assert {k: c.target_materialization_data.storage_id
                for k, c in per_document.items()} == summaries


def test_rerun_writes_the_same_artifacts(project, text_pdf) -> None:
    defs = load_defs()
    job = defs.resolve_job_def("document_pipeline")
    with instance_for_test() as instance:
        (doc,) = add_documents(instance, project, {"a.pdf": text_pdf})
        assert job.execute_in_process(instance=instance, partition_key=doc).success
        artifacts = sorted((project / "data" / "store" / "artifacts").rglob("*.json"))
        first = [p.read_bytes() for p in artifacts]
        assert job.execute_in_process(instance=instance, partition_key=doc).success
        assert sorted((project / "data" / "store" / "artifacts").rglob("*.json")) == artifacts
        assert [p.read_bytes() for p in artifacts] == first
        (summary_path,) = [p for p in artifacts if "document_summary" in p.parts]
        assert json.loads(summary_path.read_bytes())["summary"]["sentences"]


def test_corpus_report_lists_every_document(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        ids = add_documents(instance, project, {"a.pdf": text_pdf, "b.pdf": b"%PDF-1.4 junk"})
        defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, tags=range_tags(ids[0], ids[-1])
        )
        result = defs.resolve_job_def("corpus_report_job").execute_in_process(instance=instance)
        assert result.success
        import pandas as pd

        report = pd.read_csv(project / "data" / "reports" / "corpus_report.csv")
        # Newest first; what a reader needs first leads.
        assert list(report.columns[:7]) == ["source_name", "status", "reason", "detail",
                                            "pages", "chunks", "summary"]
        assert list(report["source_name"]) == ["b.pdf", "a.pdf"]
        assert list(report["status"]) == ["quarantined", "succeeded"]
        assert list(report["reason"].fillna("")) == ["corrupt", ""]
        assert report.loc[1, "pages"] == 2 and report.loc[1, "chunks"] >= 1
        assert report.loc[1, "summary"].startswith("The quarterly report")
        assert report["document_text_s"].notna().all()
        meta = result.asset_materializations_for_node("corpus_report")[0].metadata
        preview = meta["preview"].value
        assert [c.strip() for c in preview.splitlines()[0].split("|")[1:-1]] == [
            "name", "status", "reason", "detail", "pages", "chunks", "summary", "partition"]
        assert "nan" not in preview and "<NA>" not in preview
        assert all(i in preview for i in ids)  # the partition key beside each name
        assert meta["by_reason"].value == {"corrupt": 1}


def test_contiguous_batches_never_cover_other_documents() -> None:
    keys = ["a", "b", "c", "d", "e", "f"]
    assert contiguous_batches(keys, ["b", "c", "e", "f", "a"], 2) == [
        ["a", "b"], ["c"], ["e", "f"]
    ]


def test_a_bug_fails_the_step_without_retries(project, text_pdf, monkeypatch) -> None:
    import doc_runs.defs.assets as assets

    def broken_chunking(text, config):
        raise ValueError("a programming error, not a property of the document")

    monkeypatch.setattr(assets, "chunk_stage", broken_chunking)
    defs = load_defs()
    with instance_for_test() as instance:
        (doc,) = add_documents(instance, project, {"a.pdf": text_pdf})
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, partition_key=doc, raise_on_error=False
        )
        assert not result.success
        assert not instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        (failure,) = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
        assert "document_chunks failed on document" in str(
            failure.dagster_event.step_failure_data.user_failure_data.description
        )


def test_run_status_for_failed_documents_is_visible(project) -> None:
    # A partition whose bytes were never stored fails the run with a clear message.
    defs = load_defs()
    with instance_for_test() as instance:
        missing = "f" * 64
        instance.add_dynamic_partitions("documents", [missing])
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, partition_key=missing, raise_on_error=False
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.status == DagsterRunStatus.FAILURE
