"""The doc-runs command. Thin: it stores the inputs, starts runs on the configured Dagster
instance and reports what the runs recorded.

One module per command group (process, submit, dlq, tenant, api, operate, status), each
adding its commands to the parser with `add_commands`; below them instance (the operator's
Dagster instance and catalog), runs (launching and waiting), progress (bars and the table),
and common at the bottom (exit codes, the problems that end a command, messages, inputs).
Imports go downwards only: no module imports this package or a module that imports it back
(doc_runs_tests/test_cli_package.py checks).

An import sits inside a function only where it defers a heavy one (Dagster, SQLAlchemy,
redis, uvicorn, pandas, or a doc_runs module that loads one), so that `doc-runs --help` and
`doc-runs submit` do not load Dagster; every other import is at the top of its module."""

from __future__ import annotations

import argparse
import os
import sys

from doc_runs.cli import api, dlq, operate, process, status, submit, tenant
from doc_runs.cli.common import EXIT_OK, EXIT_USAGE, ConfigurationProblem, say
from doc_runs.settings import SettingsError, load_settings

# In the order `doc-runs --help` lists them.
GROUPS = (process, submit, dlq, tenant, api, operate, status)


def build_parser() -> argparse.ArgumentParser:
    # The first paragraph above: what the command is.
    parser = argparse.ArgumentParser(prog="doc-runs", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Every command checks every setting: a bad one is said the same way everywhere.
        args.settings = load_settings()
    except SettingsError as problem:
        say(f"configuration: {problem}")
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except ConfigurationProblem as problem:
        say(f"configuration: {problem}")
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (`| head`) stopped reading; what it did not read is not an error of ours.
        # (Before the clause below: a BrokenPipeError is an Exception too.)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as problem:
        from doc_runs.core.catalog import CatalogUnavailable

        if not isinstance(problem, CatalogUnavailable):
            raise
        say(str(problem))
        return EXIT_USAGE
