"""Redis key names of the queue, and stream entry ids as comparable values."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from doc_runs.auth import valid_tenant

DEFAULT_PREFIX = "doc_runs:"

_STREAM_ID_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class StreamNames:
    prefix: str = DEFAULT_PREFIX

    @property
    def documents(self) -> str:
        return f"{self.prefix}documents"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}dead_letters"

    def dead_letter(self, dead_letter_id: str) -> str:
        """The hash holding one dead letter's current state."""
        return f"{self.prefix}dead_letter:{dead_letter_id}"

    def events(self, tenant: str) -> str:
        return f"{self.prefix}events:{_checked_tenant(tenant)}"

    def idempotency(self, tenant: str, key: str) -> str:
        # Hashed: the key is the producer's free text and must not shape our key space.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.prefix}idempotency:{_checked_tenant(tenant)}:{digest}"


def connect_redis(url: str) -> Any:
    """A client of the Redis at `url` with bounded waits: a Redis that hangs must fail a
    sensor's tick well inside its 60 s, and a command rather than hold it."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def redis_url_shown(url: str) -> str:
    """The Redis URL for a message, a log line or a failed tick: its password replaced by
    `***` (those end up in the UI and in logs that more people read)."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _checked_tenant(tenant: str) -> str:
    # A tenant name with ":" in it could reach another tenant's keys.
    if not valid_tenant(tenant):
        raise ValueError("tenant name does not match TENANT_PATTERN")
    return tenant


def as_text(value: bytes | str) -> str:
    """Redis answers bytes or str depending on the client's decode_responses."""
    return value.decode() if isinstance(value, bytes) else value


def stream_id_tuple(stream_id: str | bytes) -> tuple[int, int]:
    """(milliseconds, sequence) of an entry id; "123" alone means "123-0"."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    match = _STREAM_ID_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a stream entry id: {text!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def compare_stream_ids(a: str | bytes, b: str | bytes) -> int:
    """-1, 0 or 1 as `a` is before, the same as, or after `b` in stream order."""
    left, right = stream_id_tuple(a), stream_id_tuple(b)
    return (left > right) - (left < right)


def earlier_stream_id(a: str, b: str) -> str:
    return a if compare_stream_ids(a, b) <= 0 else b
