"""Outcome events for other services: every stage result and every document's final state,
on an outbound stream per tenant. The stream entry id is the event's id, so a reader that
reconnects with the last id it saw resumes exactly there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from doc_runs.queue.streams import StreamNames, as_text

if TYPE_CHECKING:
    import redis

# The final state of a document, next to the five stages.
FINAL = "final"


class OutcomeEvent(BaseModel):
    document_id: str
    stage: str  # a stage name, or "final"
    status: Literal["succeeded", "quarantined", "failed"]
    reason: str | None = None
    detail: str | None = None
    run_id: str
    at: str  # ISO 8601, when the fact was recorded by the run
    source_id: str  # what it was read from (Dagster's event storage id), for de-duplication

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> OutcomeEvent:
        return cls.model_validate({as_text(k): as_text(v) for k, v in fields.items()})


def publish_events(client: redis.Redis, names: StreamNames,
                   events: list[tuple[str, OutcomeEvent]], max_len: int) -> list[str]:
    """XADD each (tenant, event) to the tenant's stream in one transaction, keeping about
    `max_len` entries per stream; returns the entry ids."""
    pipeline = client.pipeline(transaction=True)
    for tenant, event in events:
        pipeline.xadd(names.events(tenant), event.fields(),  # type: ignore[arg-type]
                      maxlen=max_len, approximate=True)
    return [as_text(entry_id) for entry_id in pipeline.execute()]


def read_events(client: redis.Redis, names: StreamNames, tenant: str, after_id: str,
                count: int = 500, block_ms: int | None = None
                ) -> list[tuple[str, OutcomeEvent]]:
    """The tenant's events after `after_id` ("0-0" for all that are kept), oldest first;
    with `block_ms`, wait that long for the first one."""
    answer = client.xread({names.events(tenant): after_id}, count=count, block=block_ms)
    if not answer:
        return []
    (_, entries), = answer
    return [(as_text(entry_id), OutcomeEvent.from_fields(fields))
            for entry_id, fields in entries]
