"""corpus_report shows each field's normalized value, a column per configured field."""

from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.defs.report import LEDGER_COLUMNS, build_corpus_report
from doc_runs_tests.api_tests.records import succeed


def test_each_configured_field_has_a_column_with_the_normalized_values(tmp_path) -> None:
    import pandas as pd

    store = DocumentStore(tmp_path / "store")
    document_id = store.put_bytes(b"a quarterly report")
    with DocumentCatalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        succeed(store, catalog, document_id)
        report = build_corpus_report(catalog, [catalog.document(document_id)],
                                     pd.DataFrame([], columns=LEDGER_COLUMNS),
                                     fields=["title", "parties", "term"])

    row = report.iloc[0]
    assert row["field:title"] == "Quarterly report"
    assert row["field:parties"] == "Northwind; Contoso"
    assert row["summary"].startswith("Revenue rose")
    assert "field:term" in report.columns  # asked for, answered by no document
    assert report.columns.get_loc("field:title") < report.columns.get_loc("field:term")
