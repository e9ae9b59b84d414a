"""The corpus report asset alone, on a built asset context: what a day's report says and
writes, without a job around it (the job is test_pipeline's)."""

from __future__ import annotations

import csv
from pathlib import Path

from dagster import build_asset_context, instance_for_test

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.defs.assets import corpus_report
from doc_runs.defs.batches import register
from doc_runs.defs.resources import AgentResource, CatalogResource, DocumentStoreResource


def test_the_report_of_a_day_lists_its_documents_and_writes_both_csv_files(
        tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "store")
    ids = []
    for name, text in (("memo.txt", b"First memo."), ("minutes.md", b"# Minutes\n\nHeld.")):
        document_id = store.put_bytes(text, tenant="acme")
        store.add_source_name(document_id, name)
        ids.append(document_id)
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    with DocumentCatalog(url) as catalog:
        batch, _ = register(catalog, store, "batch-1", "acme", ids, "cli", day="2026-12-04")
    resources = {
        "document_store": DocumentStoreResource(root=str(tmp_path / "store"),
                                                reports_dir=str(tmp_path / "reports")),
        "catalog": CatalogResource(url=url),
        "agent": AgentResource(),
    }
    with instance_for_test() as instance, build_asset_context(
            partition_key=batch.day, resources=resources, instance=instance) as context:
        result = corpus_report(context)

    metadata = result.metadata or {}
    assert metadata["documents"] == 2
    assert metadata["by_status"].data == {"pending": 2}
    with open(metadata["csv_path"].path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["document_id"] for row in rows) == sorted(ids)
    assert {row["status"] for row in rows} == {"pending"}
    assert Path(metadata["usage_ledger_path"].path).is_file()
    # Another day's report has none of them.
    with instance_for_test() as instance, build_asset_context(
            partition_key="2026-12-05", resources=resources, instance=instance) as context:
        assert (corpus_report(context).metadata or {})["documents"] == 0
