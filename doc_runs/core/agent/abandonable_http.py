"""HTTP clients whose request can be abandoned for good from another thread.

A model call runs in a thread so its caller can give up at the deadline; httpx's timeouts
bound each read, not the call, so a server that trickles bytes would hold that thread and its
connection for as long as it likes. Shutting the call's sockets down wakes the blocked read at
once: the request fails in its own thread, which ends, and the connection is gone."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class _TrackedStream(httpcore.NetworkStream):
    """A network stream that tells its owner about the stream TLS puts on top of it."""

    def __init__(self, stream: httpcore.NetworkStream, owner: CallSockets) -> None:
        self._stream = stream
        self._owner = owner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return self._owner.track(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CallSockets(httpcore.SyncBackend):
    """The network backend of one call's client: remembers the streams it opens so that
    `abandon` can shut them down (and any opened after it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[httpcore.NetworkStream] = []
        self._abandoned = False

    def track(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        with self._lock:
            self._streams.append(stream)
            abandoned = self._abandoned
        if abandoned:
            _shut_down(stream)
        return _TrackedStream(stream, self)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return self.track(super().connect_tcp(host, port, timeout, local_address,
                                              socket_options))

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            streams = list(self._streams)
        for stream in streams:
            _shut_down(stream)


def _shut_down(stream: httpcore.NetworkStream) -> None:
    # shutdown, not close: it wakes a read blocked in another thread, and the descriptor
    # stays that thread's to close (a closed one could be reused under it).
    sock = stream.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def abandonable_client(timeout: float) -> tuple[httpx.Client, CallSockets]:
    """A client for one call (its own connection, none shared with other calls) and the
    handle that abandons it. Requests through a proxy set in the environment do not go
    through this backend: those are bounded by the timeouts alone."""
    sockets = CallSockets()
    context = shared_ssl_context()
    transport = httpx.HTTPTransport(verify=context)
    # httpx takes no network backend; its transport's connection pool is replaced by the
    # same pool on ours (httpx 0.28; test_model_faults proves a trickling call is cut).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context, network_backend=sockets, max_connections=1)
    return httpx.Client(transport=transport, timeout=timeout), sockets


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR as the
    environment says when first asked), made once per process and shared by every call's
    client: loading the CA certificates costs more CPU than the rest of a model call (made
    twice a call, it was half of a run's CPU on small documents, profiled with py-spy). An
    SSLContext serves any number of connections and threads."""
    return httpx.create_ssl_context()
