"""Fixtures of the queue tests: two tenants' secrets, and the real Redis with key names under
the test's own prefix."""

from __future__ import annotations

import pytest
import redis

from doc_runs.auth import Secrets, load_secrets
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.queue_tests.messages import SIGNING_KEYS, TOKENS


@pytest.fixture
def secrets() -> Secrets:
    return load_secrets({
        "DOC_RUNS_API_TOKENS": ",".join(f"{t}={v}" for t, v in TOKENS.items()),
        "DOC_RUNS_SIGNING_KEYS": ",".join(f"{t}={k.decode()}" for t, k in SIGNING_KEYS.items()),
    })


@pytest.fixture
def queue(redis_client: tuple[redis.Redis, str]) -> tuple[redis.Redis, StreamNames]:
    client, prefix = redis_client
    return client, StreamNames(prefix)
