"""Reading a Server-Sent Events response the way an EventSource does: frames separated by a
blank line, comment lines starting with ':'."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data or "null")


def frames(response: httpx.Response, deadline_s: float = 15.0) -> Iterator[Frame]:
    """The frames until the server ends the stream; fails past `deadline_s`, so a stream
    that never ends (heartbeats keep it alive) cannot hang the test."""
    deadline = time.monotonic() + deadline_s
    frame = Frame()
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError("the event stream did not end in time")
        if line == "":
            if frame != Frame():
                yield frame
            frame = Frame()
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "":
            frame.comment = value
        elif field in ("id", "event", "data"):
            setattr(frame, field, value)


def collect(response: httpx.Response, on_frame: Callable[[Frame], None] | None = None
            ) -> list[Frame]:
    seen = []
    for frame in frames(response):
        seen.append(frame)
        if on_frame is not None:
            on_frame(frame)
    return seen
