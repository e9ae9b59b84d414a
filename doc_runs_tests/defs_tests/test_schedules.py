"""The nightly schedule of unfinished documents, the report schedule and the coalescing report
sensor, evaluated against a real instance, a real store and real run records."""

from __future__ import annotations

import os
import re
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

from doc_runs.core.catalog import Batch
from doc_runs.core.store import DocumentStore
from doc_runs.defs.partitions import PARTITION_TAG
from doc_runs.defs.report import STAGES
from doc_runs.defs.resources import CatalogResource, DocumentStoreResource
from doc_runs.defs.schedules import (
    build_corpus_report_schedule,
    build_unfinished_documents_schedule,
    plan_unfinished_runs,
)
from doc_runs.defs.sensors import report_refresh_sensor, scan_run_finishes
from doc_runs.defs.tags import (
    BATCH_TAG,
    DOCUMENT_RUNS_TAG,
    DOCUMENTS_TAG,
    EXTRA_FIELDS_TAG,
    TENANT_TAG,
    TRIGGER_TAG,
)
from doc_runs.settings import Settings, SettingsError
from doc_runs_tests.batches import LOAD_DEFINITIONS, add_batch, catalog_of, load_defs

DEFAULTS = Settings.from_sources({})
unfinished_documents_schedule = build_unfinished_documents_schedule(DEFAULTS)
corpus_report_schedule = build_corpus_report_schedule(DEFAULTS)

TICK = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
DAY = "2026-12-04"


# -- states and runs -------------------------------------------------------------------------

def resources(project: Path) -> dict[str, object]:
    return {"document_store": DocumentStoreResource(
        root=str(project / "data" / "store"), reports_dir=str(project / "data" / "reports")),
        "catalog": CatalogResource()}


def make_document(instance: DagsterInstance, project: Path, name: str, state: str,
                  tenant: str = "acme") -> tuple[str, Batch]:
    """A stored document in a batch of its own, in one of the states the report knows."""
    store = DocumentStore(project / "data" / "store")
    document_id = store.put_bytes(f"{name}: some text for {tenant}.".encode(), tenant)
    batch, _ = add_batch(instance, project, [document_id], tenant)
    ok = {"status": "succeeded", "reason": None, "run_id": "r1"}
    stages: dict[str, dict] = {}
    if state == "incomplete":  # stopped after extraction, e.g. a transient failure
        stages = {"document": ok, "document_text": ok}
    elif state == "succeeded":
        stages = dict.fromkeys(STAGES, ok)
    elif state == "quarantined":  # quarantined early: no summary record, still finished
        stages = {"document": {"status": "quarantined", "reason": "empty_file", "run_id": "r1"}}
    else:
        assert state == "pending"
    with catalog_of(instance) as catalog:
        for stage, record in stages.items():
            catalog.write_stage_records(batch, stage, {document_id: dict(record)})
        assert catalog.document(document_id).state == state
    return document_id, batch


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
              how: DagsterEventType = DagsterEventType.RUN_SUCCESS, day: str = DAY
              ) -> DagsterRun:
    run = create_run_for_test(instance, job_name=job_name, status=DagsterRunStatus.STARTED,
                              tags={PARTITION_TAG: day})
    report_event(instance, run, how)
    return run


# -- the unfinished-documents schedule -------------------------------------------------------

def run_schedule(instance: DagsterInstance, project: Path, max_documents: int = 50,
                 tick: datetime = TICK) -> list[RunRequest] | SkipReason:
    schedule = build_unfinished_documents_schedule(Settings.from_sources(
        {"DOC_RUNS_MAX_DOCUMENTS_PER_RUN": str(max_documents)}))
    with build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                resources=resources(project)) as context:
        return schedule(context)  # type: ignore[return-value]


def batches_of(instance: DagsterInstance, requests: list[RunRequest]
               ) -> list[tuple[str, list[str]]]:
    """(tenant, the batch's documents) per request, in order."""
    with catalog_of(instance) as catalog:
        return [(r.tags[TENANT_TAG], list(catalog.batch(r.tags[BATCH_TAG]).documents))
                for r in requests]


def test_schedule_runs_exactly_the_unfinished_documents(project) -> None:
    with instance_for_test() as instance:
        docs = {name: make_document(instance, project, name, state)[0]
                for name, state in [("pending", "pending"), ("incomplete", "incomplete"),
                                    ("succeeded", "succeeded"),
                                    ("quarantined", "quarantined")]}
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        (request,) = requests
        assert batches_of(instance, requests) == [("acme", [docs["pending"],
                                                            docs["incomplete"]])]
        assert request.tags[TRIGGER_TAG] == "schedule"
        assert request.tags[DOCUMENTS_TAG] == "2"
        assert request.partition_key == DAY  # the tick's day


def test_schedule_groups_by_tenant(project) -> None:
    with instance_for_test() as instance:
        a = [make_document(instance, project, f"a{i}", state)[0] for i, state in
             enumerate(["pending", "incomplete", "pending", "incomplete", "pending"])]
        b1, _ = make_document(instance, project, "b1", "pending", tenant="beta")
        make_document(instance, project, "done", "succeeded")
        make_document(instance, project, "bad", "quarantined")
        a6, _ = make_document(instance, project, "a6", "pending")
        requests = run_schedule(instance, project, max_documents=2)
        assert isinstance(requests, list)
        assert batches_of(instance, requests) == [
            ("acme", [a[0], a[1]]), ("acme", [a[2], a[3]]), ("acme", [a[4], a6]),
            ("beta", [b1])]
        store = DocumentStore(project / "data" / "store")
        for tenant, documents in batches_of(instance, requests):
            assert {store.owner(d) for d in documents} == {tenant}

        # A retried tick asks for the same runs; the next night's tick for new ones.
        again = run_schedule(instance, project, max_documents=2)
        assert isinstance(again, list)
        assert [r.run_key for r in again] == [r.run_key for r in requests]
        assert len({r.run_key for r in requests}) == len(requests)
        tomorrow = run_schedule(instance, project, max_documents=2,
                                tick=datetime(2026, 12, 5, 2, 0, tzinfo=UTC))
        assert isinstance(tomorrow, list)
        assert not {r.run_key for r in tomorrow} & {r.run_key for r in requests}


def test_schedule_leaves_documents_of_runs_in_progress_alone(project) -> None:
    with instance_for_test() as instance:
        made = [make_document(instance, project, f"d{i}", "pending") for i in range(5)]
        ids = [document_id for document_id, _ in made]
        queued_run(instance, "document_pipeline", {BATCH_TAG: made[1][1].batch_id})
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.STARTED,
                            tags={BATCH_TAG: made[3][1].batch_id})
        # Ended runs do not count: their documents are still unfinished.
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.FAILURE,
                            tags={BATCH_TAG: made[0][1].batch_id})
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        assert batches_of(instance, requests) == [("acme", [ids[0], ids[2], ids[4]])]


def test_a_document_whose_run_failed_runs_alone(project) -> None:
    """Whatever failed a run (a document that crashes its parser every time) must not fail
    the other documents' runs night after night: each failed document gets a run of its
    own, the others are batched as usual."""
    with instance_for_test() as instance:
        pending = [make_document(instance, project, f"p{i}", "pending")[0] for i in range(3)]
        failed = []
        for name in ("f1", "f2"):
            document_id, batch = make_document(instance, project, name, "pending")
            with catalog_of(instance) as catalog:
                assert catalog.record_run_failure(batch, "run-1", "worker crashed",
                                                  at=1.0) == [document_id]
                assert catalog.document(document_id).state == "failed"
            failed.append(document_id)
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        assert batches_of(instance, requests) == [
            ("acme", [failed[0]]), ("acme", [failed[1]]), ("acme", pending)]


def test_the_nightly_run_asks_for_the_fields_the_last_run_asked_for(project) -> None:
    """A document uploaded with fields of its own whose run failed keeps its fields when the
    schedule runs it again; documents asking for different fields share no run."""
    asked = '{"term": "how long the contract runs"}'
    with instance_for_test() as instance:
        plain, _ = make_document(instance, project, "plain", "incomplete")
        fielded, batch = make_document(instance, project, "fielded", "incomplete")
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.FAILURE,
                            tags={BATCH_TAG: batch.batch_id, EXTRA_FIELDS_TAG: asked})
        requests = run_schedule(instance, project)
        assert isinstance(requests, list)
        assert batches_of(instance, requests) == [("acme", [plain]), ("acme", [fielded])]
        assert EXTRA_FIELDS_TAG not in requests[0].tags
        assert requests[1].tags[EXTRA_FIELDS_TAG] == asked


def test_one_tick_takes_a_bounded_share_of_a_backlog(project) -> None:
    """A backlog larger than one tick takes: the oldest first, runs in progress not counted
    against the share, the rest at the next tick."""
    with instance_for_test() as instance:
        made = [make_document(instance, project, f"d{i}", "pending") for i in range(6)]
        ids = [document_id for document_id, _ in made]
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.STARTED,
                            tags={BATCH_TAG: made[0][1].batch_id})
        store = DocumentStore(project / "data" / "store")
        with catalog_of(instance) as catalog:
            plan = plan_unfinished_runs(instance, catalog, store, 2, max_per_tick=3)
            assert plan.busy == 1 and plan.more_left
            assert plan.batches == [("acme", ids[1:3]), ("acme", ids[3:4])]
            for _, batch in made[4:]:
                catalog.record_run_failure(batch, "run-1", "worker crashed", at=1.0)
            plan = plan_unfinished_runs(instance, catalog, store, 2, max_per_tick=10,
                                        max_alone=1)
            assert plan.more_left
            assert plan.batches == [("acme", [ids[4]]), ("acme", ids[1:4][:2]),
                                    ("acme", ids[3:4])]
            plan = plan_unfinished_runs(instance, catalog, store, 5)
            assert not plan.more_left
            assert plan.batches == [("acme", [ids[4]]), ("acme", [ids[5]]),
                                    ("acme", ids[1:4])]


def test_schedule_skips_when_nothing_is_unfinished(project) -> None:
    with instance_for_test() as instance:
        empty = run_schedule(instance, project)
        assert isinstance(empty, SkipReason)
        assert "no unfinished documents" in str(empty.skip_message)
        make_document(instance, project, "ok", "succeeded")
        make_document(instance, project, "q", "quarantined")
        skipped = run_schedule(instance, project)
        assert isinstance(skipped, SkipReason)
        assert "no unfinished documents" in str(skipped.skip_message)

        _, batch = make_document(instance, project, "new", "pending")
        create_run_for_test(instance, job_name="document_pipeline",
                            status=DagsterRunStatus.STARTED, tags={BATCH_TAG: batch.batch_id})
        busy = run_schedule(instance, project)
        assert isinstance(busy, SkipReason)
        assert "1 unfinished documents, none to start: 1 in runs" in str(busy.skip_message)


def test_a_document_stored_but_never_batched_is_left_to_its_message(project) -> None:
    """An upload waiting on the queue is listed as pending, and the queue sensor runs it:
    the schedule does not start a second run for it."""
    store = DocumentStore(project / "data" / "store")
    document_id = store.put_bytes(b"An upload on its way. It waits on the queue.", "acme")
    with instance_for_test() as instance, catalog_of(instance) as catalog:
        catalog.note_stored(document_id, "acme", [])
        assert catalog.document(document_id).state == "pending"
        assert isinstance(run_schedule(instance, project), SkipReason)


def test_scheduled_requests_resolve_against_the_code_location(project) -> None:
    """As the daemon evaluates the tick: partition keys checked against the day partitions,
    the schedule's own tags added."""
    defs = load_defs()
    with instance_for_test() as instance:
        x, _ = make_document(instance, project, "x", "pending")
        make_document(instance, project, "y", "succeeded")
        z, _ = make_document(instance, project, "z", "incomplete", tenant="beta")
        with build_schedule_context(instance=instance, scheduled_execution_time=TICK,
                                    resources=resources(project),
                                    repository_def=defs.get_repository_def()) as context:
            data = unfinished_documents_schedule.evaluate_tick(context)
        assert data.run_requests is not None
        assert batches_of(instance, data.run_requests) == [("acme", [x]), ("beta", [z])]
        assert all(r.tags["dagster/schedule_name"] == "unfinished_documents_schedule"
                   for r in data.run_requests)


# -- the report schedule and the report sensor -----------------------------------------------

def test_report_schedule_skips_while_a_report_run_waits(project) -> None:
    with instance_for_test() as instance, build_schedule_context(
            instance=instance, scheduled_execution_time=TICK) as context:
        first = corpus_report_schedule(context)
        assert isinstance(first, RunRequest) and first.run_key == "report-schedule:20261204T020000Z"
        assert first.partition_key == DAY
        # A report run of another day waiting does not stand in for this day's.
        queued_run(instance, "corpus_report_job", {PARTITION_TAG: "2026-12-03"})
        assert isinstance(corpus_report_schedule(context), RunRequest)
        waiting = queued_run(instance, "corpus_report_job", {PARTITION_TAG: DAY})
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
        assert request.run_key == f"report-refresh:{DAY}:{first.cursor}"
        assert request.partition_key == DAY
        assert request.tags[DOCUMENT_RUNS_TAG] == "3"
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

        # Runs of two days: a report of each day.
        ended_run(instance, "document_pipeline", day="2026-12-05")
        ended_run(instance, "document_pipeline")
        two = run_sensor(instance, failed.cursor)
        assert sorted(r.partition_key for r in two.run_requests) == [DAY, "2026-12-05"]


def test_report_sensor_keeps_at_most_one_report_run_waiting(project) -> None:
    with instance_for_test() as instance:
        ended_run(instance, "document_pipeline")
        cursor = run_sensor(instance, None).cursor

        waiting = queued_run(instance, "corpus_report_job", {PARTITION_TAG: DAY})
        ended_run(instance, "document_pipeline", DagsterEventType.RUN_FAILURE)
        blocked = run_sensor(instance, cursor)
        assert blocked.run_requests == [] and blocked.cursor == cursor
        assert waiting.run_id in str(blocked.skip_reason)

        # A run created but not yet queued waits too.
        not_started = create_run_for_test(instance, job_name="corpus_report_job",
                                          tags={PARTITION_TAG: DAY})
        report_event(instance, waiting, DagsterEventType.RUN_START)
        assert run_sensor(instance, cursor).run_requests == []

        # Both have started: they may have read the store before the last document run
        # ended, so a new report run is requested.
        report_event(instance, not_started, DagsterEventType.RUN_START)
        (request,) = run_sensor(instance, cursor).run_requests
        assert request.tags[TRIGGER_TAG] == "document_runs_finished"


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
    from doc_runs_tests.batches import execute, load_defs

    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    document_id = store.put_bytes(b"Plain notes about the budget. It was approved.", "acme")
    with instance_for_test() as instance:
        _, tags = add_batch(instance, project, [document_id], "acme")
        with catalog_of(instance) as catalog:
            # What the tick would ask for (without evaluating it: that would register a
            # batch of its own, which the run of `tags` would then leave to it).
            plan = plan_unfinished_runs(instance, catalog, store, 50)
        assert plan.batches == [("acme", [document_id])]
        assert run_sensor(instance, None).run_requests == []

        result = execute(defs, instance, tags)
        assert result.success
        (report,) = run_sensor(instance, None).run_requests
        assert report.partition_key == tags[PARTITION_TAG]
        after = run_schedule(instance, project)
        assert isinstance(after, SkipReason) and "no unfinished documents" in str(
            after.skip_message)


# -- wiring and settings ---------------------------------------------------------------------

def test_definitions_load_with_the_schedules_and_the_report_sensor(project) -> None:
    defs = load_defs()
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
    schedules = load_defs_with({
        "DOC_RUNS_NIGHTLY_CRON": "30 3 * * 1-5", "DOC_RUNS_REPORT_CRON": "*/15 * * * *",
        "DOC_RUNS_SCHEDULE_TZ": "Europe/Berlin", "DOC_RUNS_MAX_DOCUMENTS_PER_RUN": "7"})
    nightly = schedules.get_schedule_def("unfinished_documents_schedule")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("30 3 * * 1-5",
                                                                   "Europe/Berlin")
    assert "at most 7 documents a run" in (nightly.description or "")
    hourly = schedules.get_schedule_def("corpus_report_schedule")
    assert (hourly.cron_schedule, hourly.execution_timezone) == ("*/15 * * * *",
                                                                 "Europe/Berlin")


def load_defs_with(env: dict[str, str]):
    from doc_runs.definitions import build_definitions

    # A prefix of its own: no deployment id is written into the checkout's home.
    return build_definitions(Settings.from_sources(
        {"DOC_RUNS_STREAM_PREFIX": "doc_runs_test:", **env})).get_repository_def()


@pytest.mark.parametrize(("name", "value"), [
    ("DOC_RUNS_NIGHTLY_CRON", "every night"),
    ("DOC_RUNS_REPORT_CRON", "0 * * *"),
    ("DOC_RUNS_REPORT_CRON", "0 0 31 2 *"),
    ("DOC_RUNS_REPORT_CRON", "0 25 * * *"),
    ("DOC_RUNS_SCHEDULE_TZ", "Mars/Olympus"),
    ("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", "0"),
    ("DOC_RUNS_MAX_DOCUMENTS_PER_RUN", "many"),
])
def test_a_bad_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"{name}={value!r}: expected")):
        Settings.from_sources({name: value})


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 * * * *", "30 3 * * 1-5", "0 0 29 2 *",
                                  "5 4 * JAN-MAR SUN", "0 0 1/3 * *", "@daily"])
def test_every_cron_string_the_settings_accept_dagster_accepts(cron: str) -> None:
    schedules = load_defs_with({"DOC_RUNS_NIGHTLY_CRON": cron})
    assert schedules.get_schedule_def("unfinished_documents_schedule").cron_schedule == cron


def test_a_bad_cron_string_fails_loading_the_code_location(project) -> None:
    env = {**os.environ, "DOC_RUNS_NIGHTLY_CRON": "0 25 * * *"}
    loaded = subprocess.run([sys.executable, "-c", LOAD_DEFINITIONS], env=env,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode != 0
    assert ("invalid setting: DOC_RUNS_NIGHTLY_CRON='0 25 * * *': expected a cron string"
            in loaded.stderr)
