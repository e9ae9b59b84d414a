"""A run that fails for a real reason in its middle stage, which an operator can then fix:
what the re-execution tests (command line, GraphQL, browser) start from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from doc_runs_tests.helpers import doc_runs


def failed_cli_run(project: Path, text_pdf: bytes, monkeypatch: Any
                   ) -> tuple[list[dict[str, Any]], Path]:
    """Runs `doc-runs process` over two documents while chunking cannot write its artifacts
    (a file stands where its folder should be): the run fails in document_chunks after
    document_text succeeded. Returns the command's JSON lines and the blocking file, whose
    removal is the fix."""
    monkeypatch.setenv("DOC_RUNS_STAGE_RETRIES", "0")
    (project / "in").mkdir()
    (project / "in" / "a.pdf").write_bytes(text_pdf)
    (project / "in" / "b.md").write_text("# B\n\n- Budget approved.\n- Audit done.\n")
    blocker = project / "data" / "store" / "artifacts" / "document_chunks"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    failed = doc_runs(project, "process", str(project / "in"), "--json", "--no-report")
    assert failed.returncode == 1, failed.stderr
    return [json.loads(line) for line in failed.stdout.splitlines()], blocker
