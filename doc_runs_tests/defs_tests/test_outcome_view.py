"""What the Dagster UI shows of a document besides counts: its name at every stage, its
summary and findings, and what a run covers in words."""

from dagster import AssetKey, instance_for_test

from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import DESCRIPTION_TAG, MAX_TEXT, describe_documents
from doc_runs.defs.partitions import range_tags
from doc_runs_tests.defs_tests.test_pipeline import add_documents, load_defs
from doc_runs_tests.defs_tests.test_sensors import evaluate


def metadata_of(instance, stage: str) -> dict[str, dict]:
    records = instance.fetch_materializations(records_filter=AssetKey(stage), limit=100).records
    return {r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for r in records}


def test_names_summary_and_findings_are_in_the_metadata(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        good, bad = add_documents(instance, project, {"quarterly report.pdf": text_pdf,
                                                     "broken.pdf": b"%PDF-1.7 truncated"})
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, tags=range_tags(good, bad))
        assert result.success
        for stage in ("document", "document_text", "document_chunks", "document_findings",
                      "document_summary"):
            shown = metadata_of(instance, stage)
            assert shown[good]["source_name"] == "quarterly report.pdf", stage
            assert shown[bad]["source_name"] == "broken.pdf", stage
        summary = metadata_of(instance, "document_summary")[good]["summary"]
        assert "Revenue rose by ten percent" in summary and "`[c" in summary
        assert "summary" not in metadata_of(instance, "document_summary")[bad]
        findings = metadata_of(instance, "document_findings")[good]["findings"]
        assert findings.startswith("| field | type | value | citations |")
        assert "| title | text |" in findings
        (quarantined,) = [c for c in result.get_asset_check_evaluations() if not c.passed]
        assert quarantined.partition == bad
        assert quarantined.metadata["source_name"].value == "broken.pdf"


def test_a_long_summary_is_cut_with_a_note_where_the_whole_lives(project) -> None:
    from doc_runs.core.outcomes import Outcome
    from doc_runs.core.stages import DocumentSummary
    from doc_runs.core.summarize import Summary, SummarySentence
    from doc_runs.defs.outcome_view import outcome_metadata

    store = DocumentStore(project / "data" / "store")
    sentence = "A sentence that goes on. " * 40
    output = DocumentSummary(document_id="a" * 64, outcome=Outcome.succeeded(), summary=Summary(
        method="extractive", text=sentence * 10, sentences=[
            SummarySentence(text=sentence, start=0, end=len(sentence), chunk_id=f"c{i}")
            for i in range(10)]))
    shown = outcome_metadata(store, "document_summary", output)["summary"].value
    assert len(shown) < MAX_TEXT + 400 and "the whole summary is in" in shown


def test_runs_say_what_they_cover(project, text_pdf) -> None:
    inbox = project / "data" / "inbox"
    for name in ("alpha.pdf", "beta.txt", "gamma.md", "delta.txt"):
        (inbox / name).write_bytes(text_pdf if name.endswith(".pdf") else
                                   f"Notes of {name}. Two sentences.".encode())
    with instance_for_test() as instance:
        result = evaluate(instance, project)
    described = [r.tags[DESCRIPTION_TAG] for r in result.run_requests]
    # In the order they arrived.
    assert described == ["alpha.pdf, beta.txt (2 documents)", "gamma.md, delta.txt (2 documents)"]
    store = DocumentStore(project / "data" / "store")
    keys = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    assert describe_documents(store, keys) == (
        "alpha.pdf, beta.txt, gamma.md and 1 more (4 documents)")


def test_a_second_run_of_the_same_documents_sends_nothing_by_every_figure(
        project, text_pdf) -> None:
    from doc_runs.cli import run_usage

    defs = load_defs()
    job = defs.resolve_job_def("document_pipeline")
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        (document_id,) = add_documents(instance, project, {"q.pdf": text_pdf})
        first = job.execute_in_process(instance=instance, partition_key=document_id)
        second = job.execute_in_process(instance=instance, partition_key=document_id)
        report = defs.resolve_job_def("corpus_report_job").execute_in_process(instance=instance)

        def findings_usage(run_id: str) -> dict:
            (record,) = [r for r in instance.fetch_materializations(
                records_filter=AssetKey("document_findings"), limit=10).records
                if r.run_id == run_id]
            return {k: v.value for k, v in record.asset_materialization.metadata.items()}

        assert findings_usage(first.run_id)["tokens_in"] > 0
        again = findings_usage(second.run_id)
        assert (again["tokens_in"], again["tokens_out"], again["cost_usd"]) == (0, 0, 0)
        assert again["cached_model_calls"] == again["model_calls"] > 0
        cli = run_usage(store, document_id, second.run_id)
        assert (cli["tokens_in"], cli["tokens_out"], cli["cost_usd"]) == (0, 0, 0)
        rows = [r for r in store.read_ledger(document_id) if r["run_id"] == second.run_id]
        assert rows and all(r["tokens_in"] == r["tokens_out"] == 0 for r in rows)
        by_run = report.asset_materializations_for_node("corpus_report")[0] \
            .metadata["usage_by_run"].value
        assert list(by_run) == [second.run_id, first.run_id]  # the latest first
        assert by_run[second.run_id]["tokens_in"] == 0 < by_run[first.run_id]["tokens_in"]
