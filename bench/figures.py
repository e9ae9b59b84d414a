"""What every benchmark measurement returns: one figure of the suite's table, a ratio of two
things measured side by side in the same invocation, with the raw measurements beside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str  # the name for it: throughput, peer, overhead, ...
    what: str  # one line: what was divided by what, on which inputs
    value: float | None  # the ratio (or seconds, where the target is in seconds)
    unit: str  # "x" for a ratio, "s", "ms", "MB"
    target: str  # as the issue states it, e.g. ">= 1.2"
    holds: bool | None  # None where there is no pass/fail target
    measured: dict[str, Any] = field(default_factory=dict)  # raw numbers behind the value

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None
