"""The queue sensor: messages on the documents stream become document runs, poison messages
become dead letters, and nothing counts as handled before the tick's result is committed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from doc_runs.auth import Secrets, may_access
from doc_runs.core.intake import IntakeRefused, store_file
from doc_runs.core.outcomes import Reason
from doc_runs.core.store import DocumentStore
from doc_runs.defs.batches import PlannedBatch, chunked, fields_requested, request_runs
from doc_runs.defs.jobs import DOCUMENT_JOB
from doc_runs.defs.resources import (
    CatalogResource,
    DocumentStoreResource,
    ExtractionResource,
    QueueResource,
    SecretsResource,
)
from doc_runs.defs.tags import MESSAGES_TAG
from doc_runs.logs import log_fact
from doc_runs.queue.consumer import Claim, claim_idempotency_keys, read_after, trim_behind
from doc_runs.queue.dead_letters import PoisonMessage, dead_letter_many
from doc_runs.queue.envelope import EnvelopeV1, PathRef, Poison, PoisonReason, parse_envelope
from doc_runs.queue.producer import ENVELOPE_FIELD, request_fingerprint
from doc_runs.queue.roots import AllowedRoot
from doc_runs.queue.streams import StreamNames, redis_url_shown

if TYPE_CHECKING:
    import redis

# Well inside the 60 s a sensor evaluation may take, on a loaded machine too (it is checked
# after each page), leaving room for Redis calls that are slow but not dead.
TICK_BUDGET_S = 15.0
_PAGE = 500


class QueueUnavailable(Exception):
    """Redis did not answer: the tick fails, its cursor stays, nothing is lost."""


@dataclass
class Accepted:
    entry_id: str
    envelope: EnvelopeV1
    document_id: str
    payload: bytes


@dataclass
class QueueTick:
    accepted: list[Accepted] = field(default_factory=list)
    dead_lettered: list[tuple[str, PoisonReason]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cursor: str | None = None


class DocumentResolver:
    """The document a message names, stored for its tenant. An upload of another tenant reads
    exactly like a missing one: the answer must not tell that someone else has it. Owners are
    looked up once per document in a tick (a backlog names the same documents often)."""

    def __init__(self, store: DocumentStore, roots: Mapping[str, AllowedRoot],
                 max_bytes: int) -> None:
        self.store, self.roots, self.max_bytes = store, roots, max_bytes
        self._owners: dict[str, str | None] = {}

    def _owner(self, document_id: str) -> str | None:
        if document_id not in self._owners:
            self._owners[document_id] = (self.store.owner(document_id)
                                         if self.store.has_document(document_id) else None)
        return self._owners[document_id]

    def __call__(self, envelope: EnvelopeV1) -> str:
        ref = envelope.document
        if not isinstance(ref, PathRef):
            if not may_access(envelope.tenant, self._owner(ref.document_id)):
                raise Poison(PoisonReason.upload_not_found,
                             f"no upload {ref.document_id} for tenant {envelope.tenant!r}")
            return ref.document_id
        allowed = self.roots.get(ref.root)
        # Another tenant's root reads exactly like one that does not exist.
        if allowed is None or not allowed.may_use(envelope.tenant):
            raise Poison(PoisonReason.path_not_allowed, f"no allowed root named {ref.root!r}")
        root = os.path.realpath(allowed.path)
        try:
            real = os.path.realpath(os.path.join(root, ref.path), strict=True)
        except OSError as exc:
            raise Poison(PoisonReason.unreadable_document,
                         f"{ref.root}:{ref.path}: {exc.strerror or exc}") from None
        if os.path.commonpath([real, root]) != root:
            raise Poison(PoisonReason.path_not_allowed,
                         f"{ref.root}:{ref.path} leads outside the root {ref.root!r}")
        try:
            # Opened by the path as it was checked, then checked again where the descriptor
            # is: a folder on the path swapped for a link out in between is refused, and so
            # is a hard link to a file elsewhere.
            return store_file(self.store, Path(real), tenant=envelope.tenant,
                              max_bytes=self.max_bytes, inside=root, max_links=1,
                              shown_as=f"{ref.root}:{ref.path}")
        except IntakeRefused as refused:
            if refused.reason is Reason.OUTSIDE_FOLDER:
                raise Poison(PoisonReason.path_not_allowed, refused.detail) from None
            raise Poison(PoisonReason.unreadable_document,
                         f"{refused.reason.value}: {refused.detail}") from None


def _poison_payload(fields: dict[str, bytes]) -> bytes:
    """What to keep of an entry that has no envelope field: all of its fields."""
    return json.dumps({k: v.decode("utf-8", "backslashreplace")
                       for k, v in fields.items()}).encode()


def read_queue(client: redis.Redis, names: StreamNames, secrets: Secrets,
               store: DocumentStore, queue: QueueResource, max_bytes: int,
               cursor: str | None, budget_s: float = TICK_BUDGET_S) -> QueueTick:
    """Handle the entries after `cursor`, oldest first, a page at a time, until the stream's
    end, the count limit or the time budget (checked after each page, so even a slow tick
    moves the cursor on). Dead letters and idempotency claims are written per page in one
    round trip each; both are idempotent, so a tick that fails and is evaluated again (same
    cursor) gives the same result."""
    tick = QueueTick(cursor=cursor)
    resolve = DocumentResolver(store, queue.roots(), max_bytes)
    started = time.monotonic()
    handled = 0
    while handled < queue.max_messages_per_tick:
        page = read_after(client, names.documents, tick.cursor,
                          min(_PAGE, queue.max_messages_per_tick - handled))
        if not page:
            break
        poison: list[PoisonMessage] = []
        valid: list[Accepted] = []
        for entry_id, fields in page:
            payload = fields.get(ENVELOPE_FIELD)
            try:
                if payload is None:
                    raise Poison(PoisonReason.invalid_envelope,
                                 f"the entry has no {ENVELOPE_FIELD!r} field "
                                 f"(fields: {sorted(fields)[:10]})")
                envelope = parse_envelope(payload, secrets)
                valid.append(Accepted(entry_id, envelope, resolve(envelope), payload))
            except Poison as bad:
                poison.append(PoisonMessage(entry_id, payload if payload is not None
                                            else _poison_payload(fields),
                                            bad.reason, bad.detail))
                tick.dead_lettered.append((entry_id, bad.reason))
                log_fact(f"queue message {entry_id} dead-lettered: {bad.detail}",
                         level=logging.WARNING, stage="queue_sensor", outcome="dead_lettered",
                         reason=bad.reason.value, entry_id=entry_id)
        claimed = claim_idempotency_keys(
            client, names,
            [(a.envelope.tenant, a.envelope.idempotency_key, a.entry_id,
              request_fingerprint(a.document_id, a.envelope.options.extra_fields,
                                  a.envelope.options.alone))
             for a in valid],
            max(queue.retention_seconds, 1))
        for accepted, claim in zip(valid, claimed, strict=True):
            if claim is Claim.CLAIMED:
                tick.accepted.append(accepted)
            elif claim is Claim.DUPLICATE:
                tick.duplicates.append(accepted.entry_id)
            else:
                poison.append(PoisonMessage(
                    accepted.entry_id, accepted.payload, PoisonReason.idempotency_conflict,
                    f"idempotency key {accepted.envelope.idempotency_key!r} was used for "
                    "another document or other options; choose a new key for a new request"))
                tick.dead_lettered.append((accepted.entry_id, PoisonReason.idempotency_conflict))
                log_fact(f"queue message {accepted.entry_id} dead-lettered: its idempotency "
                         "key was used for another request", level=logging.WARNING,
                         document_id=accepted.document_id, tenant=accepted.envelope.tenant,
                         stage="queue_sensor", outcome="dead_lettered",
                         reason=PoisonReason.idempotency_conflict.value,
                         entry_id=accepted.entry_id)
        dead_letter_many(client, names, poison)
        tick.cursor = page[-1][0]
        handled += len(page)
        if time.monotonic() - started >= budget_s:
            break
    return tick


def plan_queue_batches(tick: QueueTick, max_per_run: int,
                       carried: Mapping[str, str] | None = None) -> list[PlannedBatch]:
    """Batches for the accepted messages: one tenant and one set of options per run, at most
    `max_per_run` documents each, in the order the messages came; a message asking to run
    alone (a re-run) gets a run of its own, with the fields its document's last run asked
    for (`carried`, see batches.fields_requested) unless it names fields itself. The run key
    is made of the messages' idempotency keys, so evaluating the same entries again asks for
    the same runs."""
    groups: dict[tuple[str, str, str], list[Accepted]] = defaultdict(list)
    for item in tick.accepted:
        options = json.dumps(item.envelope.options.extra_fields, sort_keys=True)
        if item.envelope.options.alone and not item.envelope.options.extra_fields:
            options = (carried or {}).get(item.document_id, "{}")
        alone = item.entry_id if item.envelope.options.alone else ""
        groups[(item.envelope.tenant, options, alone)].append(item)
    planned: list[PlannedBatch] = []
    for (tenant, options, _), items in groups.items():
        documents = list(dict.fromkeys(i.document_id for i in items))
        for batch in chunked(documents, max_per_run):
            in_batch = set(batch)
            keys = sorted(i.envelope.idempotency_key for i in items if i.document_id in in_batch)
            run_key = "queue:" + hashlib.sha256(
                "\n".join([tenant, options, *keys]).encode()).hexdigest()[:32]
            planned.append(PlannedBatch(run_key, tenant, batch, "queue",
                                        {MESSAGES_TAG: str(len(keys))}, fields=options))
    return planned


@sensor(
    job_name=DOCUMENT_JOB,
    # An empty stream costs one XRANGE: look often, so a message waits little for its run.
    minimum_interval_seconds=2,
    default_status=DefaultSensorStatus.RUNNING,
    description="Reads signed messages from the Redis documents stream after its cursor and "
    "starts document runs; poison messages go to the dead-letter stream.",
)
def queue_sensor(
    context: SensorEvaluationContext,
    document_store: DocumentStoreResource,
    catalog: CatalogResource,
    extraction: ExtractionResource,
    queue: QueueResource,
    secrets: SecretsResource,
) -> SensorResult:
    import redis  # here, not at the top: a run process loads these definitions too

    client = queue.client()
    names = queue.names()
    store = document_store.store()
    cursor = context.cursor or None
    try:
        if cursor:
            trimmed = trim_behind(client, names.documents, cursor, queue.retention_seconds,
                                  time.time())
            if trimmed:
                context.log.info(f"trimmed {trimmed} handled entries older than "
                                 f"{queue.retention_seconds} s")
        tick = read_queue(client, names, secrets.load(), store, queue,
                          int(extraction.max_bytes), cursor, TICK_BUDGET_S)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailable(
            f"Redis at {redis_url_shown(queue.redis_url)} did not answer ({exc}); the cursor "
            f"stays at {cursor or 'the start of the stream'}, so nothing is lost: the next "
            "tick goes on from there") from exc
    finally:
        client.close()
    if tick.dead_lettered:
        by_reason = Counter(reason.value for _, reason in tick.dead_lettered)
        context.log.warning(
            f"{len(tick.dead_lettered)} message(s) dead-lettered ({dict(by_reason)}); see "
            f"`doc-runs dlq list`. First: {[entry for entry, _ in tick.dead_lettered[:10]]}")
    if tick.duplicates:
        context.log.info(f"{len(tick.duplicates)} message(s) repeated an idempotency key "
                         f"already handled; no run: {tick.duplicates[:10]}")
    reruns = [a.document_id for a in tick.accepted
              if a.envelope.options.alone and not a.envelope.options.extra_fields]
    carried = fields_requested(context.instance, catalog.catalog(), reruns) if reruns else {}
    requests = request_runs(catalog.catalog(), store,
                            plan_queue_batches(tick, queue.max_documents_per_run, carried),
                            "queue_sensor")
    summary = (f"{len(tick.accepted)} accepted, {len(tick.dead_lettered)} dead-lettered, "
               f"{len(tick.duplicates)} duplicate(s); cursor {tick.cursor}")
    context.log.info(summary)
    return SensorResult(
        run_requests=requests,
        cursor=tick.cursor,
        skip_reason=None if requests else f"no new documents: {summary}",
    )
