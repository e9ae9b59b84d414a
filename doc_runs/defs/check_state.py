"""Asset check state kept between questions, so that the UI's check pages cost what happened
since they were last opened, not everything ever evaluated.

Dagster's open-source event log storages work out a check's state per partition from scratch
on every question (the asset page's Checks tab, the check's partitions): a SQL pass over every
evaluation of the check and every materialization of its asset, then a subset union per
partition in Python. With a check evaluated by every document run that is a cost growing with
every run ever made. Dagster's storage interface has the hook for a stored state
(`get_checkpointed_asset_check_state`; Dagster+ fills it): this mixin keeps the state in the
instance's key-value store after each question, and reads only the partitions that changed
since (those with a new or planned materialization of the asset, or a new check event), so
the next question costs what was added meanwhile. What it answers is what the stock storage
answers (checked by doc_runs_tests/defs_tests/test_check_state.py against it).

Built on internal classes of the pinned Dagster release (see pyproject.toml), like the
batching SQLite event log it is mixed into."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from dagster import (
    AssetCheckKey,
    DagsterEventType,
    EventLogEntry,
    PartitionsDefinition,
    deserialize_value,
    serialize_value,
)
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

if TYPE_CHECKING:
    from dagster._core.storage.asset_check_execution_record import AssetCheckPartitionInfo
    from dagster._core.storage.asset_check_state import AssetCheckState

_STATE_KEY = "doc_runs/asset_check_state/"
_ASSET_EVENTS = (DagsterEventType.ASSET_MATERIALIZATION.value,
                 DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value)
_CHECK_EVENTS = (DagsterEventType.ASSET_CHECK_EVALUATION.value,
                 DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value)
# Where more than this many events came in since the state was kept, working it out from
# scratch is as cheap: the stock query is used.
_MOST_NEW_EVENTS = 20_000


def _kv_key(key: AssetCheckKey) -> str:
    return _STATE_KEY + key.to_user_string()


class CheckpointedCheckState:
    """Mixed into a SqlEventLogStorage (before it in the bases)."""

    def get_checkpointed_asset_check_state(self, keys: Sequence[AssetCheckKey]
                                           ) -> Mapping[AssetCheckKey, AssetCheckState]:
        from dagster._core.storage.asset_check_state import AssetCheckState

        stored = self._kv().get_cursor_values({_kv_key(key) for key in keys})
        states = {}
        for key in keys:
            raw = stored.get(_kv_key(key))
            try:
                states[key] = _loads(raw) if raw else AssetCheckState.empty()
            except Exception:  # written by another release: worked out again
                states[key] = AssetCheckState.empty()
        return states

    def get_asset_check_state(self, keys: Sequence[tuple[AssetCheckKey,
                                                         PartitionsDefinition | None]]
                              ) -> Mapping[AssetCheckKey, AssetCheckState]:
        from dagster._core.definitions.partitions.context import partition_loading_context

        # Dynamic partitions are read from the instance while states are worked out.
        with partition_loading_context(dynamic_partitions_store=self._instance):  # type: ignore[attr-defined]
            return self._updated_check_states(keys)

    def _updated_check_states(self, keys: Sequence[tuple[AssetCheckKey,
                                                         PartitionsDefinition | None]]
                              ) -> Mapping[AssetCheckKey, AssetCheckState]:
        from dagster._core.storage.asset_check_state import (
            AssetCheckState,
            bulk_update_asset_check_state,
        )

        kept = self.get_checkpointed_asset_check_state([key for key, _ in keys])
        # A state kept for another partitions definition (the code changed) starts over.
        initial = {key: kept[key] if kept[key].compatible_with(partitions_def)
                   else AssetCheckState.empty() for key, partitions_def in keys}
        after = min((state.latest_storage_id for state in initial.values()), default=0)
        changed = self._partitions_changed_after([key for key, _ in keys], after) \
            if after else set()
        if changed is None:
            initial = {key: AssetCheckState.empty() for key, _ in keys}
        elif changed:
            # Their latest records come again and stand on their own, as worked out from
            # scratch: nothing of what was kept about them may stay beside them.
            initial = {key: _without(initial[key], changed, key, partitions_def)
                       for key, partitions_def in keys}
        states = bulk_update_asset_check_state(self._instance, keys, initial)  # type: ignore[attr-defined]
        advanced = {_kv_key(key): _dumps(state) for key, state in states.items()
                    if state != initial[key]}
        if advanced:
            self._kv().set_cursor_values(advanced)
        return states

    def get_asset_check_partition_info(
        self,
        keys: Sequence[AssetCheckKey],
        after_storage_id: int | None = None,
        partition_keys: Sequence[str] | None = None,
    ) -> Sequence[AssetCheckPartitionInfo]:
        stock = super().get_asset_check_partition_info  # type: ignore[misc]
        if not after_storage_id or partition_keys is not None:
            return stock(keys, after_storage_id, partition_keys)
        changed = self._partitions_changed_after(keys, after_storage_id)
        if changed is None:
            return stock(keys, after_storage_id, partition_keys)
        if not changed:
            return []
        return stock(keys, after_storage_id, sorted(changed))

    def get_latest_asset_check_execution_by_key(
        self,
        check_keys: Sequence[AssetCheckKey],
        partition_filter: Any = None,
    ) -> Mapping[AssetCheckKey, Any]:
        """The stock answer, found from the newest execution down instead of by grouping every
        execution of each check (the asset page's Checks tab asks it on every visit)."""
        if partition_filter is not None:
            return super().get_latest_asset_check_execution_by_key(  # type: ignore[misc]
                check_keys, partition_filter)
        from dagster._core.storage.asset_check_execution_record import (
            AssetCheckExecutionRecord,
        )
        from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

        table = AssetCheckExecutionsTable
        columns = (table.c.id, table.c.asset_key, table.c.check_name, table.c.run_id,
                   table.c.execution_status, table.c.evaluation_event, table.c.create_timestamp,
                   table.c.partition)
        results = {}
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            for key in check_keys:
                newest = (table.select().with_only_columns(*columns)
                          .where(table.c.asset_key == key.asset_key.to_string())
                          .where(table.c.check_name == key.name)
                          .order_by(table.c.id.desc()).limit(1))
                if conn.dialect.name == "sqlite":
                    # SQLite would read every execution of the check by its index and sort
                    # them; read by row id, from the newest down, it stops at the first.
                    newest = sa.text(
                        f"SELECT {', '.join(c.name for c in columns)} FROM {table.name} "
                        "NOT INDEXED WHERE asset_key = :asset_key AND check_name = :check_name "
                        "ORDER BY id DESC LIMIT 1").bindparams(
                            asset_key=key.asset_key.to_string(), check_name=key.name
                        ).columns(*columns)  # typed as the table's (timestamps)
                row = conn.execute(newest).mappings().first()
                if row is not None:
                    results[key] = AssetCheckExecutionRecord.from_db_row(row, key=key)
        return results

    # -- what changed -------------------------------------------------------------------
    def _partitions_changed_after(self, keys: Sequence[AssetCheckKey], after: int
                                  ) -> set[str] | None:
        """The partitions of the keys' assets with a materialization, a planned one or a check
        event stored after `after`; None where that is too many to be worth narrowing to."""
        table = SqlEventLogStorageTable
        assets = sorted({key.asset_key.to_string() for key in keys})
        names = {(key.asset_key, key.name) for key in keys}
        changed: set[str] = set()
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            rows: list[Any] = []
            # One equality per (asset, event type): a range of the (asset_key, event type, id)
            # index each, where IN lists would read every event of the asset.
            for asset in assets:
                for event_type in _ASSET_EVENTS:
                    rows += conn.execute(
                        table.select().with_only_columns(table.c.partition)
                        .where(table.c.asset_key == asset)
                        .where(table.c.dagster_event_type == event_type)
                        .where(table.c.id > after)
                        .limit(_MOST_NEW_EVENTS + 1)).fetchall()
            if len(rows) > _MOST_NEW_EVENTS:
                return None
            changed.update(row[0] for row in rows if row[0] is not None)
            events = conn.execute(
                table.select().with_only_columns(table.c.event)
                .where(table.c.dagster_event_type.in_(_CHECK_EVENTS))
                .where(table.c.id > after)
                .limit(_MOST_NEW_EVENTS + 1)).fetchall()
        if len(events) > _MOST_NEW_EVENTS:
            return None
        for (raw,) in events:
            partitions = _check_event_partitions(raw, names)
            if partitions is None:
                return None
            changed |= partitions
        return changed

    def _kv(self) -> Any:
        return self._instance.run_storage  # type: ignore[attr-defined]


def _without(state: AssetCheckState, partitions: set[str], key: AssetCheckKey,
             partitions_def: PartitionsDefinition | None) -> AssetCheckState:
    """The state with nothing said about `partitions`."""
    from dagster._core.asset_graph_view.serializable_entity_subset import (
        SerializableEntitySubset,
    )
    from dagster._core.storage.asset_check_state import AssetCheckState

    if partitions_def is None:
        return AssetCheckState.empty()
    valid = sorted(p for p in partitions if partitions_def.has_partition_key(p))
    if not valid:
        return state
    gone = SerializableEntitySubset.from_coercible_value(
        key, partitions_def.subset_with_partition_keys(valid), partitions_def)
    in_progress = {run_id: subset.compute_difference(gone)
                   for run_id, subset in state.in_progress_runs.items()}
    return AssetCheckState(
        latest_storage_id=state.latest_storage_id,
        subsets={status: subset.compute_difference(gone)
                 for status, subset in state.subsets.items()},
        in_progress_runs={run_id: subset for run_id, subset in in_progress.items()
                          if not subset.is_empty})


def _dumps(state: AssetCheckState) -> str:
    # Dagster's serializer sorts mapping keys, and the statuses keying `subsets` do not sort.
    return json.dumps({
        "latest_storage_id": state.latest_storage_id,
        "subsets": {status.value: serialize_value(subset)
                    for status, subset in state.subsets.items()},
        "in_progress_runs": {run_id: serialize_value(subset)
                             for run_id, subset in state.in_progress_runs.items()},
    })


def _loads(raw: str) -> AssetCheckState:
    from dagster._core.asset_graph_view.serializable_entity_subset import (
        SerializableEntitySubset,
    )
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionResolvedStatus,
    )
    from dagster._core.storage.asset_check_state import AssetCheckState

    data = json.loads(raw)
    return AssetCheckState(
        latest_storage_id=int(data["latest_storage_id"]),
        subsets={AssetCheckExecutionResolvedStatus(status):
                 deserialize_value(subset, SerializableEntitySubset)
                 for status, subset in data["subsets"].items()},
        in_progress_runs={run_id: deserialize_value(subset, SerializableEntitySubset)
                          for run_id, subset in data["in_progress_runs"].items()},
    )


def _check_event_partitions(raw: str, names: set[tuple[Any, str]]) -> set[str] | None:
    """The partitions a stored check event (planned or evaluated) is about, where it is one of
    the checks asked about; None where that cannot be told (the stock query answers then)."""

    try:
        event = deserialize_value(raw, EventLogEntry).dagster_event
        if event is None:
            return set()
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.asset_check_evaluation_data
            if (data.asset_key, data.check_name) not in names:
                return set()
            return {data.partition} if data.partition is not None else set()
        planned = event.asset_check_planned_data
        if (planned.asset_key, planned.check_name) not in names:
            return set()
        if planned.partitions_subset is None:
            return set()
        return set(planned.partitions_subset.get_partition_keys())
    except Exception:
        return None
