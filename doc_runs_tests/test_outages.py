"""Servers going away under a running deployment (`dagster dev`): Redis unavailable for a while
(the sensors that need it fail their ticks visibly, then carry on; no message or event is
lost) and PostgreSQL restarted under the daemon (later runs succeed). Both use servers of the
test's own, started from pip-installed binaries: the shared ones are never stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from doc_runs.auth import add_tenant
from doc_runs.defs.tags import TRIGGER_TAG
from doc_runs.queue.events import FINAL, OutcomeEvent
from doc_runs.queue.streams import StreamNames
from doc_runs_tests import servers
from doc_runs_tests.batches import documents_of_run, runs_of_document
from doc_runs_tests.documents import make_pdf
from doc_runs_tests.helpers import FINISHED, PROJECT_ROOT, DagsterDev, doc_runs
from doc_runs_tests.live import wait_until

PREFIX = "doc_runs_outage:"


def sensor_ticks(instance: DagsterInstance, name: str, since: float,
                 statuses: list[TickStatus]) -> list:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                           after=since, statuses=statuses))
    return []


def document_run(instance: DagsterInstance, document_id: str):
    for run in runs_of_document(instance, document_id):
        if run.status in FINISHED:
            return run
    return None


def submit(project: Path, path: Path) -> str:
    import json

    sent = doc_runs(project, "submit", str(path), "--tenant", "acme", "--json")
    assert sent.returncode == 0, sent.stderr
    return json.loads(sent.stdout)["document_id"]


@pytest.fixture
def own_redis(monkeypatch) -> str:
    server = servers.start_throwaway_redis()
    monkeypatch.setenv("DOC_RUNS_REDIS_URL", server.url)
    monkeypatch.setenv("DOC_RUNS_STREAM_PREFIX", PREFIX)
    try:
        yield server
    finally:
        os.kill(server.process.pid, signal.SIGCONT)  # never leave it stopped
        server.stop()


def test_redis_unavailable_for_a_while_fails_ticks_visibly_and_loses_nothing(
        project, own_redis, text_pdf) -> None:
    add_tenant(project / ".secrets" / "tenants.json", "acme")
    client = redis.Redis.from_url(own_redis.url)
    # The inbox's documents belong to its tenant (DOC_RUNS_INBOX_TENANT, `default`).
    events = StreamNames(PREFIX).events("default")
    (project / "first.md").write_text("# First\n\nThe board approved the budget.\n")
    (project / "queued.md").write_text("# Queued\n\nThe audit found no weakness.\n")
    with DagsterDev(project) as dagster, DagsterInstance.get() as instance:
        first = submit(project, project / "first.md")
        run = wait_until(lambda: document_run(instance, first), 180, "the first message's run")
        assert run.status == DagsterRunStatus.SUCCESS, dagster.tail()

        queued = submit(project, project / "queued.md")
        os.kill(own_redis.process.pid, signal.SIGSTOP)  # unavailable: connections hang
        down_at = time.time()
        # A file dropped in the inbox needs no Redis: its run goes on, and its outcome events
        # wait for Redis.
        (project / "data" / "inbox" / "during.pdf").write_bytes(text_pdf)
        wait_until(lambda: sensor_ticks(instance, "queue_sensor", down_at,
                                        [TickStatus.FAILURE]), 120,
                   "a failed queue_sensor tick")
        wait_until(lambda: sensor_ticks(instance, "outcome_events_sensor", down_at,
                                        [TickStatus.FAILURE]), 120,
                   "a failed outcome_events_sensor tick")
        during = wait_until(lambda: next(
            (r for r in instance.get_runs(RunsFilter(job_name="document_pipeline",
                                                     tags={TRIGGER_TAG: "inbox"}))
             if r.status in FINISHED), None), 180, "the inbox run during the outage")
        assert during.status == DagsterRunStatus.SUCCESS, dagster.tail()
        failure = sensor_ticks(instance, "queue_sensor", down_at, [TickStatus.FAILURE])[0]
        assert "Timeout" in str(failure.error) or "timed out" in str(failure.error).lower()

        os.kill(own_redis.process.pid, signal.SIGCONT)
        up_at = time.time()
        later = wait_until(lambda: document_run(instance, queued), 180,
                           "the message queued before the outage")
        assert later.status == DagsterRunStatus.SUCCESS, dagster.tail()
        wait_until(lambda: sensor_ticks(instance, "queue_sensor", up_at,
                                        [TickStatus.SUCCESS, TickStatus.SKIPPED]), 60,
                   "queue_sensor ticks to succeed again")
        (during_id,) = documents_of_run(instance, during)

        def published(document_id: str) -> bool:
            return any(event.document_id == document_id and event.stage == FINAL
                       for event in (OutcomeEvent.from_fields(fields)
                                     for _, fields in client.xrange(events)))

        # The outcome events of the run that ended while Redis was away: published late,
        # not lost.
        wait_until(lambda: published(during_id), 120, "the events held during the outage")


def test_postgresql_restarted_under_the_daemon_later_runs_succeed(project, text_pdf,
                                                                   monkeypatch) -> None:
    server = servers.start_throwaway_postgres()
    try:
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", server.url.replace(
            "postgresql://", "postgresql+psycopg2://", 1))
        instance_yaml = (PROJECT_ROOT / "deploy" / "dagster.postgres.yaml").read_text()
        with DagsterDev(project, instance_yaml) as dagster, \
                DagsterInstance.get() as instance:
            inbox = project / "data" / "inbox"
            (inbox / "before.pdf").write_bytes(text_pdf)

            def runs_done(count: int):
                runs = [r for r in instance.get_runs(RunsFilter(job_name="document_pipeline"))
                        if r.status in FINISHED]
                return runs if len(runs) >= count else None

            (before,) = wait_until(lambda: runs_done(1), 180, "the run before the restart")
            assert before.status == DagsterRunStatus.SUCCESS, dagster.tail()
            server.restart()
            (inbox / "after.pdf").write_bytes(make_pdf(["Written after the restart. The "
                                                        "supplier delivers in thirty days."]))
            runs = wait_until(lambda: runs_done(2), 240, "the run after the restart")
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), dagster.tail()
            assert dagster.process.poll() is None  # the daemon and webserver lived through it
    finally:
        server.stop()
