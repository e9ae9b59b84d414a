"""When a run's failure event becomes readable, the run already reads FAILURE and says whether
run retries will retry it: the daemon's run retries read the event, then the run, and a run
still STARTED at that moment was never retried (found by the chaos test). On both instance
files, with their own event log storages; and the storage's run handling is the instance's:
statuses, times and the retry's own run as before."""

from __future__ import annotations

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterRunStatus
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._core.test_utils import create_run_for_test


@pytest.fixture
def instance(shipped_instance):
    return shipped_instance


def watch_run_at_each_event(instance, monkeypatch) -> dict[str, tuple[DagsterRunStatus,
                                                                        str | None]]:
    """The run's status and retry tag as each run event becomes readable."""
    storage = instance.event_log_storage
    assert storage.handles_run_events_in_store_event
    seen: dict[str, tuple[DagsterRunStatus, str | None]] = {}
    # The class whose write makes an event readable: what a reader could see at that moment.
    dagster_class = next(c for c in type(storage).__mro__
                         if c.__module__.startswith(("dagster._core", "dagster_postgres"))
                         and "store_event" in vars(c))
    original = dagster_class.store_event

    def watched(self, event):
        if event.is_dagster_event and event.get_dagster_event().is_job_event:
            run = instance.get_run_by_id(event.run_id)
            seen[event.get_dagster_event().event_type_value] = (
                run.status, run.tags.get(WILL_RETRY_TAG))
        return original(self, event)

    monkeypatch.setattr(dagster_class, "store_event", watched)
    return seen


def test_a_failed_runs_status_and_retry_tag_are_written_before_its_event(
        instance, monkeypatch) -> None:
    seen = watch_run_at_each_event(instance, monkeypatch)
    run = create_run_for_test(instance, job_name="document_pipeline",
                              tags={"dagster/retry_strategy": "FROM_FAILURE"})
    instance.report_run_failed(run, "its process is gone (test)")

    failure = DagsterEventType.RUN_FAILURE.value
    assert seen[failure] == (DagsterRunStatus.FAILURE, "true")
    after = instance.get_run_by_id(run.run_id)
    assert after.status == DagsterRunStatus.FAILURE
    assert after.tags[WILL_RETRY_TAG] == "true"
    stats = instance.get_run_stats(run.run_id)
    assert stats.end_time is not None
    (event,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert "its process is gone" in event.dagster_event.message


def test_a_starting_event_is_stored_before_the_run_reads_starting(instance, monkeypatch) -> None:
    """Killed between the two, a run reading STARTING with no STARTING event has no launch
    time: Dagster's run monitoring then fails on it at every check and never times it out
    (the chaos test met it). In Dagster's own order the event comes first."""
    seen = watch_run_at_each_event(instance, monkeypatch)
    run = create_run_for_test(instance, job_name="document_pipeline")
    # What the instance stores as it launches a run.
    instance.report_dagster_event(DagsterEvent(
        event_type_value=DagsterEventType.RUN_STARTING.value, job_name=run.job_name),
        run_id=run.run_id)
    assert seen[DagsterEventType.RUN_STARTING.value][0] == DagsterRunStatus.NOT_STARTED
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTING
    assert instance.get_run_stats(run.run_id).launch_time is not None


def test_run_statuses_move_as_before(instance) -> None:
    run = create_run_for_test(instance, job_name="document_pipeline")
    instance.report_engine_event("noise", run)  # not a run event: nothing to update
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.NOT_STARTED
    instance.report_run_canceling(run)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
    instance.report_run_canceled(run)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    assert instance.get_run_stats(run.run_id).end_time is not None
