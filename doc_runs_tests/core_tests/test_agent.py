"""The agent's parts without Dagster: tools, findings validation, the loop on the offline
backend, the call cache and budgets, and parsing of model summaries."""

import json

import pytest

from doc_runs.core.agent.client import ModelClient
from doc_runs.core.agent.findings import (
    DEFAULT_FIELDS,
    FieldSpec,
    FindingsInvalid,
    validate_findings,
)
from doc_runs.core.agent.ledger import DocumentLedger, Pricing, RunBudget, totals
from doc_runs.core.agent.loop import AgentLimits, FindingsAgent
from doc_runs.core.agent.offline import OfflineBackend
from doc_runs.core.agent.summaries import ModelSummarizer
from doc_runs.core.agent.tools import DocumentTools, ToolError
from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text
from doc_runs.core.fields.values import Money
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs.core.store import DocumentStore
from doc_runs.core.summarize import SummaryConfig
from doc_runs_tests.helpers import AGREEMENT_ID, AGREEMENT_PAGES, agreement_tools


class CountingBackend(OfflineBackend):
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, request):
        self.calls += 1
        return super().complete(request)


def agent(store_dir, backend, fields=DEFAULT_FIELDS, max_tokens=0):
    ledger = DocumentLedger(Pricing(), max_tokens, None)
    client = ModelClient(backend, DocumentStore(store_dir), ledger)
    return FindingsAgent(client, agreement_tools(), fields, AgentLimits(), AGREEMENT_ID), ledger


def test_tools_validate_arguments_and_report_errors() -> None:
    t = agreement_tools()
    hits = json.loads(t.call("search_chunks", json.dumps({"query": "liability cap", "k": 1})))
    assert "Liability" in hits[0]["text"]
    found = {kind: [m["match"] for m in json.loads(t.call("find_patterns",
                                                          json.dumps({"kind": kind})))]
             for kind in ("dates", "amounts", "emails", "urls")}
    assert found == {"dates": ["2 March 2026"], "amounts": ["EUR 4,000"],
                     "emails": ["legal@alpha.example"], "urls": ["https://alpha.example/terms"]}
    for name, args, message in [
        ("drop_tables", "{}", "unknown tool"),
        ("search_chunks", '{"query": "x", "k": "many"}', "invalid arguments"),
        ("search_chunks", '{"query": "x", "mode": "fast"}', "invalid arguments"),
        ("read_page", '{"page": 9}', "no page 9"),
        ("read_chunk", '{"chunk_id": "c1-2-00000000"}', "no chunk"),
    ]:
        with pytest.raises(ToolError, match=message):
            t.call(name, args)
    assert t.specs()[0]["function"]["parameters"]["properties"]["k"]["maximum"] == 20


def test_findings_are_checked_against_schema_and_existing_citations() -> None:
    fields = [FieldSpec(name="title", description="t"),
              FieldSpec(name="dates", description="d", type="date", many=True)]
    ok = {"title": [{"value": "T", "citations": ["p2"]}], "dates": []}
    assert validate_findings(json.dumps(ok), fields, {"c1"}, {1, 2}).fields["title"].display() \
        == "T"
    title = ok["title"][0]
    bad_cases = [
        ("{not json", "not valid JSON"),
        (json.dumps({**ok, "extra": ok["title"]}), "unknown fields"),
        (json.dumps({"title": ok["title"]}), "missing fields"),
        (json.dumps({**ok, "title": [{**title, "citations": ["c9"]}]}), "does not exist"),
        (json.dumps({**ok, "title": [{**title, "citations": ["p3"]}]}), "does not exist"),
        (json.dumps({**ok, "dates": {"value": "2026"}}), "must be a list"),
        (json.dumps({**ok, "dates": [{"value": "2026", "citations": []}]}), "not a date"),
        (json.dumps({**ok, "title": [title, title]}), "takes one value"),
        (json.dumps({**ok, "title": [{"value": 5, "citations": []}]}), "not text"),
    ]
    for arguments, message in bad_cases:
        with pytest.raises(FindingsInvalid, match=message):
            validate_findings(arguments, fields, {"c1"}, {1, 2})


def test_offline_agent_answers_every_field_with_real_citations(tmp_path) -> None:
    extra = FieldSpec(name="notice_period", description="notice needed to end the agreement")
    runner, ledger = agent(tmp_path / "a", OfflineBackend(), [*DEFAULT_FIELDS, extra])
    findings = runner.run().fields
    assert findings["document_type"].display() == "contract"
    assert {"Alpha Corp", "Beta Ltd."} <= {v.value for v in findings["parties"].values}
    assert [(v.value, v.text) for v in findings["dates"].values] == [
        ("2026-03-02", "2 March 2026")]
    assert [(v.value, v.text) for v in findings["amounts"].values] == [
        (Money(amount=4000, currency="EUR"), "EUR 4,000")]
    assert "60 days notice" in findings["notice_period"].display()
    chunk_ids = {c.id for c in agreement_tools().ordered}
    assert all(c in chunk_ids for a in findings.values() for c in a.citations)
    usage = totals(ledger.records)
    assert (usage.model_calls, usage.cost_usd) == (2, 0.0) and usage.tool_calls >= 4
    assert all(answer.cited for answer in findings.values() if answer.answered)
    again, _ = agent(tmp_path / "b", OfflineBackend(), [*DEFAULT_FIELDS, extra])
    assert again.run().fields == findings  # deterministic


def test_cache_answers_a_repeated_run_without_calling_the_backend(tmp_path) -> None:
    backend = CountingBackend()
    first, _ = agent(tmp_path, backend)
    findings = first.run()
    assert backend.calls == 2
    second, ledger = agent(tmp_path, backend)
    assert second.run() == findings
    assert backend.calls == 2
    assert all(r.cached for r in ledger.records)


def test_budgets_stop_the_work(tmp_path) -> None:
    runner, _ = agent(tmp_path / "doc", OfflineBackend(), max_tokens=10)
    with pytest.raises(DocumentRejected) as caught:
        runner.run()
    assert caught.value.reason is Reason.BUDGET_EXCEEDED
    budget = RunBudget(100, already_spent=100)
    ledger = DocumentLedger(Pricing(), 0, budget)
    with pytest.raises(DocumentRejected, match="run token budget"):
        ledger.check_budget()


def test_model_summary_citations_are_parsed_and_checked(tmp_path) -> None:
    chunks = agreement_tools().ordered
    summarizer = ModelSummarizer(ModelClient(OfflineBackend(), DocumentStore(tmp_path),
                                             DocumentLedger(Pricing(), 0, None)),
                                 SummaryConfig(), 2, 1, 256)
    by_id = {c.id: c for c in chunks}
    a, b = chunks[0].id, chunks[-1].id
    summary = summarizer._parse(f"Alpha signs [{a}]. Beta pays monthly. [{b}]", by_id)
    assert [(s.text, s.chunk_id) for s in summary.sentences] == [
        ("Alpha signs.", a), ("Beta pays monthly.", b)]
    for text, message in [(f"Alpha [{a}]. Uncited tail.", "without a citation"),
                          ("Alpha [c0-1-ffffffff].", "unknown passage"),
                          ("No citations at all.", "without a citation")]:
        with pytest.raises(ValueError, match=message):
            summarizer._parse(text, by_id)


def test_a_tool_past_its_deadline_answers_with_an_error() -> None:
    import time

    slow = agreement_tools()
    slow.timeout_s = 0.2
    slow._tools["read_page"] = (slow._tools["read_page"][0], "slow", lambda args: time.sleep(1))
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"took longer than 0\.2 s"):
        slow.call("read_page", '{"page": 1}')
    assert time.monotonic() - started < 0.9


def test_a_document_chunked_again_differently_is_not_answered_from_its_old_chunks(
        tmp_path) -> None:
    """Tool results are cached per document; chunked again (another PDF engine, other chunk
    sizes) its tools answer from the new chunks, and every citation exists."""
    store = DocumentStore(tmp_path)
    paged = PagedText(sorted(AGREEMENT_PAGES.items()))
    for size in (200, 90):
        chunks = chunk_text(AGREEMENT_ID, paged, ChunkingConfig(chunk_size=size, chunk_overlap=0))
        client = ModelClient(OfflineBackend(), store, DocumentLedger(Pricing(), 0, None))
        findings = FindingsAgent(client, DocumentTools(chunks, AGREEMENT_PAGES), DEFAULT_FIELDS,
                                 AgentLimits(), AGREEMENT_ID).run()
        ids = {c.id for c in chunks}
        assert all(c in ids for answer in findings.fields.values() for c in answer.citations)
