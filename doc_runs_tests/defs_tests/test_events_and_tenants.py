"""What runs record reaches each tenant's outbound events stream, once and in order; a run
acting for one tenant never touches another tenant's document."""

import pytest
from dagster import SkipReason, build_sensor_context, instance_for_test

from doc_runs.core.store import DocumentStore
from doc_runs.defs.events_sensor import outcome_events_sensor
from doc_runs.defs.resources import CatalogResource, QueueResource
from doc_runs.defs.tags import TENANT_TAG
from doc_runs.queue.events import read_events
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.batches import execute, load_defs, records, run_tags


def publish(instance, project, url: str, prefix: str, cursor: str | None):
    resources = {
        "catalog": CatalogResource(),
        "queue": QueueResource(redis_url=url, stream_prefix=prefix),
    }
    with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return outcome_events_sensor(context)


def test_stage_results_and_final_states_reach_the_tenants_streams(
        project, text_pdf, redis_server_url, redis_client) -> None:
    client, prefix = redis_client
    names = StreamNames(prefix)
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        good, fake = store.put_bytes(text_pdf, "acme"), store.put_bytes(b"fake\x00pdf", "acme")
        store.add_source_name(fake, "fake.pdf")
        theirs = store.put_bytes(b"Beta's notes. Two sentences.", "beta")
        assert execute(defs, instance, run_tags(instance, project, [good, fake], "acme")).success
        assert execute(defs, instance, run_tags(instance, project, [theirs], "beta")).success
        missing = "e" * 64
        failed = execute(defs, instance, run_tags(instance, project, [missing]),
                         raise_on_error=False)
        assert not failed.success

        result = publish(instance, project, redis_server_url, prefix, None)
        acme = read_events(client, names, "acme", "0-0")
        beta = read_events(client, names, "beta", "0-0")
        stages = ["document", "document_text", "document_chunks", "document_findings",
                  "document_summary", "final"]
        for document_id in (good, fake):
            mine = [e for _, e in acme if e.document_id == document_id]
            assert [e.stage for e in mine] == stages
        final = {e.document_id: e for _, e in acme if e.stage == "final"}
        assert final[good].status == "succeeded"
        assert (final[fake].status, final[fake].reason) == ("quarantined", "not_pdf")
        assert {e.document_id for _, e in beta} == {theirs}
        (lost,) = [e for _, e in read_events(client, names, "default", "0-0")]
        assert (lost.document_id, lost.stage, lost.status) == (missing, "final", "failed")
        assert lost.run_id == failed.run_id
        # The status reads it too: failed until a later run records more.
        from doc_runs.core.status import document_status

        state = document_status(records(instance, missing))
        assert (state.state.value, state.reason, state.run_id) == (
            "failed", "run_failed", failed.run_id)
        assert document_status(records(instance, good)).state.value == "succeeded"

        # The next tick publishes nothing again.
        again = publish(instance, project, redis_server_url, prefix, result.cursor)
        assert isinstance(again, SkipReason)
        assert len(read_events(client, names, "acme", "0-0")) == len(acme)


def test_redis_down_keeps_the_events_for_the_next_tick(project, text_pdf, redis_server_url,
                                                       redis_client) -> None:
    client, prefix = redis_client
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        document_id = store.put_bytes(text_pdf, "acme")
        execute(defs, instance, run_tags(instance, project, [document_id], "acme"))
        with pytest.raises(RuntimeError, match=r"did not answer.*the next tick publishes"):
            publish(instance, project, "redis://127.0.0.1:1/0", prefix, None)
        publish(instance, project, redis_server_url, prefix, None)
        events = read_events(client, StreamNames(prefix), "acme", "0-0")
        assert [e.stage for _, e in events][-1] == "final"


def test_a_run_for_one_tenant_refuses_another_tenants_document(project, text_pdf) -> None:
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        theirs = store.put_bytes(text_pdf, "acme")
        # A batch of beta's naming acme's document (a forged or mistaken registration).
        result = execute(defs, instance, run_tags(instance, project, [theirs], "beta"),
                         raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        assert "acts for tenant 'beta'" in failure.step_failure_data.error.message
        assert records(instance, theirs) == {}  # nothing recorded against acme's document


def test_a_run_tagged_for_another_tenant_than_its_batch_is_refused(project, text_pdf) -> None:
    """A run's tenant tag edited in the UI's launchpad does not make acme's batch beta's."""
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        acme = store.put_bytes(text_pdf, "acme")
        tags = {**run_tags(instance, project, [acme], "acme"), TENANT_TAG: "beta"}
        result = execute(defs, instance, tags, raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        assert "its batch belongs to tenant 'acme'" in failure.step_failure_data.error.message
        assert records(instance, acme) == {}


def test_a_tick_that_died_before_its_cursor_was_committed_publishes_again_with_the_same_ids(
        project, text_pdf, redis_server_url, redis_client) -> None:
    """The daemon killed between the events' XADD and the tick's cursor commit: the next tick
    starts from the old cursor and publishes the same facts again. Nothing is lost, and each
    repeat carries the same source id, by which a consumer drops what it has seen."""
    client, prefix = redis_client
    names = StreamNames(prefix)
    defs = load_defs()
    store = DocumentStore(project / "data" / "store")
    with instance_for_test() as instance:
        document_id = store.put_bytes(text_pdf, "acme")
        assert execute(defs, instance, run_tags(instance, project, [document_id], "acme")).success
        first = publish(instance, project, redis_server_url, prefix, None)
        published = read_events(client, names, "acme", "0-0")
        # Its cursor never reached the daemon's storage: the next tick has the one before.
        second = publish(instance, project, redis_server_url, prefix, None)
        assert second.cursor == first.cursor
        everything = read_events(client, names, "acme", "0-0")
        assert len(everything) == 2 * len(published)
        seen = [(e.source_id, e.document_id, e.stage, e.status) for _, e in everything]
        assert len(set(seen)) == len(published)
        assert sorted(set(seen)) == sorted((e.source_id, e.document_id, e.stage, e.status)
                                           for _, e in published)
        assert {e.stage for _, e in everything} >= {"document_summary", "final"}
