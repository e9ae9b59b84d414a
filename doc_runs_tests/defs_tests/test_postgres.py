"""The pipeline on a Dagster instance whose storage is the real PostgreSQL, configured by the
same deploy/dagster.postgres.yaml a production deployment uses; the catalog in the same
database."""

import shutil
from pathlib import Path

import psycopg2
from dagster import AssetKey, DagsterInstance

from doc_runs.core.store import DocumentStore
from doc_runs_tests.batches import catalog_of, execute, load_defs, run_tags, table_of

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dagster.postgres.yaml"


def test_pipeline_state_persists_in_postgres(project, postgres_database_url, monkeypatch,
                                             text_pdf) -> None:
    url = postgres_database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
    shutil.copyfile(DEPLOY, project / "dagster_home" / "dagster.yaml")
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    ids = [store.put_bytes(text_pdf), store.put_bytes(b"%PDF-1.7 truncated")]
    store.add_source_name(ids[0], "good.pdf")
    store.add_source_name(ids[1], "broken.pdf")

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        tags = run_tags(instance, project, ids)
        result = execute(defs, instance, tags)
        assert result.success
        run_id = result.run_id
        assert {k: row["status"] for k, row in table_of(result, "document_summary").items()} \
            == {ids[0]: "succeeded", ids[1]: "quarantined"}

    # A new instance object (a new process would do the same) reads it all back.
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).is_success
        (record,) = instance.fetch_materializations(AssetKey("document_summary"), limit=10).records
        assert record.partition_key == tags["dagster/partition"]
        with catalog_of(instance) as catalog:
            assert catalog.is_postgres
            assert [catalog.document(i).state for i in ids] == ["succeeded", "quarantined"]

    with psycopg2.connect(postgres_database_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] == 1
        # The catalog's tables beside Dagster's, in the instance's own database.
        cursor.execute("SELECT state FROM doc_runs_documents WHERE document_id = %s",
                       (ids[1],))
        assert cursor.fetchone()[0] == "quarantined"
