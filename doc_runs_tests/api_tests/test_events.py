"""GET /v1/documents/{id}/events: a document's outcome events over SSE, from Redis, resumable
with Last-Event-ID, ending at `final`."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import pytest

from doc_runs.queue.events import FINAL, OutcomeEvent, publish_events
from doc_runs_tests.api_tests.conftest import ApiUnderTest
from doc_runs_tests.api_tests.sse import Frame, collect

HEARTBEAT_S = 0.3
MAX_OPEN_S = 2.0


@pytest.fixture(scope="module")
def api_options() -> dict[str, Any]:
    return {"events_heartbeat_s": HEARTBEAT_S, "events_max_open_s": MAX_OPEN_S}


def uploaded(api: ApiUnderTest, tenant: str = "acme") -> str:
    response = api.upload(tenant, f"{uuid.uuid4().hex} events\n".encode())
    assert response.status_code == 202, response.text
    return str(response.json()["document_id"])


def event(document_id: str, stage: str,
          status: Literal["succeeded", "quarantined", "failed"] = "succeeded",
          reason: str | None = None) -> OutcomeEvent:
    return OutcomeEvent(document_id=document_id, stage=stage, status=status, reason=reason,
                        run_id="run-1", at="2026-03-01T12:00:00+00:00",
                        source_id=uuid.uuid4().hex[:8])


def publish(api: ApiUnderTest, tenant: str, *events: OutcomeEvent) -> list[str]:
    return publish_events(api.redis, api.names, [(tenant, e) for e in events], max_len=10_000)


def events_only(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.comment is None]


def test_events_are_replayed_in_order_and_the_stream_ends_at_final(api: ApiUnderTest) -> None:
    document_id, other = uploaded(api), uploaded(api)
    published = [
        event(document_id, "document"),
        event(other, "document"),  # the same tenant's stream carries every document
        event(document_id, "document_text", "quarantined", "encrypted"),
        event(document_id, FINAL, "quarantined", "encrypted"),
    ]
    ids = publish(api, "acme", *published)

    with api.client("acme") as client, client.stream(
            "GET", f"/v1/documents/{document_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        seen = events_only(collect(response))

    assert [(f.id, f.event) for f in seen] == [
        (ids[0], "document"), (ids[2], "document_text"), (ids[3], "final")]
    assert OutcomeEvent.model_validate(seen[1].json()) == published[2]
    assert seen[2].json()["reason"] == "encrypted"


def test_a_reconnect_with_last_event_id_gets_only_the_later_events(api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    ids = publish(api, "acme", event(document_id, "document"),
                  event(document_id, "document_text"), event(document_id, FINAL))

    with api.client("acme") as client:
        with client.stream("GET", f"/v1/documents/{document_id}/events",
                           headers={"Last-Event-ID": ids[0]}) as response:
            by_header = [f.id for f in events_only(collect(response))]
        with client.stream("GET", f"/v1/documents/{document_id}/events",
                           params={"last_event_id": ids[1]}) as response:
            by_query = [f.id for f in events_only(collect(response))]
        malformed = client.get(f"/v1/documents/{document_id}/events",
                               headers={"Last-Event-ID": "yesterday"})
        out_of_range = client.get(f"/v1/documents/{document_id}/events",
                                  headers={"Last-Event-ID": "99999999999999999999999-0"})

    assert by_header == ids[1:]
    assert by_query == ids[2:]
    assert malformed.status_code == 400 and out_of_range.status_code == 400


def test_events_arrive_live_with_heartbeats_while_idle(api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    published: list[str] = []

    def on_frame(frame: Frame) -> None:
        # Nothing is on the stream yet: the first frame must be a heartbeat; then the run
        # "happens", and its events must reach the open connection.
        if not published:
            assert frame.comment == "heartbeat"
            published.extend(publish(api, "acme", event(document_id, "document"),
                                     event(document_id, FINAL)))

    with api.client("acme") as client, client.stream(
            "GET", f"/v1/documents/{document_id}/events") as response:
        seen = collect(response, on_frame)

    assert [f.id for f in events_only(seen)] == published
    assert seen[-1].event == "final"


def test_a_tenant_sees_no_events_of_another_tenants_stream(api: ApiUnderTest) -> None:
    document_id = uploaded(api, "beta")
    # The same document id on acme's stream must never reach beta's reader, nor beta's
    # final event be missed because of it.
    publish(api, "acme", event(document_id, "document", "quarantined", "corrupt"),
            event(document_id, FINAL, "quarantined", "corrupt"))
    ids = publish(api, "beta", event(document_id, "document"), event(document_id, FINAL))

    with api.client("beta") as client, client.stream(
            "GET", f"/v1/documents/{document_id}/events") as response:
        seen = events_only(collect(response))

    assert [f.id for f in seen] == ids
    assert {f.json()["status"] for f in seen} == {"succeeded"}


def test_a_stream_without_a_final_event_is_closed_after_the_longest_open_time(
        api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    [first] = publish(api, "acme", event(document_id, "document"))
    started = time.monotonic()
    with api.client("acme") as client, client.stream(
            "GET", f"/v1/documents/{document_id}/events") as response:
        seen = collect(response)
    took = time.monotonic() - started

    assert MAX_OPEN_S <= took < MAX_OPEN_S + 3
    assert [f.id for f in events_only(seen)] == [first]
    # Idle for most of it: heartbeats kept the connection alive in between.
    assert sum(1 for f in seen if f.comment == "heartbeat") >= 3


def test_a_malformed_entry_on_the_stream_is_passed_over(api: ApiUnderTest) -> None:
    document_id = uploaded(api)
    api.redis.xadd(api.names.events("acme"), {"document_id": document_id, "stage": "final"})
    ids = publish(api, "acme", event(document_id, FINAL))

    with api.client("acme") as client, client.stream(
            "GET", f"/v1/documents/{document_id}/events") as response:
        seen = events_only(collect(response))

    assert [f.id for f in seen] == ids
