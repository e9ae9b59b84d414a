"""What the endpoints share for the app's lifetime: settings, the store, the catalog and the
Redis clients (opened at start-up, closed at shutdown)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from fastapi import Request
from redis.asyncio import Redis as AsyncRedis

from doc_runs.api.settings import ApiSettings
from doc_runs.core.catalog import DocumentCatalog
from doc_runs.core.store import DocumentStore
from doc_runs.queue.streams import StreamNames

# A Redis that does not answer must turn into a 503 quickly, not hold the request.
_CONNECT_TIMEOUT_S = 2.0
_COMMAND_TIMEOUT_S = 5.0


@dataclass
class Runtime:
    settings: ApiSettings
    store: DocumentStore
    catalog: DocumentCatalog
    names: StreamNames
    redis: redis.Redis
    redis_async: AsyncRedis

    @classmethod
    def open(cls, settings: ApiSettings) -> Runtime:
        return cls(
            settings=settings,
            store=DocumentStore(settings.store_root),
            catalog=DocumentCatalog(settings.catalog_url),
            names=StreamNames(settings.stream_prefix),
            redis=redis.Redis.from_url(settings.redis_url,
                                       socket_connect_timeout=_CONNECT_TIMEOUT_S,
                                       socket_timeout=_COMMAND_TIMEOUT_S),
            # XREAD BLOCK waits up to one heartbeat: the socket timeout must outlast it.
            redis_async=AsyncRedis.from_url(
                settings.redis_url, socket_connect_timeout=_CONNECT_TIMEOUT_S,
                socket_timeout=settings.events_heartbeat_s + _COMMAND_TIMEOUT_S),
        )

    async def close(self) -> None:
        self.catalog.close()
        self.redis.close()
        await self.redis_async.aclose()


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]
