"""What every doc-runs command shares: its exit codes, the problems that end it with a
message, how it says so, the files it is given, and the queue it writes to."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from doc_runs.project import default_stream_prefix, ensure_dagster_home
from doc_runs.queue.streams import StreamNames, connect_redis
from doc_runs.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DOCUMENT_ID = re.compile(r"[0-9a-f]{64}")


class ConfigurationProblem(Exception):
    """A setting (an environment variable, the secrets file) is wrong; the message says which."""


class SetupProblem(Exception):
    """DAGSTER_HOME or the instance's storage cannot be used; the message says why."""


def say(message: str) -> None:
    print(f"doc-runs: {message}", file=sys.stderr)


def fail(message: str, code: int = EXIT_FAILED) -> int:
    say(message)
    return code


def collect_inputs(paths: list[str]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(str(Path(folder) / n) for n in sorted(names) if not n.startswith("."))
        elif path.exists() or path.is_symlink():
            files.append(str(path))
        else:
            raise FileNotFoundError(raw)
    return files


def queue_of(settings: Settings) -> tuple[Any, StreamNames]:
    """A Redis client and the key names, as the code location's runs see them (the same
    DAGSTER_HOME, so the same Redis key prefix)."""
    ensure_dagster_home(settings.dagster_home)
    prefix = settings.stream_prefix or default_stream_prefix(settings.dagster_home)
    return connect_redis(settings.redis_url), StreamNames(prefix)
