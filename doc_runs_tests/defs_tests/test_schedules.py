"""The nightly schedule of unfinished documents, the report schedule and the coalescing report
sensor, evaluated against a real instance, a real store and real run records."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from doc_runs.core.store import DocumentStore
from doc_runs.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, range_tags
from doc_runs.defs.report import STAGES
from doc_runs.defs.resources import DocumentStoreResource
from doc_runs.defs.schedules import (
    PARTITION_TAG,
    ScheduleSettings,
    build_unfinished_documents_schedule,
    corpus_report_schedule,
    unfinished_documents_schedule,
)
from doc_runs.defs.sensors import report_refresh_sensor, scan_run_finishes

TICK = datetime(2025, 3, 4, 2, 0, tzinfo=UTC)


# -- states and runs -------------------------------------------------------------------------

def resources(project: Path) -> dict[str, object]:
    return {"document_store": DocumentStoreResource(
        root=str(project / "data" / "store"), reports_dir=str(project / "data" / "reports"))}


def make_document(store: DocumentStore, name: str, state: str, tenant: str = "acme") -> str:
    """A stored document in one of the states the report knows."""
    document_id = store.put_bytes(f"{name}: some text for {tenant}.".encode(), tenant)
    ok = {"status": "succeeded", "reason": None, "run_id": "r1"}
    if state == "incomplete":  # stopped after extraction, e.g. a transient failure
        store.write_record(document_id, "document", ok)
        store.write_record(document_id, "document_text", ok)
    elif state == "succeeded":
        for stage in STAGES:
            store.write_record(document_id, stage, ok)
    elif state == "quarantined":  # quarantined early: no summary record, still finished
        store.write_record(document_id, "document",
                           {"status": "quarantined", "reason": "empty_file", "run_id": "r1"})
    else:
        assert state == "pending"
    return document_id


def job_origin(job_name: str):  # type: ignore[no-untyped-def]
    # A queued run must name the code location it will be launched from.
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="doc_runs.definitions"), location_name="doc_runs")
    return RemoteRepositoryOrigin(location, "__repository__").get_job_origin(job_name)


def queued_run(instance: DagsterInstance, job_name: str, tags: dict[str, str] | None = None
               ) -> DagsterRun:
    return create_run_for_test(instance, job_name=job_name, status=DagsterRunStatus.QUEUED,
                               tags=tags, remote_job_origin=job_origin(job_name))


def report_event(instance: DagsterInstance, run: DagsterRun, event_type: DagsterEventType
                 ) -> None:
    """What the run process writes when the run starts or ends (it moves the run's status)."""
    instance.report_dagster_event(
        DagsterEvent(event_type_value=event_type.value, job_name=run.job_name), run.run_id)


def ended_run(instance: DagsterInstance, job_name: str,
              how: DagsterEventType = DagsterEventType.RUN_SUCCESS) -> DagsterRun:
    run = create_run_for_test(instance, job_name=job_name, status=DagsterRunStatus.STARTED)
    report_event(instance, run, how)
    return run


# -- the unfinished-documents schedule -------------------------------------------------------

def run_schedule(instance: DagsterInstance, project: Path, max_documents: int = 50,
                 tick: datetime = TICK) -> list[RunRequest] | SkipReason:
    schedule = build_unfinished_documents_schedule(
        ScheduleSettings(max_documents_per_run=max_documents))
    with build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                resources=resources(project)) as context:
        return schedule(context)  # type: ignore[return-value]


def batches_of(requests: list[RunRequest]) -> list[tuple[str, str, str | None, str | None]]:
    """(tenant, partition or range start, range end) per request, in order."""
    return [
        (r.tags["doc_runs/tenant"], r.partition_key or r.tags[RANGE_START_TAG],
         r.tags.get(RANGE_END_TAG), r.tags["doc_runs/documents"])
        for r in requests
    ]


def test_schedule_runs_exactly_the_unfinished_documents(project) -> None:
    store = DocumentStore(project / "data" / "store")
    docs = {name: make_document(store, name, state) for name, state in [
        ("pending", "pending"), ("incomplete", "incomplete"),
        ("succeeded", "succeeded"), ("quarantined", "quarantined")]}
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", list(docs.values()))
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        # pending and incomplete are neighbours: one range run of both.
        (request,) = requests
        assert request.tags[RANGE_START_TAG] == docs["pending"]
        assert request.tags[RANGE_END_TAG] == docs["incomplete"]
        assert request.tags["doc_runs/trigger"] == "schedule"
        assert request.tags["doc_runs/tenant"] == "acme"
        assert request.tags["doc_runs/documents"] == "2"


def test_schedule_groups_by_tenant_and_follows_the_real_key_order(project) -> None:
    store = DocumentStore(project / "data" / "store")
    a1 = make_document(store, "a1", "pending")
    a2 = make_document(store, "a2", "incomplete")
    a3 = make_document(store, "a3", "pending")
    a4 = make_document(store, "a4", "incomplete")
    a5 = make_document(store, "a5", "pending")
    a6 = make_document(store, "a6", "pending")
    b1 = make_document(store, "b1", "pending", tenant="beta")
    done = make_document(store, "done", "succeeded")
    bad = make_document(store, "bad", "quarantined")
    with instance_for_test() as instance:
        # a3 was registered before a1 and a2 (another initiator got there first): it sits
        # ahead of them, and a range from a3 to a1 covers exactly those two.
        order = [a3, a1, a2, done, a4, a5, b1, a6, bad]
        instance.add_dynamic_partitions("documents", order)
        requests = run_schedule(instance, project, max_documents=2)
        assert isinstance(requests, list)
        assert batches_of(requests) == [
            ("acme", a3, a1, "2"),
            ("acme", a2, None, "1"),  # the run of two is full; `done` ends the neighbours
            ("acme", a4, a5, "2"),
            ("beta", b1, None, "1"),  # another tenant's document breaks acme's range
            ("acme", a6, None, "1"),
        ]
        assert requests[1].partition_key == a2 and RANGE_START_TAG not in requests[1].tags
        # Every range covers only keys of its own tenant, in the instance's real order.
        keys = instance.get_dynamic_partitions("documents")
        for request in requests:
            first = request.partition_key or request.tags[RANGE_START_TAG]
            last = request.partition_key or request.tags[RANGE_END_TAG]
            covered = keys[keys.index(first):keys.index(last) + 1]
            assert len(covered) == int(request.tags["doc_runs/documents"]) <= 2
            assert {store.owner(k) for k in covered} == {request.tags["doc_runs/tenant"]}

        # A retried tick asks for the same runs; the next night's tick for new ones.
        again = run_schedule(instance, project, max_documents=2)
        assert isinstance(again, list)
        assert [r.run_key for r in again] == [r.run_key for r in requests]
        assert len({r.run_key for r in requests}) == len(requests)
        tomorrow = run_schedule(instance, project, max_documents=2,
                                tick=datetime(2025, 3, 5, 2, 0, tzinfo=UTC))
        assert isinstance(tomorrow, list)
        assert not {r.run_key for r in tomorrow} & {r.run_key for r in requests}


def test_schedule_leaves_documents_of_runs_in_progress_alone(project) -> None:
    store = DocumentStore(project / "data" / "store")
    ids = [make_document(store, f"d{i}", "pending") for i in range(6)]
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", ids)
        queued_run(instance, "document_pipeline", range_tags(ids[1], ids[2]))
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: ids[4]})
        # Ended runs do not count: their documents are still unfinished.
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.FAILURE, tags={PARTITION_TAG: ids[0]})
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        assert batches_of(requests) == [("acme", ids[0], None, "1"), ("acme", ids[3], None, "1"),
                                        ("acme", ids[5], None, "1")]


def test_schedule_skips_when_nothing_is_unfinished(project) -> None:
    store = DocumentStore(project / "data" / "store")
    ids = [make_document(store, "ok", "succeeded"), make_document(store, "q", "quarantined")]
    with instance_for_test() as instance:
        empty = run_schedule(instance, project)
        assert isinstance(empty, SkipReason) and "all 0 finished" in str(empty.skip_message)
        instance.add_dynamic_partitions("documents", ids)
        skipped = run_schedule(instance, project)
        assert isinstance(skipped, SkipReason)
        assert "all 2 finished" in str(skipped.skip_message)
        assert "1 quarantined" in str(skipped.skip_message)

        pending = make_document(store, "new", "pending")
        instance.add_dynamic_partitions("documents", [pending])
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: pending})
        busy = run_schedule(instance, project)
        assert isinstance(busy, SkipReason)
        assert "1 unfinished documents, none to start: 1 in runs" in str(busy.skip_message)


def test_scheduled_requests_resolve_against_the_code_location(project) -> None:
    """As the daemon evaluates the tick: partition keys checked against the instance's
    dynamic partitions, the schedule's own tags added."""
    from doc_runs.definitions import defs

    store = DocumentStore(project / "data" / "store")
    ids = [make_document(store, "x", "pending"), make_document(store, "y", "succeeded"),
           make_document(store, "z", "incomplete", tenant="beta")]
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", ids)
        with build_schedule_context(instance=instance, scheduled_execution_time=TICK,
                                    resources=resources(project),
                                    repository_def=defs.get_repository_def()) as context:
            data = unfinished_documents_schedule.evaluate_tick(context)
        assert data.run_requests is not None
        assert [(r.partition_key, r.tags["doc_runs/tenant"]) for r in data.run_requests] == [
            (ids[0], "acme"), (ids[2], "beta")]
        assert all(r.tags["dagster/schedule_name"] == "unfinished_documents_schedule"
                   for r in data.run_requests)


# -- the report schedule and the report sensor -----------------------------------------------

def test_report_schedule_skips_while_a_report_run_waits(project) -> None:
    with instance_for_test() as instance, build_schedule_context(
            instance=instance, scheduled_execution_time=TICK) as context:
        first = corpus_report_schedule(context)
        assert isinstance(first, RunRequest) and first.run_key == "report-schedule:20250304T020000Z"
        waiting = queued_run(instance, "corpus_report_job")
        skipped = corpus_report_schedule(context)
        assert isinstance(skipped, SkipReason) and waiting.run_id in str(skipped.skip_message)
        report_event(instance, waiting, DagsterEventType.RUN_START)
        assert isinstance(corpus_report_schedule(context), RunRequest)


def run_sensor(instance: DagsterInstance, cursor: str | None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor) as context:
        result = report_refresh_sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_report_sensor_coalesces_finished_document_runs(project) -> None:
    with instance_for_test() as instance:
        nothing = run_sensor(instance, None)
        assert nothing.run_requests == [] and nothing.skip_reason and nothing.cursor is None

        # Three document runs end, one of them failed and one canceled: one report run.
        ended_run(instance, "document_pipeline")
        ended_run(instance, "document_pipeline", DagsterEventType.RUN_FAILURE)
        ended_run(instance, "document_pipeline", DagsterEventType.RUN_CANCELED)
        first = run_sensor(instance, None)
        (request,) = first.run_requests
        assert first.cursor is not None
        assert request.run_key == f"report-refresh:{first.cursor}"
        assert request.tags["doc_runs/document_runs"] == "3"
        # A tick repeated before its cursor was kept asks for the very same run.
        assert [r.run_key for r in run_sensor(instance, None).run_requests] == [request.run_key]

        # Nothing ended since: nothing to do.
        idle = run_sensor(instance, first.cursor)
        assert idle.run_requests == [] and idle.cursor == first.cursor

        # Only the report run itself ended: no new report, and the cursor steps over it.
        ended_run(instance, "corpus_report_job")
        other = run_sensor(instance, first.cursor)
        assert other.run_requests == [] and int(other.cursor) > int(first.cursor)

        # A failed document run: the report must show it.
        ended_run(instance, "document_pipeline", DagsterEventType.RUN_FAILURE)
        failed = run_sensor(instance, other.cursor)
        (after_failure,) = failed.run_requests
        assert after_failure.run_key != request.run_key


def test_report_sensor_keeps_at_most_one_report_run_waiting(project) -> None:
    with instance_for_test() as instance:
        ended_run(instance, "document_pipeline")
        cursor = run_sensor(instance, None).cursor

        waiting = queued_run(instance, "corpus_report_job")
        ended_run(instance, "document_pipeline", DagsterEventType.RUN_FAILURE)
        blocked = run_sensor(instance, cursor)
        assert blocked.run_requests == [] and blocked.cursor == cursor
        assert waiting.run_id in str(blocked.skip_reason)

        # A run created but not yet queued waits too.
        not_started = create_run_for_test(instance, job_name="corpus_report_job")
        report_event(instance, waiting, DagsterEventType.RUN_START)
        assert run_sensor(instance, cursor).run_requests == []

        # Both have started: they may have read the store before the last document run
        # ended, so a new report run is requested.
        report_event(instance, not_started, DagsterEventType.RUN_START)
        (request,) = run_sensor(instance, cursor).run_requests
        assert request.tags["doc_runs/trigger"] == "document_runs_finished"


def test_scanning_a_long_history_in_pieces_misses_nothing(project) -> None:
    with instance_for_test() as instance:
        ended_run(instance, "corpus_report_job")
        start = scan_run_finishes(instance, None).upto
        assert start is not None
        for how in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_SUCCESS,
                    DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_SUCCESS):
            ended_run(instance, "document_pipeline", how)
        seen, cursor, ticks = 0, start, 0
        while True:
            scan = scan_run_finishes(instance, cursor, page=1, max_pages=1)
            ticks += 1
            if scan.upto == cursor:
                break
            seen += scan.document_runs
            cursor = scan.upto
        # Read a page at a time, some events are read twice (the failure kind is read to its
        # end while the success kind is not), never none.
        assert seen >= 4 and ticks > 2


def test_a_real_document_run_is_seen_by_the_sensor_and_the_schedule(project) -> None:
    import importlib

    import doc_runs.definitions

    # Reloaded: the definitions read the environment the `project` fixture set.
    defs = importlib.reload(doc_runs.definitions).defs
    store = DocumentStore(project / "data" / "store")
    document_id = store.put_bytes(b"Plain notes about the budget. It was approved.", "acme")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", [document_id])
        before = run_schedule(instance, project)
        assert isinstance(before, list) and before[0].partition_key == document_id
        assert run_sensor(instance, None).run_requests == []

        result = defs.resolve_job_def("document_pipeline").execute_in_process(
            instance=instance, partition_key=document_id, tags={"doc_runs/tenant": "acme"})
        assert result.success
        assert len(run_sensor(instance, None).run_requests) == 1
        after = run_schedule(instance, project)
        assert isinstance(after, SkipReason)
        assert "all 1 finished (1 succeeded)" in str(after.skip_message)


# -- wiring and settings ---------------------------------------------------------------------

def test_definitions_load_with_the_schedules_and_the_report_sensor(project) -> None:
    from doc_runs.definitions import defs

    Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {
        "unfinished_documents_schedule", "corpus_report_schedule"}
    sensors = {s.name for s in repository.sensor_defs}
    assert {"inbox_sensor", "report_refresh_sensor"} <= sensors
    assert not sensors & {"report_after_success", "report_after_failure"}  # replaced
    nightly = repository.get_schedule_def("unfinished_documents_schedule")
    assert nightly.job_name == "document_pipeline"
    assert nightly.cron_schedule == "0 2 * * *" and nightly.execution_timezone == "UTC"
    assert nightly.default_status.value == "RUNNING"
    hourly = repository.get_schedule_def("corpus_report_schedule")
    assert hourly.job_name == "corpus_report_job" and hourly.cron_schedule == "0 * * * *"
    sensor = repository.get_sensor_def("report_refresh_sensor")
    assert sensor.job_name == "corpus_report_job" and sensor.minimum_interval_seconds == 30


def test_settings_come_from_the_environment() -> None:
    settings = ScheduleSettings.from_env({
        "DOC_RUNS_NIGHTLY_CRON": "30 3 * * 1-5", "DOC_RUNS_REPORT_CRON": "*/15 * * * *",
        "DOC_RUNS_SCHEDULE_TZ": "Europe/Berlin", "DOC_RUNS_MAX_DOCUMENTS_PER_RUN": "7"})
    assert settings == ScheduleSettings("30 3 * * 1-5", "*/15 * * * *", "Europe/Berlin", 7)
    assert ScheduleSettings.from_env({}) == ScheduleSettings()


@pytest.mark.parametrize(("name", "value"), [
    ("DOC_RUNS_NIGHTLY_CRON", "every night"),
    ("DOC_RUNS_REPORT_CRON", "0 * * *"),
    ("DOC_RUNS_REPORT_CRON", "0 0 31 2 *"),
    ("DOC_RUNS_SCHEDULE_TZ", "Mars/Olympus"),
    ("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", "0"),
    ("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", "many"),
])
def test_a_bad_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        ScheduleSettings.from_env({name: value})


def test_a_bad_cron_string_fails_loading_the_code_location(project) -> None:
    env = {**os.environ, "DOC_RUNS_NIGHTLY_CRON": "0 25 * * *"}
    loaded = subprocess.run([sys.executable, "-c", "import doc_runs.definitions"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode != 0
    assert "DOC_RUNS_NIGHTLY_CRON='0 25 * * *' is not a valid cron string" in loaded.stderr
