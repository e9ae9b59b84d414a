"""The local default's event log: Dagster's run-sharded SQLite storage, made cheap per event.

Profiled on the 2-core machine (cProfile of one 50-document ranged run, in process): Dagster
spent 20 of 31 s writing 598 events, about 13 ms of CPU an event, because the stock storage
builds a SQLAlchemy engine, opens, commits and closes a SQLite connection for every event
(three times for an asset event: run shard, index shard, asset table). Two changes, both
inside Dagster's own storage interface:

- Engines and their connections are kept (the index shard and the most recent run shards),
  which alone takes an event from about 13 ms to 3.5 ms of CPU.
- `store_event_batch`, which Dagster calls for the materializations of a ranged step and the
  planned events of a new run once `DAGSTER_EVENT_BATCH_SIZE` is set, writes a batch in one
  transaction per shard (about 1.6 ms an event). Dagster's SQLite storage loops over
  `store_event` there; its PostgreSQL storage batches the same way.

What is stored is what the stock storage stores, row for row, so the UI, the daemon and
`dagster` commands read it as before; `deploy/dagster.local.yaml` selects it. It also keeps
asset check states between questions (doc_runs/defs/check_state.py), and writes a run's new
status before the event announcing it (doc_runs/defs/run_status_first.py). Built on
internal classes of the pinned Dagster release (see pyproject.toml)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import DagsterEventType, EventLogEntry, Field, StringSource
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from doc_runs.defs.check_state import CheckpointedCheckState
from doc_runs.defs.run_status_first import RunStatusBeforeItsEvent
from doc_runs.defs.run_worker_at_start import RunWorkerRecordedAtStart

# Batched in one transaction per shard; anything else goes through store_event.
_BATCHED = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
}
# A process holds at most this many run shards open (a run worker needs one, the webserver
# reads a few at a time); the index shard is always kept.
KEPT_RUN_SHARDS = 8
# Events per batch write: the most documents of a run times nothing less than one step.
EVENT_BATCH_SIZE = "1000"


class BatchingSqliteEventLogStorage(RunWorkerRecordedAtStart, RunStatusBeforeItsEvent,
                                    CheckpointedCheckState, SqliteEventLogStorage):
    def __init__(self, base_dir: str | None = None,
                 inst_data: ConfigurableClassData | None = None) -> None:
        # Before the parent's __init__, which may connect already.
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        if base_dir is None:
            # Where the stock storage keeps it under the default `storage` settings. The
            # storage is not told the instance's folder, only the environment is.
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError("BatchingSqliteEventLogStorage needs DAGSTER_HOME set, or "
                                 "base_dir in its dagster.yaml config")
            base_dir = os.path.join(home, "storage")
        # Dagster batches event writes only when this is set; every process that loads the
        # instance (CLI, webserver, daemon, code server, run worker) builds this storage.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool, pool_size=1, max_overflow=4,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        if shard not in self._initialized_dbs:
            self._initdb(engine, for_index_shard=shard == INDEX_SHARD_NAME)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for oldest in runs[:max(len(runs) - KEPT_RUN_SHARDS, 0)]:
            self._engines.pop(oldest).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:  # type: ignore[override]
        # One transaction at a time per process, as the stock storage does.
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # A new run's batch also holds its checks' planned events: those one by one.
        others = [event for event in events if event.dagster_event_type not in _BATCHED]
        events = [event for event in events if event.dagster_event_type in _BATCHED]
        for event in others:
            self.store_event(event)
        if not events:
            return
        by_run: dict[str, list[EventLogEntry]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        for run_id, run_events in by_run.items():
            with self.run_connection(run_id) as conn:
                conn.execute(self.prepare_insert_event_batch(run_events))
        # Mirrored into the index shard, as store_event does for asset events.
        with self.index_transaction() as conn:
            inserted = conn.execute(self.prepare_insert_event_batch(list(events))
                                    .returning(SqlEventLogStorageTable.c.id))
            event_ids = [int(row[0]) for row in inserted]
            self._store_asset_event_tags(conn, list(events), event_ids)
            # The asset table keeps the latest event of each kind per asset: writing only the
            # last of the batch for each leaves it as writing every one would.
            latest: dict[tuple[Any, Any], tuple[EventLogEntry, int]] = {}
            for event, event_id in zip(events, event_ids, strict=True):
                latest[(event.dagster_event.asset_key,  # type: ignore[union-attr]
                        event.dagster_event_type)] = (event, event_id)
            for event, event_id in sorted(latest.values(), key=lambda pair: pair[1]):
                self._store_asset_event(conn, event, event_id)

    def wipe(self) -> None:
        self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()
