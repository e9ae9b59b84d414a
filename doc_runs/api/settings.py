"""What the HTTP app needs to know, given explicitly: the server entry point fills it from the
settings (doc_runs.api.server.api_settings), tests fill it themselves."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doc_runs.auth import Secrets


class SecretsSource:
    """The tenants' secrets, loaded again whenever the watched secrets file changes, so that
    `doc-runs tenant add` takes effect without restarting the server."""

    def __init__(self, load: Callable[[], Secrets], watched_file: Path | None = None) -> None:
        self._load = load
        self._watched = watched_file
        self._lock = threading.Lock()
        self._secrets: Secrets | None = None
        self._seen: tuple[int, int, int] | None = None

    def _signature(self) -> tuple[int, int, int] | None:
        if self._watched is None:
            return None
        try:
            info = os.stat(self._watched)
        except FileNotFoundError:
            return None
        # The inode as well as the mtime: add_tenant replaces the file by rename, and two
        # replacements within one mtime tick still differ by inode.
        return info.st_ino, info.st_mtime_ns, info.st_size

    def current(self) -> Secrets:
        """The secrets as the file now says; raises SecretsError when they cannot be loaded
        (its message names the file, never a secret)."""
        signature = self._signature()
        with self._lock:
            if self._secrets is None or signature != self._seen:
                self._secrets = self._load()
                self._seen = signature
            return self._secrets


@dataclass(frozen=True)
class ApiSettings:
    store_root: Path
    catalog_url: str  # the document catalog (doc_runs.core.catalog.catalog_url)
    redis_url: str
    stream_prefix: str
    secrets: SecretsSource
    max_upload_bytes: int
    # A comment line this often keeps proxies from closing an idle event stream.
    events_heartbeat_s: float = 15.0
    # An event stream is closed after this long even without the document's final event;
    # the client reconnects with Last-Event-ID. Bounds a connection to a document whose
    # events were trimmed before it finished.
    events_max_open_s: float = 3600.0
    # How long an idempotency key stays bound to its request (the queue's retention).
    idempotency_ttl_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be at least 1")
        if self.events_heartbeat_s <= 0 or self.events_max_open_s <= 0:
            raise ValueError("events_heartbeat_s and events_max_open_s must be positive")
