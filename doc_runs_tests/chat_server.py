"""A real HTTP server on 127.0.0.1 that speaks the chat-completions protocol, for the tests.

By default it behaves like a small, obliging model: with tools it searches once, then submits
findings citing the chunk ids it saw; without tools it summarizes passages and then combines
them with [id] citations. A test injects faults with `server.fault = fn(request, n)`, which
returns the name of a fault for the n-th request (1-based) or None. Every request is kept.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from doc_runs_tests.servers import free_port

CHUNK_ID = re.compile(r"\bc\d+-\d+-[0-9a-f]{8}\b")
FaultRule = Callable[[dict[str, Any], int], "str | None"]


def _completion(message: dict[str, Any], finish: str, body: dict[str, Any]) -> dict[str, Any]:
    prompt = len(json.dumps(body["messages"])) // 4
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 20,
                  "total_tokens": prompt + 20},
    }


def _tool_call(name: str, arguments: str, n: int) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{n}", "type": "function",
         "function": {"name": name, "arguments": arguments}}]}


def _submit_fields(body: dict[str, Any]) -> dict[str, Any]:
    tool = next(t for t in body["tools"] if t["function"]["name"] == "submit_findings")
    return tool["function"]["parameters"]["properties"]


# What a model might write for each type: loosely, as documents write it. The loop normalizes.
LOOSE_ANSWERS: dict[str, Any] = {
    "date": "6th day of May, 2021",
    "duration": {"amount": 2, "unit": "year"},
    "money": "$1,250.50",
    "number": "twelve",
    "party": "ACME WIDGETS, INC., a Delaware corporation",
    "organization": "Acme Widgets, Inc. (the \"Company\")",
    "person": "Jane Q. Roe, Chief Executive Officer",
    "place": "the State of New York",
}


def field_type(spec: dict[str, Any]) -> str:
    return spec["items"]["properties"]["value"].get("title", "text")


def behave_like_a_model(body: dict[str, Any], n: int) -> tuple[dict[str, Any], str]:
    messages = body["messages"]
    if body.get("tools"):
        tool_results = [m["content"] for m in messages if m["role"] == "tool"]
        if not tool_results:
            return _tool_call("search_chunks", json.dumps({"query": "fee", "k": 2}), n), \
                "tool_calls"
        # Cite what the tools returned, else the chunk ids the prompt lists.
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        seen = [i for text in tool_results for i in CHUNK_ID.findall(text)]
        seen += CHUNK_ID.findall(prompt)
        answers = {
            name: [{"value": LOOSE_ANSWERS.get(field_type(spec), "found"),
                    "text": "as written", "citations": [seen[0]]}]
            if field_type(spec) != "enum" else
            [{"value": spec["items"]["properties"]["value"]["enum"][0].upper(),
              "citations": [seen[0]]}]
            for name, spec in _submit_fields(body).items()
        }
        return _tool_call("submit_findings", json.dumps(answers), n), "tool_calls"
    system = messages[0]["content"]
    user = messages[-1]["content"]
    if system.startswith("Summarize the passage"):
        first = " ".join(user.split()[:12])
        return {"role": "assistant", "content": f"{first}."}, "stop"
    lines = [line for line in user.splitlines() if line.startswith("[")]
    parts = []
    for line in lines[:3]:
        chunk_id, _, text = line[1:].partition("] ")
        parts.append(f"{text.rstrip('.')} [{chunk_id}].")
    return {"role": "assistant", "content": " ".join(parts)}, "stop"


class ScriptedChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.received_at: list[float] = []  # wall-clock time each request came in, in order
        self.statuses: list[int] = []  # HTTP status answered to each request, in order
        self.hung_up: list[float] = []  # when a client dropped a trickled answer (monotonic)
        self.fault: FaultRule = lambda body, n: None
        self._lock = threading.Lock()
        self.port = free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.received_at.append(time.time())
                    n = len(server.requests)
                server._answer(self, body, n, server.fault(body, n))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @staticmethod
    def _record_status(handler: BaseHTTPRequestHandler, status: int) -> None:
        handler.server.owner.statuses.append(status)  # type: ignore[attr-defined]

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
              headers: dict[str, str] | None = None) -> None:
        ScriptedChatServer._record_status(handler, status)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(payload)  # the client may have given up (a timeout test)

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], n: int,
                fault: str | None) -> None:
        def ok(message: dict[str, Any], finish: str) -> None:
            self._send(handler, 200, json.dumps(_completion(message, finish, body)).encode())

        def error(status: int, text: str, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps({"error": {"message": text, "type": "test", "code": status}})
            self._send(handler, status, payload.encode(), headers)

        kind, _, arg = (fault or "").partition(":")
        if kind == "latency":
            time.sleep(float(arg))
        elif kind == "hang":
            time.sleep(float(arg or 30))
            self.statuses.append(0)  # never answered in time
            return
        elif kind == "trickle":
            # Headers at once, then a byte now and then: no single read ever times out.
            payload = json.dumps(_completion({"role": "assistant", "content": "x"}, "stop",
                                             body)).encode()
            self._record_status(handler, 200)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            try:
                for i in range(min(len(payload), int(arg or 8))):
                    handler.wfile.write(payload[i:i + 1])
                    handler.wfile.flush()
                    time.sleep(0.4)
            except (BrokenPipeError, ConnectionResetError):
                self.hung_up.append(time.monotonic())  # the client let the connection go
            return
        elif kind == "429":
            return error(429, "slow down", {"Retry-After": arg or "1"})
        elif kind == "500":
            return error(500, "internal error")
        elif kind == "401":
            return error(401, "invalid api key")
        elif kind == "404":
            return error(404, "model not found")
        elif kind == "empty_choices":
            reply = _completion({"role": "assistant", "content": "x"}, "stop", body)
            reply["choices"] = []
            return self._send(handler, 200, json.dumps(reply).encode())
        elif kind == "huge":
            text = "x" * (10 * 1024 * 1024)
            return ok({"role": "assistant", "content": text}, "stop")
        elif kind == "truncated_args":
            args = json.dumps({"query": "the title of the document", "k": 3})[:17]
            return ok(_tool_call("search_chunks", args, n), "length")
        elif kind == "invalid_json_args":
            return ok(_tool_call("search_chunks", "{'query': 'title'}", n), "tool_calls")
        elif kind == "unknown_tool":
            return ok(_tool_call("delete_everything", "{}", n), "tool_calls")
        elif kind == "wrong_arg_type":
            return ok(_tool_call("search_chunks", json.dumps({"query": "x", "k": "many"}), n),
                      "tool_calls")
        elif kind == "keep_calling_tools":
            return ok(_tool_call("find_patterns", json.dumps({"kind": "dates"}), n),
                      "tool_calls")
        elif kind == "not_a_date":
            answers = {name: [{"value": "sometime soon", "citations": []}]
                       for name in _submit_fields(body)}
            return ok(_tool_call("submit_findings", json.dumps(answers), n), "tool_calls")
        elif kind == "bad_citation":
            answers = {name: [{"value": None, "citations": ["c0-1-deadbeef"]}]
                       for name in _submit_fields(body)}
            return ok(_tool_call("submit_findings", json.dumps(answers), n), "tool_calls")
        message, finish = behave_like_a_model(body, n)
        ok(message, finish)


def point_doc_runs_at(server: ScriptedChatServer, monkeypatch: Any) -> None:
    """Configure doc_runs, through its environment variables, to use `server` as its model."""
    monkeypatch.setenv("DOC_RUNS_MODEL_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("DOC_RUNS_MODEL", "scripted-model")
