"""What the Dagster UI shows of a run's documents besides counts: a table of them on every
stage (names, ids, outcomes; the summary's first sentence last), a lone document's summary and
findings, and what a run covers in words."""

from dagster import AssetKey, instance_for_test

from doc_runs.core.store import DocumentStore
from doc_runs.defs.outcome_view import MAX_TEXT, describe_named
from doc_runs.defs.tags import BATCH_TAG, DESCRIPTION_TAG
from doc_runs_tests.batches import (
    add_documents,
    catalog_of,
    execute,
    load_defs,
    run_tags,
    table_of,
)
from doc_runs_tests.helpers import evaluate

STAGES = ("document", "document_text", "document_chunks", "document_findings",
          "document_summary")


def metadata_of(result, stage: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(stage)
    return {k: v.value for k, v in materialization.metadata.items()}


def test_every_stage_shows_a_table_of_the_batchs_documents(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        (good, bad), tags = add_documents(instance, project, {
            "quarterly report.pdf": text_pdf, "broken.pdf": b"%PDF-1.7 truncated"})
        result = execute(defs, instance, tags)
        assert result.success
        for stage in STAGES:
            rows = table_of(result, stage)
            assert list(rows) == [good, bad], stage
            assert rows[good]["name"] == "quarterly report.pdf", stage
            assert rows[bad]["name"] == "broken.pdf", stage
            assert rows[bad]["status"] == ("succeeded" if stage == "document"
                                           else "quarantined"), stage
            shown = metadata_of(result, stage)
            assert shown["batch"] == tags[BATCH_TAG] and shown["document_count"] == 2
        summary = table_of(result, "document_summary")
        assert summary[good]["summary"].startswith("The quarterly report")
        assert summary[bad]["summary"] == "" and summary[bad]["reason"] == "corrupt"
        assert table_of(result, "document_text")[good]["pages"] == 2
        # A batch of two has no single summary to show: the table is the view.
        assert "summary" not in metadata_of(result, "document_summary")
        (check,) = result.get_asset_check_evaluations()
        assert not check.passed and "broken.pdf (corrupt)" in check.description


def test_a_run_of_one_document_also_shows_its_summary_and_findings(project, text_pdf) -> None:
    defs = load_defs()
    with instance_for_test() as instance:
        _, tags = add_documents(instance, project, {"quarterly report.pdf": text_pdf})
        result = execute(defs, instance, tags)
        summary = metadata_of(result, "document_summary")["summary"]
        assert "Revenue rose by ten percent" in summary and "`[c" in summary
        findings = metadata_of(result, "document_findings")["findings"]
        assert findings.startswith("| field | type | value | citations |")
        assert "| title | text |" in findings


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
        assert described == ["alpha.pdf, beta.txt (2 documents)",
                             "gamma.md, delta.txt (2 documents)"]
        with catalog_of(instance) as catalog:
            keys = [k for r in result.run_requests
                    for k in catalog.batch(r.tags[BATCH_TAG]).documents]
    store = DocumentStore(project / "data" / "store")
    assert describe_named([(k, store.source_names(k)) for k in keys]) == (
        "alpha.pdf, beta.txt, gamma.md and 1 more (4 documents)")


def test_a_second_run_of_the_same_documents_sends_nothing_by_every_figure(
        project, text_pdf) -> None:
    from doc_runs.cli.process import run_usage

    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        (document_id,), tags = add_documents(instance, project, {"q.pdf": text_pdf})
        first = execute(defs, instance, tags)
        second = execute(defs, instance, run_tags(instance, project, [document_id]))
        report = defs.resolve_job_def("corpus_report_job").execute_in_process(
            instance=instance, partition_key=tags["dagster/partition"])

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
