"""The watchdog's judgement, against the webserver's GraphQL answers as Dagster gives them: it
reloads a location whose server cannot be reached, never one whose code fails to load, and
gives up (for bin/up to stop and be restarted) after six reloads that did not bring it back.
That a reload really starts a killed code server again under `bin/up` is in test_chaos.py."""

from __future__ import annotations

import json

import httpx

from doc_runs.code_location_watchdog import GIVE_UP_AFTER, Watchdog

UNREACHABLE = ("dagster._core.errors.DagsterUserCodeUnreachableError: Could not reach user "
               "code server. gRPC Error code: UNAVAILABLE")


class Webserver:
    """Answers the two GraphQL queries the watchdog sends, from `self.error`."""

    def __init__(self) -> None:
        self.error: tuple[str, str] | None = None  # (class name, message)
        self.reloads = 0

    def entry(self) -> dict:
        if self.error is None:
            return {"name": "doc_runs", "loadStatus": "LOADED",
                    "locationOrLoadError": {"__typename": "RepositoryLocation"}}
        return {"name": "doc_runs", "loadStatus": "LOADED",
                "locationOrLoadError": {"__typename": "PythonError",
                                        "className": self.error[0],
                                        "message": self.error[1]}}

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        if "reloadRepositoryLocation" in query:
            self.reloads += 1
            entry = {"__typename": "WorkspaceLocationEntry", **self.entry()}
            return httpx.Response(200, json={"data": {"reloadRepositoryLocation": entry}})
        return httpx.Response(200, json={"data": {"workspaceOrError": {
            "__typename": "Workspace", "locationEntries": [self.entry()]}}})


def watchdog_of(server: Webserver) -> Watchdog:
    client = httpx.Client(transport=httpx.MockTransport(server.handle))
    return Watchdog("http://webserver", client)


def test_a_location_whose_server_cannot_be_reached_is_reloaded_until_it_answers() -> None:
    server = Webserver()
    watchdog = watchdog_of(server)
    assert watchdog.check_once() and server.reloads == 0
    server.error = ("DagsterUserCodeUnreachableError", UNREACHABLE)
    assert watchdog.check_once() and server.reloads == 1
    server.error = None  # the reload started it again
    assert watchdog.check_once() and server.reloads == 1
    assert watchdog.failed_reloads == {}


def test_code_that_fails_to_load_is_not_reloaded() -> None:
    server = Webserver()
    server.error = ("DagsterImportError", "SyntaxError: invalid syntax (definitions.py, "
                                          "line 3)")
    watchdog = watchdog_of(server)
    for _ in range(GIVE_UP_AFTER + 2):
        assert watchdog.check_once()
    assert server.reloads == 0


def test_it_gives_up_after_reloads_that_do_not_bring_the_server_back() -> None:
    server = Webserver()
    server.error = ("DagsterUserCodeUnreachableError", UNREACHABLE)
    watchdog = watchdog_of(server)
    for _ in range(GIVE_UP_AFTER):
        assert watchdog.check_once()
    assert server.reloads == GIVE_UP_AFTER
    assert not watchdog.check_once()


def test_a_webserver_that_does_not_answer_is_left_to_dagster_dev() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    watchdog = Watchdog("http://webserver", httpx.Client(transport=httpx.MockTransport(refuse)))
    assert all(watchdog.check_once() for _ in range(GIVE_UP_AFTER + 2))
