"""The openai backend against a real chat-completions server on 127.0.0.1 that injects the
failures that come first in production. Each ends in its documented outcome, with the
request counts that prove there are no blind retries."""

import json
import time

import pytest
from dagster import DagsterEventType, instance_for_test

from doc_runs.core.store import DocumentStore
from doc_runs_tests.batches import execute, load_defs, records, run_tags
from doc_runs_tests.chat_server import ScriptedChatServer, point_doc_runs_at

NOTE = ("# Supply note\n\nNorthwind Traders Ltd supplies Contoso GmbH from 1 March 2026. "
        "The fee is EUR 900 a month. Either party may end the deal with 30 days notice.\n")


def first(kind):
    return lambda body, n: kind if n == 1 else None


def on(number, kind):
    return lambda body, n: kind if n == number else None


def always(kind):
    return lambda body, n: kind


def tool_requests_only(kind):
    return lambda body, n: kind if body.get("tools") else None


@pytest.fixture
def server():
    with ScriptedChatServer() as running:
        yield running


@pytest.fixture
def openai_env(project, server, monkeypatch):
    point_doc_runs_at(server, monkeypatch)
    monkeypatch.setenv("DOC_RUNS_MODEL_TIMEOUT_S", "1")
    monkeypatch.setenv("DOC_RUNS_STAGE_RETRIES", "2")
    monkeypatch.setenv("DOC_RUNS_RETRY_DELAY_S", "0.2")
    monkeypatch.setenv("DOC_RUNS_AGENT_MAX_STEPS", "4")
    return project




def add(instance, project, texts):
    store = DocumentStore(project / "data" / "store")
    ids = []
    for i, text in enumerate(texts):
        document_id = store.put_bytes(text.encode())
        store.add_source_name(document_id, f"note-{i}.md")
        ids.append(document_id)
    return store, ids


def run(defs, instance, project, ids):
    return execute(defs, instance, run_tags(instance, project, ids), raise_on_error=False)


# (fault rule, final status, reason, requests the server received)
CASES = {
    "latency": (first("latency:0.3"), "succeeded", None, 4),
    "429_retry_after": (first("429:1"), "succeeded", None, 5),
    "500_once": (first("500"), "succeeded", None, 5),
    "hang_past_timeout": (first("hang:3"), "succeeded", None, 5),
    "trickles_past_timeout": (first("trickle:20"), "succeeded", None, 5),
    "truncated_once": (first("truncated_args"), "succeeded", None, 5),
    "invalid_json_args": (first("invalid_json_args"), "succeeded", None, 5),
    "unknown_tool": (first("unknown_tool"), "succeeded", None, 4),
    "wrong_argument_type": (first("wrong_arg_type"), "succeeded", None, 4),
    "citation_that_does_not_exist": (on(2, "bad_citation"), "succeeded", None, 5),
    "truncated_always": (tool_requests_only("truncated_args"), "quarantined",
                         "invalid_tool_payload", 3),
    "empty_choices": (first("empty_choices"), "quarantined", "model_error", 1),
    "ten_megabyte_response": (first("huge"), "quarantined", "model_error", 1),
    "never_stops_calling_tools": (always("keep_calling_tools"), "quarantined", "step_limit", 4),
    "401": (first("401"), "quarantined", "model_auth", 1),
    "404_unknown_model": (first("404"), "quarantined", "model_error", 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fault_ends_in_documented_outcome(case, openai_env, server) -> None:
    rule, status, reason, expected_requests = CASES[case]
    server.fault = rule
    defs = load_defs()
    with instance_for_test() as instance:
        _store, (doc,) = add(instance, openai_env, [NOTE])
        started = time.monotonic()
        result = run(defs, instance, openai_env, [doc])
        elapsed = time.monotonic() - started
        assert result.success
        final = records(instance, doc)["document_summary"]
        assert (final["status"], final["reason"]) == (status, reason), final
        assert len(server.requests) == expected_requests
        findings = json.loads(next(
            (openai_env / "data" / "store" / "artifacts" / "document_findings").rglob("*.json")
        ).read_text())
        if status == "quarantined":
            assert findings["findings"] is None  # nothing partial is written
            assert final["detail"]
        else:
            assert set(findings["findings"]["fields"]) >= {"title", "parties", "key_points"}
        retries = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        if case in ("429_retry_after", "500_once", "hang_past_timeout",
                    "trickles_past_timeout"):
            assert len(retries) == 1
        else:
            assert not retries
    if case == "429_retry_after":
        assert elapsed >= 1.0  # waited what Retry-After said
    if case == "trickles_past_timeout":
        # The 1 s limit covers the whole call: the server would have trickled for 8 s.
        assert elapsed < 6
    if case.startswith("truncated") or case in ("invalid_json_args",):
        # A re-prompt asks for something smaller; the same request is never sent twice.
        assert "cut off" in json.dumps(server.requests[1]["messages"])
        bodies = [json.dumps(r, sort_keys=True) for r in server.requests]
        assert len(set(bodies)) == len(bodies)
    if case in ("unknown_tool", "wrong_argument_type"):
        tool_message = next(m for m in server.requests[1]["messages"] if m["role"] == "tool")
        assert tool_message["content"].startswith("error:")


def test_persistent_5xx_fails_the_step_after_its_retries(openai_env, server) -> None:
    server.fault = always("500")
    defs = load_defs()
    with instance_for_test() as instance:
        _store, (doc,) = add(instance, openai_env, [NOTE])
        result = run(defs, instance, openai_env, [doc])
        assert not result.success
        assert len(server.requests) == 3  # one attempt and two retries, nothing more
        assert "document_summary" not in records(instance, doc)
        assert not list((openai_env / "data" / "store" / "artifacts").rglob(
            "document_findings/*/*.json"))


def test_document_token_budget_stops_the_work(openai_env, server, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_DOCUMENT_TOKEN_BUDGET", "50")
    defs = load_defs()
    with instance_for_test() as instance:
        store, (doc,) = add(instance, openai_env, [NOTE])
        assert run(defs, instance, openai_env, [doc]).success
        final = records(instance, doc)["document_summary"]
        assert (final["status"], final["reason"]) == ("quarantined", "budget_exceeded")
        assert len(server.requests) == 1
        (row,) = [r for r in store.read_ledger(doc) if r["kind"] == "model"]
        assert row["tokens_in"] > 0 and not row["cached"]


def test_run_token_budget_quarantines_the_rest(openai_env, server, monkeypatch) -> None:
    monkeypatch.setenv("DOC_RUNS_RUN_TOKEN_BUDGET", "400")
    defs = load_defs()
    with instance_for_test() as instance:
        _store, ids = add(instance, openai_env, [NOTE, NOTE.replace("Northwind", "Southwind"),
                                                NOTE.replace("Northwind", "Eastwind")])
        assert run(defs, instance, openai_env, ids).success
        reasons = [records(instance, i)["document_summary"]["reason"] for i in ids]
        assert "budget_exceeded" in reasons


def test_reexecution_resends_no_completed_model_call(openai_env, server, monkeypatch) -> None:
    from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

    from doc_runs_tests.batches import document_pipeline_job

    monkeypatch.setenv("DOC_RUNS_STAGE_RETRIES", "0")
    # Document BETA's submit call fails (server error) until the operator fixes the server.
    server.fault = lambda body, n: (
        "500" if "BETA" in json.dumps(body) and any(m["role"] == "tool" for m in body["messages"])
        else None)
    with DagsterInstance.get() as instance:
        store, ids = add(instance, openai_env, [NOTE, NOTE.replace("Northwind", "BETA")])
        job = reconstructable(document_pipeline_job)
        tags = run_tags(instance, openai_env, ids)
        with execute_job(job, instance=instance, tags=tags, raise_on_error=False) as failed:
            assert not failed.success
        answered = {json.dumps(body, sort_keys=True)
                    for body, status in zip(server.requests, server.statuses, strict=True)
                    if status == 200}
        before = len(server.requests)
        server.fault = lambda body, n: None
        options = ReexecutionOptions.from_failure(failed.run_id, instance)
        with execute_job(job, instance=instance, tags=tags, reexecution_options=options) as ok:
            assert ok.success
        resent = [json.dumps(b, sort_keys=True) for b in server.requests[before:]]
        assert not answered & set(resent)  # zero completed calls paid for twice
        # BETA's submit (1) and both summaries (map + reduce each: 4).
        assert len(resent) == 5
        ledger = [r for i in ids for r in store.read_ledger(i)
                  if r["run_id"] == ok.run_id and r["kind"] == "model"]
        assert sum(r["cached"] for r in ledger) == 3  # ALPHA's two calls, BETA's search call


def test_llm_stages_are_in_the_llm_pool(openai_env) -> None:
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    for name in ("document_findings", "document_summary"):
        (node,) = [n for n in graph.asset_nodes if n.key.path == [name]]
        assert node.pools == {"llm"}


def test_a_call_abandoned_at_its_deadline_releases_its_thread_and_connection(server) -> None:
    """The server trickles one byte every 0.4 s, so no read ever times out: the call is
    abandoned at its 1 s limit, and its connection and thread must go with it rather than
    wait for the server (8 s here; for ever for a server that never stops)."""
    from doc_runs.core.agent.backends import OpenAIBackend, model_calls_in_flight
    from doc_runs.core.agent.protocol import ChatRequest, ModelUnavailable

    server.fault = first("trickle:20")
    backend = OpenAIBackend(server.url, "", "test-model", timeout_s=1.0)
    request = ChatRequest(backend="openai", model="test-model",
                          messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(ModelUnavailable, match="within 1 s"):
        backend.complete(request)
    abandoned = time.monotonic()
    deadline = abandoned + 3
    while (model_calls_in_flight() or not server.hung_up) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model_calls_in_flight() == 0
    # The server's next write after the abandon failed: the connection was shut down.
    assert server.hung_up and server.hung_up[0] - abandoned < 1.5


def test_every_call_shares_one_tls_context() -> None:
    """Loading the CA certificates cost more CPU than the rest of a model call: every call's
    client (its transport and the pool that replaces the transport's) uses the same one."""
    from doc_runs.core.agent.abandonable_http import abandonable_client, shared_ssl_context

    contexts = set()
    for _ in range(3):
        client, _sockets = abandonable_client(5.0)
        with client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            contexts.add(id(pool._ssl_context))
    assert contexts == {id(shared_ssl_context())}
