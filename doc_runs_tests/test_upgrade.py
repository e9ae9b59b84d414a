"""`doc-runs upgrade` on a home the previous release made (a partition per document), on both
storages: every document keeps its names, owner and state (succeeded, quarantined, failed,
pending), each can be re-run, the nightly schedule takes the unfinished ones, a run of the old
design is refused for re-execution with what to do instead, and new work goes on."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from doc_runs.core.store import DocumentStore
from doc_runs_tests.batches import catalog_of
from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs
from doc_runs_tests.live import running_in, wait_for_none
from doc_runs_tests.previous_release import make_old_home, previous_release_tree


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        url = request.getfixturevalue("own_postgres_database_url")
        monkeypatch.setenv("DAGSTER_POSTGRES_URL",
                           url.replace("postgresql://", "postgresql+psycopg2://", 1))
    yield str(request.param)
    # The test's database is dropped next, connections and all. A CLI command's code server
    # ends once it has seen its last run worker out, reading that run from the database; one
    # still doing so when the database goes lives on (its cleanup thread died), so the drop
    # waits for them.
    left = wait_for_none(lambda: running_in(tmp_path, b"api grpc"), 60)
    assert not left, f"code servers still running a minute after the test: {left}"


def instance_file(root: Path, storage: str) -> str:
    """A release's own instance file for the storage."""
    name = "dagster.local.yaml" if storage == "sqlite" else "dagster.postgres.yaml"
    return (root / "deploy" / name).read_text()


def cli(project: Path, instance_file: str, *args: str):
    return doc_runs(project, *args, dagster_yaml=instance_file)


def status_of(project: Path, instance_file: str, document_id: str) -> dict:
    done = cli(project, instance_file, "status", document_id, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_upgrade_carries_every_document_with_its_state(project, tmp_path, text_pdf,
                                                       storage) -> None:
    previous = previous_release_tree(tmp_path / "previous")
    (project / "dagster_home" / "dagster.yaml").write_text(instance_file(previous, storage))
    old = make_old_home(project, previous, text_pdf)
    # The upgrade as the runbook says: this release's instance file, then `doc-runs upgrade`.
    instance_file_now = instance_file(PROJECT_ROOT, storage)

    # Before the upgrade the new release says what to do.
    before = cli(project, instance_file_now, "status")
    assert before.returncode == 0, before.stderr
    assert "run `doc-runs upgrade`" in before.stderr

    done = cli(project, instance_file_now, "upgrade", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["partitions"], summary["carried"], summary["missing_from_store"],
            summary["carried_without_bytes"]) == (4, 4, 0, 0)
    assert summary["states"] == {"succeeded": 1, "quarantined": 1, "failed": 1, "pending": 1}

    expected = {old.succeeded: ("succeeded", None), old.quarantined: ("quarantined", "corrupt"),
                old.failed: ("failed", "run_failed"), old.pending: ("pending", None)}
    for document_id, (state, reason) in expected.items():
        view = status_of(project, instance_file_now, document_id)
        assert (view["state"], view["reason"]) == (state, reason), view
        assert view["names"] == [old.names[document_id]]
        assert view["owner"] == "default"
    recorded = status_of(project, instance_file_now, old.succeeded)
    assert [s["stage"] for s in recorded["stages"]] == [
        "document", "document_text", "document_chunks", "document_findings",
        "document_summary"]
    assert status_of(project, instance_file_now, old.failed)["stages"][-1]["run_id"] == \
        old.failed_run
    assert "doc-runs upgrade" not in cli(project, instance_file_now, "status").stderr
    # Its failed run is of the old job: the way on is a re-run of the document.
    shown = cli(project, instance_file_now, "status", old.failed)
    assert f"doc-runs rerun {old.failed}" in shown.stdout, shown.stdout
    assert "doc-runs reexecute" not in shown.stdout
    shown = cli(project, instance_file_now, "status", old.failed_run)
    assert "doc-runs rerun DOCUMENT_ID" in shown.stdout, shown.stdout

    # Again: nothing new.
    again = cli(project, instance_file_now, "upgrade", "--json")
    assert again.returncode == 0, again.stderr
    repeated = json.loads(again.stdout)
    assert repeated["states"] == summary["states"]
    assert (repeated["carried"], repeated["already_in_catalog"]) == (0, 4)
    with DagsterInstance.get() as instance, catalog_of(instance) as catalog:
        assert all(len(catalog.batches_of(d)) == 1 for d in expected)

        # The nightly schedule takes the unfinished ones (failed and pending), no other,
        # the failed one in a run of its own.
        from doc_runs.defs.schedules import plan_unfinished_runs

        store = DocumentStore(project / "data" / "store")
        plan = plan_unfinished_runs(instance, catalog, store, 50)
        assert plan.batches == [("default", [old.failed]), ("default", [old.pending])]

    # The old failed run cannot be re-executed by today's job: refused, saying what to do.
    refused = cli(project, instance_file_now, "reexecute", old.failed_run)
    assert refused.returncode == 2
    assert "before runs had batches" in refused.stderr and "doc-runs rerun" in refused.stderr

    # Each can be run again; new work goes on beside the old.
    for document_id in (old.failed, old.quarantined):
        rerun = cli(project, instance_file_now, "rerun", document_id, "--wait")
        assert rerun.returncode == 0, rerun.stderr
    assert status_of(project, instance_file_now, old.failed)["state"] == "succeeded"
    assert status_of(project, instance_file_now, old.quarantined)["state"] == "quarantined"
    (project / "new-in").mkdir()
    shutil.copyfile(PROJECT_ROOT / "data" / "samples" / "meeting-notes.md",
                    project / "new-in" / "meeting-notes.md")
    fresh = cli(project, instance_file_now, "process", str(project / "new-in"), "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["status"] == "succeeded"
    with DagsterInstance.get() as instance:
        # The new design's partitions are days; the old keys stay where they were.
        assert old.pending in instance.get_dynamic_partitions("documents")


def test_the_asset_pages_still_answer_beside_the_old_materializations(
        project, tmp_path, text_pdf) -> None:
    """Materializations of the old design name document ids as partitions, which are not
    days: the UI's asset pages and checks still load (over Dagster's own GraphQL)."""
    previous = previous_release_tree(tmp_path / "previous")
    (project / "dagster_home" / "dagster.yaml").write_text(instance_file(previous, "sqlite"))
    make_old_home(project, previous, text_pdf)
    instance_file_now = instance_file(PROJECT_ROOT, "sqlite")
    assert cli(project, instance_file_now, "upgrade").returncode == 0
    (project / "new-in").mkdir()
    (project / "new-in" / "after.txt").write_text("Written after the upgrade. Two sentences.")
    assert cli(project, instance_file_now, "process", str(project / "new-in")).returncode == 0

    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from doc_runs_tests.ui_queries import ASSET_PAGE_QUERIES, asset_page_variables, ui_queries

    queries = ui_queries(ASSET_PAGE_QUERIES)
    target = ModuleTarget(module_name="doc_runs.definitions", attribute=None,
                          working_directory=str(PROJECT_ROOT), location_name="doc_runs")
    with DagsterInstance.get() as instance, \
            WorkspaceProcessContext(instance, target) as process_context:
        for name, query in queries.items():
            for asset in ("document", "document_summary"):
                answer = execute_dagster_graphql(process_context.create_request_context(),
                                                 query, asset_page_variables(asset))
                assert not answer.errors, (name, asset, answer.errors)


def test_a_home_of_today_needs_no_upgrade(project) -> None:
    done = doc_runs(project, "upgrade", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["partitions"] == 0
    assert "upgrade" not in doc_runs(project, "status").stderr
