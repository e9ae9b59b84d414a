"""The production instance's event log: Dagster's PostgreSQL storage, with asset check states
kept between questions (doc_runs/defs/check_state.py), so that the UI's check pages cost what
happened since they were last opened, and a run's new status written before the event that
announces it (doc_runs/defs/run_status_first.py). Everything else is the stock storage's, row
for row; `deploy/dagster.postgres.yaml` selects it. Built on internal classes of the pinned
Dagster release (see pyproject.toml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from doc_runs.defs.check_state import CheckpointedCheckState
from doc_runs.defs.run_status_first import RunStatusBeforeItsEvent
from doc_runs.defs.run_worker_at_start import RunWorkerRecordedAtStart


class CheckpointedPostgresEventLogStorage(RunWorkerRecordedAtStart, RunStatusBeforeItsEvent,
                                          CheckpointedCheckState, PostgresEventLogStorage):
    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> CheckpointedPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
