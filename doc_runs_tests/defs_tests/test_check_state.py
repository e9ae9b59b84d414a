"""The check state our event log storages keep between questions answers what the stock
storage works out from scratch: after runs that pass and fail the check on several days, a run
that fails before its check, and questions asked between them. On both instance files."""

from __future__ import annotations

import uuid

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from doc_runs.core.store import DocumentStore
from doc_runs.defs.batches import register
from doc_runs.defs.partitions import PARTITION_TAG, days
from doc_runs_tests.batches import catalog_of, execute, load_defs

CHECK = AssetCheckKey(AssetKey("document_summary"), "document_succeeded")


@pytest.fixture
def instance(shipped_instance):
    return shipped_instance


def from_scratch(instance: DagsterInstance):
    from dagster._core.storage.asset_check_state import (
        AssetCheckState,
        bulk_update_asset_check_state,
    )

    return bulk_update_asset_check_state(instance, [(CHECK, days)],
                                         {CHECK: AssetCheckState.empty()})[CHECK]


def kept(instance: DagsterInstance):
    return instance.event_log_storage.get_asset_check_state([(CHECK, days)])[CHECK]


def test_the_kept_state_answers_what_the_stock_storage_works_out(project, instance,
                                                                 text_pdf) -> None:
    storage = instance.event_log_storage
    assert type(storage).__name__ in ("BatchingSqliteEventLogStorage",
                                      "CheckpointedPostgresEventLogStorage")
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")

    def run(day: str, files: dict[str, bytes], **kwargs):
        ids = []
        for name, data in files.items():
            document_id = store.put_bytes(data)
            store.add_source_name(document_id, name)
            ids.append(document_id)
        with catalog_of(instance) as catalog:
            _, tags = register(catalog, store, f"check-{uuid.uuid4().hex}", "default", ids,
                               "cli", day=day)
        return execute(defs, instance, {**tags, PARTITION_TAG: day}, **kwargs)

    stock_storage = next(base for base in type(storage).__mro__
                         if base.__module__.startswith(("dagster.", "dagster_postgres.")))

    def same() -> None:
        mine, stock = kept(instance), from_scratch(instance)
        assert mine == stock, (_shown(mine), _shown(stock))
        # The check's latest execution, as the Checks tab asks for it.
        assert storage.get_latest_asset_check_execution_by_key([CHECK]) == \
            stock_storage.get_latest_asset_check_execution_by_key(storage, [CHECK])

    same()  # nothing evaluated yet
    run("2026-12-01", {"good.pdf": text_pdf})
    same()
    run("2026-12-01", {"broken.pdf": b"%PDF-1.7 broken"})  # the day turns red
    run("2026-12-02", {"notes.md": b"# Notes\n\n- Fine.\n"})
    same()
    same()  # asked again with nothing new: the kept state, unchanged
    run("2026-12-02", {"other.md": b"# Other\n\n- Fine too.\n"})
    run("2026-12-01", {"later.md": b"# Later\n\n- The day turns green again.\n"})
    same()
    # A run that fails before its check: the check was planned, the run ended without it.
    blocker = store.root / "artifacts" / "document_chunks"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    aside = blocker.with_name("chunks-aside")
    if blocker.exists():
        blocker.rename(aside)
    blocker.write_text("in the way")
    failed = run("2026-12-03", {"stuck.md": b"# Stuck\n\n- It fails.\n"}, raise_on_error=False)
    assert not failed.success
    blocker.unlink()
    if aside.exists():
        aside.rename(blocker)
    same()
    # The state is kept where another process (the next webserver request) starts from it.
    key = f"doc_runs/asset_check_state/{CHECK.to_user_string()}"
    assert instance.run_storage.get_cursor_values({key})


def test_a_kept_state_of_another_shape_is_worked_out_again(project, instance) -> None:
    """A state kept by another release (unreadable) or for other partitions is ignored."""
    key = f"doc_runs/asset_check_state/{CHECK.to_user_string()}"
    instance.run_storage.set_cursor_values({key: '{"not": "a state"}'})
    assert kept(instance) == from_scratch(instance)


def _shown(state) -> dict:
    return {status.value: str(subset.value) for status, subset in state.subsets.items()}
