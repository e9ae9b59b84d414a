"""doc-runs api: serves the HTTP API (upload, status, events); the app is doc_runs.api."""

from __future__ import annotations

import argparse
from typing import Any

from doc_runs.auth import SecretsError, load_secrets
from doc_runs.cli.common import EXIT_OK, ConfigurationProblem


def api(args: argparse.Namespace) -> int:
    from doc_runs.api.server import serve  # the web stack, for this command only

    # A wrong secrets file stops the start with its message, before uvicorn starts (the
    # settings were checked as the command started).
    try:
        load_secrets(args.settings.secrets_variables())
    except SecretsError as exc:
        raise ConfigurationProblem(str(exc)) from None
    serve(args.host, args.port, args.settings)
    return EXIT_OK


def add_commands(commands: Any) -> None:
    server = commands.add_parser(
        "api", help="serve the HTTP API (upload, status, events) with uvicorn",
        description="Uploads are stored and enqueued like `doc-runs submit`; status and "
        "events are read from what the runs recorded. Tokens: DOC_RUNS_SECRETS_FILE or "
        "DOC_RUNS_API_TOKENS. OpenAPI at /openapi.json, docs at /docs.")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8000)
    server.set_defaults(handler=api)
