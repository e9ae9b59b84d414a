"""Starts a code server again when its process died, for `bin/up`.

Under `dagster dev`, each code location is served by a proxy process (`dagster code-server
start`) and its child (`dagster api grpc`), the process that loads our definitions, evaluates
sensors and starts run workers. When that child dies (killed, out of memory), Dagster starts
it again only when the location is reloaded: until then every sensor tick and every run
launch fails with "Could not reach user code server", and nothing moves until someone clicks
Reload in the UI. This watchdog is that click: every few seconds it asks the webserver for
the locations' state and reloads each one whose server cannot be reached (never one whose
code fails to load: reloading does not mend that). The webserver's reload restarts the
proxy's child; the daemon talks to the same proxy, so its sensors and launches resume too.

(A proxy that died is started again by `dagster dev` itself.) Where reloads do not help,
after `GIVE_UP_AFTER` of them in a row the watchdog exits 3 ("cannot go on") and `bin/up`
stops what it started and exits 1, so that whatever runs it (a container's restart policy,
systemd) starts the deployment again; an interrupted run is then failed by the run launcher
and retried (doc_runs.defs.run_launcher). The watchdog itself, killed, is started again by
`bin/up`.

    python -m doc_runs.code_location_watchdog http://127.0.0.1:3000 [interval_s]
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass

import httpx

from doc_runs.logs import configure_logging, log_fact
from doc_runs.settings import SettingsError, load_settings

GIVE_UP_AFTER = 6
# What Dagster says of a location whose server process does not answer.
UNREACHABLE = ("DagsterUserCodeUnreachableError", "Could not reach user code server",
               "failed to connect", "Connection refused", "Socket closed")

LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message className } } } } } }
"""
RELOAD = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { locationOrLoadError { __typename
                                    ... on PythonError { message className } } }
    ... on PythonError { message } } }
"""


@dataclass(frozen=True)
class LocationState:
    name: str
    error: str | None  # the load error's class and message, None when loaded


def graphql(client: httpx.Client, url: str, query: str,
            variables: dict[str, str] | None = None) -> dict:
    answer = client.post(f"{url.rstrip('/')}/graphql",
                         json={"query": query, "variables": variables or {}})
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def location_states(client: httpx.Client, url: str) -> list[LocationState]:
    workspace = graphql(client, url, LOCATIONS)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        raise RuntimeError(f"the webserver answered {workspace['__typename']}")
    states = []
    for entry in workspace["locationEntries"]:
        found = entry.get("locationOrLoadError") or {}
        error = (f"{found.get('className') or ''}: {found.get('message') or ''}"
                 if found.get("__typename") == "PythonError" else None)
        states.append(LocationState(entry["name"], error))
    return states


def server_unreachable(state: LocationState) -> bool:
    return state.error is not None and any(mark in state.error for mark in UNREACHABLE)


def reload_location(client: httpx.Client, url: str, name: str) -> str | None:
    """Reloads the location; None when it loaded again, else why not."""
    answer = graphql(client, url, RELOAD, {"name": name})["reloadRepositoryLocation"]
    if answer["__typename"] == "PythonError":
        return answer["message"]
    if answer["__typename"] != "WorkspaceLocationEntry":
        return answer["__typename"]
    found = answer.get("locationOrLoadError") or {}
    if found.get("__typename") == "PythonError":
        return f"{found.get('className') or ''}: {found.get('message') or ''}"
    return None


class Watchdog:
    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url = url
        self.client = client
        self.failed_reloads: dict[str, int] = {}

    def check_once(self) -> bool:
        """One look at every location; False when one cannot be mended by a reload."""
        try:
            states = location_states(self.client, self.url)
        except (httpx.HTTPError, RuntimeError, ValueError):
            return True  # the webserver is starting or restarting: dagster dev watches it
        for state in states:
            if not server_unreachable(state):
                if self.failed_reloads.pop(state.name, None) is not None:
                    log_fact(f"the code server of location {state.name} answers again"
                             + (f"; the location fails to load: {state.error[:200]}"
                                if state.error else ""),
                             stage="code_server", outcome="failed" if state.error else
                             "restarted")
                continue
            failures = self.failed_reloads.get(state.name, 0)
            if failures >= GIVE_UP_AFTER:
                log_fact(f"the code server of location {state.name} could not be started "
                         f"again ({failures} reloads did not bring it back: "
                         f"{_first_line(state.error)}); stopping so the deployment is "
                         "started again", level=logging.ERROR, stage="code_server",
                         outcome="failed")
                return False
            log_fact(f"the code server of location {state.name} cannot be reached "
                     f"({_first_line(state.error)}); reloading it",
                     level=logging.WARNING, stage="code_server", outcome="restarting",
                     attempt=failures + 1)
            self.failed_reloads[state.name] = failures + 1
            # Its answer may still carry the old error: the next look says how it went.
            with contextlib.suppress(httpx.HTTPError, RuntimeError, ValueError):
                reload_location(self.client, self.url, state.name)
        return True


def _first_line(error: str | None) -> str:
    return (error or "").strip().splitlines()[0][:200] if error and error.strip() else ""


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[0]
    interval = float(argv[1]) if len(argv) == 2 else 5.0
    try:
        settings = load_settings()
    except SettingsError as problem:
        print(f"code_location_watchdog: {problem}", file=sys.stderr)
        return 3  # a setting does not mend itself: its keeper gives up
    if not configure_logging(settings.log_format, settings.log_level, "code_location_watchdog"):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s code_location_watchdog "
                            "%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per look otherwise
    with httpx.Client(timeout=60.0) as client:
        watchdog = Watchdog(url, client)
        while True:
            time.sleep(interval)
            if not watchdog.check_once():
                return 3


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
