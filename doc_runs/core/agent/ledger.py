"""Every model and tool call as a fact (tokens, latency, cost, cached or not), and budgets."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, Field

from doc_runs.core.outcomes import DocumentRejected, Reason


class Pricing(BaseModel):
    input_per_mtok: float = Field(0.0, ge=0)  # dollars per million prompt tokens
    output_per_mtok: float = Field(0.0, ge=0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


class CallRecord(BaseModel):
    kind: Literal["model", "tool"]
    name: str  # model name or tool name
    cached: bool
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0


class UsageTotals(BaseModel):
    model_calls: int = 0
    cached_model_calls: int = 0
    tool_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0


def totals(records: list[CallRecord]) -> UsageTotals:
    """The one usage figure: every place that shows usage (stage metadata, the command line,
    the corpus report) adds calls up here. Cached calls count as calls and spend nothing."""
    out = UsageTotals()
    for r in records:
        if r.kind == "tool":
            out.tool_calls += 1
            continue
        out.model_calls += 1
        out.cached_model_calls += r.cached
        if r.cached:
            continue
        out.tokens_in += r.tokens_in
        out.tokens_out += r.tokens_out
        out.latency_s = round(out.latency_s + r.latency_s, 4)
        out.cost_usd = round(out.cost_usd + r.cost_usd, 8)
    return out


class RunBudget:
    """Tokens a whole step may spend across its documents; shared by their threads."""

    def __init__(self, max_tokens: int, already_spent: int = 0) -> None:
        self.max_tokens = max_tokens
        self._spent = already_spent
        self._lock = threading.Lock()

    def charge(self, tokens: int) -> None:
        with self._lock:
            self._spent += tokens

    def check(self) -> None:
        if self.max_tokens and self._spent >= self.max_tokens:
            raise DocumentRejected(
                Reason.BUDGET_EXCEEDED, f"run token budget {self.max_tokens} spent"
            )


class DocumentLedger:
    """The calls made for one document in one stage, checked against its budgets."""

    def __init__(self, pricing: Pricing, max_tokens: int, run_budget: RunBudget | None) -> None:
        self.pricing = pricing
        self.max_tokens = max_tokens
        self.run_budget = run_budget
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        return sum(r.tokens_in + r.tokens_out for r in self.records if not r.cached)

    def check_budget(self) -> None:
        if self.max_tokens and self.spent >= self.max_tokens:
            raise DocumentRejected(Reason.BUDGET_EXCEEDED,
                                   f"{self.spent} tokens spent, budget {self.max_tokens}")
        if self.run_budget is not None:
            self.run_budget.check()

    def add(self, record: CallRecord) -> None:
        if record.kind == "model" and not record.cached:
            record.cost_usd = self.pricing.cost(record.tokens_in, record.tokens_out)
            if self.run_budget is not None:
                self.run_budget.charge(record.tokens_in + record.tokens_out)
        with self._lock:
            self.records.append(record)
