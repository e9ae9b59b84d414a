"""Structured log lines: one JSON object a line, the same fields in every process (the HTTP
API, the sensors in the code server, the run workers, the command line), so one document can
be followed across them by its id.

Off unless DOC_RUNS_LOG_FORMAT says `json` (or `text`: the same facts as key=value); lines
go to standard error, where Dagster, containers and systemd collect them. DOC_RUNS_LOG_LEVEL
sets the level (INFO). Dagster's own records that pass through the handler (its `dagster`
logger, with `python_logs` set in dagster.yaml) carry their run and step too."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIELDS = ("run_id", "document_id", "tenant", "stage", "attempt", "duration_ms", "outcome",
          "reason")
FACTS_LOGGER = "doc_runs.facts"
_FACTS_ATTRIBUTE = "doc_runs_facts"

facts = logging.getLogger(FACTS_LOGGER)
_configured: list[logging.Handler] = []
_configure_lock = threading.Lock()


def facts_enabled(level: int = logging.INFO) -> bool:
    """Whether structured lines at `level` go anywhere: callers skip gathering facts when
    not."""
    return facts.isEnabledFor(level) and bool(_configured or facts.hasHandlers())


def log_fact(message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """One structured line: `fields` among FIELDS (and any other facts worth a column)."""
    if facts.isEnabledFor(level):
        facts.log(level, message, extra={_FACTS_ATTRIBUTE: fields})


def process_role(argv: list[str] | None = None) -> str:
    """What this process is in a deployment, from its command line."""
    args = argv if argv is not None else sys.argv
    command = os.path.basename(args[0]) if args else ""
    joined = " ".join(args[:4])
    # `python -m doc_runs.cli` leaves the path of the package's __main__.py in argv[0].
    run_as_module = bool(args) and Path(args[0]).parts[-3:] == ("doc_runs", "cli", "__main__.py")
    if command == "doc-runs" or run_as_module or "doc_runs.cli" in joined:
        return "api" if args[1:2] == ["api"] else "cli"
    for marker, role in (("execute_run", "run_worker"), ("resume_run", "run_worker"),
                         ("execute_step", "step_worker"), ("api grpc", "code_server"),
                         ("code-server", "code_server"), ("dagster-daemon", "daemon"),
                         ("dagster-webserver", "webserver")):
        if marker in joined:
            # A code server runs each run in a child it spawns, which inherits its command
            # line.
            if role == "code_server" and multiprocessing.parent_process() is not None:
                return "run_worker"
            return role
    return command or "python"


class JsonLineFormatter(logging.Formatter):
    """A record as one JSON object: time, level, the FIELDS (null where a record has none),
    message, logger, process role and pid, and any further facts."""

    def __init__(self, role: str | None = None) -> None:
        super().__init__()
        self.role = role or process_role()

    def facts_of(self, record: logging.LogRecord) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            **dict.fromkeys(FIELDS),
        }
        # Dagster's log manager puts the run and step on each record it emits.
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            line["run_id"] = meta.get("run_id")
            line["stage"] = meta.get("step_key")
        line.update(getattr(record, _FACTS_ATTRIBUTE, None) or {})
        line["message"] = record.getMessage()
        line["logger"] = record.name
        line["process"] = self.role
        line["pid"] = record.process
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return line

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.facts_of(record), ensure_ascii=False, default=str)


class KeyValueFormatter(JsonLineFormatter):
    """The same facts as `key=value` words, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = self.facts_of(record)
        message = line.pop("message")
        words = [f"{key}={json.dumps(value, default=str)}" for key, value in line.items()
                 if value is not None]
        return f"{' '.join(words)} message={json.dumps(message, ensure_ascii=False)}"


def configure_logging(log_format: str, log_level: str, role: str | None = None) -> bool:
    """Sends the doc_runs loggers' records to standard error in `log_format` (json, text or
    off: the settings' DOC_RUNS_LOG_FORMAT); once per process. Returns whether structured logs
    are on."""
    if log_format == "off":
        return False
    formatters = {"json": JsonLineFormatter, "text": KeyValueFormatter}
    level = logging.getLevelName(log_level)
    with _configure_lock:
        if _configured:
            return True
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatters[log_format](role))
        package = logging.getLogger("doc_runs")
        package.addHandler(handler)
        package.setLevel(level)
        # Its lines are complete here; a root handler (Dagster's, a framework's) would print
        # them a second time in another shape.
        package.propagate = False
        _configured.append(handler)
    return True


def log_run_requested(initiator: str, run_key: str, document_ids: list[str],
                      tenant: str | None) -> None:
    """A line per document a sensor or schedule asked a run for (the run's id is not known
    yet: its lines carry the same document id and the run key is its `dagster/run_key` tag)."""
    if not facts_enabled():
        return
    for document_id in document_ids:
        log_fact(f"{initiator} requested a run for document {document_id}",
                 document_id=document_id, tenant=tenant, stage=initiator,
                 outcome="run_requested", run_key=run_key, documents_in_run=len(document_ids))
