"""The pipeline on a Dagster instance whose storage is the real PostgreSQL, configured by the
same deploy/dagster.postgres.yaml a production deployment uses."""

import shutil
from pathlib import Path

import psycopg2
from dagster import AssetKey, DagsterInstance

from doc_runs.core.store import DocumentStore
from doc_runs.defs.partitions import range_tags

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dagster.postgres.yaml"


def test_pipeline_state_persists_in_postgres(project, postgres_database_url, monkeypatch,
                                             text_pdf) -> None:
    from doc_runs.definitions import defs

    url = postgres_database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
    shutil.copyfile(DEPLOY, project / "dagster_home" / "dagster.yaml")
    store = DocumentStore(project / "data" / "store")
    ids = [store.put_bytes(text_pdf), store.put_bytes(b"%PDF-1.7 truncated")]
    store.add_source_name(ids[0], "good.pdf")
    store.add_source_name(ids[1], "broken.pdf")

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("documents", ids)
        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, tags=range_tags(ids[0], ids[-1])
        )
        assert result.success
        run_id = result.run_id

    # A new instance object (a new process would do the same) reads it all back.
    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).is_success
        assert set(instance.get_dynamic_partitions("documents")) == set(ids)
        records = instance.fetch_materializations(AssetKey("document_summary"), limit=10).records
        assert {r.partition_key: r.asset_materialization.metadata["status"].value
                for r in records} == {ids[0]: "succeeded", ids[1]: "quarantined"}

    with psycopg2.connect(postgres_database_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] == 1
