"""A failed run's status (and whether run retries will retry it) is written before the event
that announces it, so that nobody reads the failure and then an older status; every other run
event keeps Dagster's order (event, then status).

Dagster's instance stores a run's status event first and updates the run (its status, then
the `dagster/will_retry` tag of a failed run) only after. The daemon's run retries read the
failure events after their cursor and then each run: a failure read in between finds the run
still STARTED, without the tag, is judged "not failed, nothing to retry", and the cursor moves
past it for good. Under load (the chaos test: run workers killed every few seconds) about one
failed run in ten was never retried that way; its documents stayed failed until the nightly
schedule. Dagster's storage interface has the switch for a storage that handles run events
itself (`handles_run_events_in_store_event`): this mixin does what the instance would have
done, in the other order. Built on internal parts of the pinned Dagster release (see
pyproject.toml), like the event log storages it is mixed into."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dagster import EventLogEntry


class RunStatusBeforeItsEvent:
    """Mixed into an event log storage, before Dagster's class in the bases."""

    @property
    def handles_run_events_in_store_event(self) -> bool:
        # Only with an instance to reach the run storage through; otherwise Dagster does it.
        return getattr(self, "_instance", None) is not None

    def store_event(self, event: EventLogEntry) -> None:
        self._update_run(event, failures=True)
        super().store_event(event)  # type: ignore[misc]
        self._update_run(event, failures=False)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for event in events:
            self._update_run(event, failures=True)
        super().store_event_batch(events)  # type: ignore[misc]
        for event in events:
            self._update_run(event, failures=False)

    def _update_run(self, event: EventLogEntry, failures: bool) -> None:
        """A failure's status goes first (run retries); every other run event's after the
        event, in Dagster's own order: a STARTING status written first and its event lost to
        a kill leaves a run whose launch time Dagster's run monitoring cannot find, so it
        fails on that run at every check and never times it out (the chaos test met it)."""
        from dagster._core.events import RunFailureReason
        from dagster._core.storage.tags import RUN_FAILURE_REASON_TAG, WILL_RETRY_TAG
        from dagster._daemon.auto_run_reexecution.auto_run_reexecution import (
            auto_reexecution_should_retry_run,
        )

        instance: Any = getattr(self, "_instance", None)
        if instance is None or not event.is_dagster_event or not event.run_id:
            return
        dagster_event = event.get_dagster_event()
        if not dagster_event.is_job_event or dagster_event.is_run_failure != failures:
            return
        instance.run_storage.handle_run_event(event.run_id, dagster_event,
                                              datetime.fromtimestamp(event.timestamp, UTC))
        if dagster_event.is_run_failure and instance.run_retries_enabled:
            run = instance.get_run_by_id(event.run_id)
            if run is not None:
                said = run.tags.get(RUN_FAILURE_REASON_TAG)
                reason = RunFailureReason(said) if said else None
                will = auto_reexecution_should_retry_run(instance, run, reason)
                instance.add_run_tags(event.run_id, {WILL_RETRY_TAG: str(will).lower()})
