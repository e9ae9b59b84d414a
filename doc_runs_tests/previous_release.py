"""A home made by the previous release (a dynamic partition per document), made by that
release's own code: its tree is taken from git history and run beside this one (same
virtualenv, its package first on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The last commit before documents became batches (the release whose homes `doc-runs upgrade`
# carries over).
PREVIOUS_RELEASE = "fb54adf810e0fd5826db3d45e853b7007e3ca8df"


def previous_release_tree(into: Path) -> Path:
    """The previous release's package, deploy files and project markers, under `into`."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", PREVIOUS_RELEASE,
             "doc_runs", "deploy", "pyproject.toml", "workspace.yaml"],
            capture_output=True, check=True, timeout=120).stdout
    except (OSError, subprocess.CalledProcessError) as failed:
        detail = getattr(failed, "stderr", b"") or b""
        raise AssertionError(
            f"the upgrade test runs the previous release ({PREVIOUS_RELEASE[:12]}) from this "
            "checkout's git history, which is not available here (a shallow clone or an "
            f"unpacked archive?): {failed} {detail.decode(errors='replace')}") from None
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@dataclass
class OldHome:
    succeeded: str  # document ids, by the state the previous release left them in
    quarantined: str
    failed: str
    pending: str
    failed_run: str  # the run that failed (in document_chunks)
    names: dict[str, str]


_SENSORS = textwrap.dedent("""
    import json, sys
    from dagster import DagsterInstance, build_sensor_context
    import doc_runs
    assert doc_runs.__file__.startswith(sys.argv[1]), doc_runs.__file__
    from doc_runs.definitions import defs
    from doc_runs.defs.events_sensor import outcome_events_sensor
    from doc_runs.defs.sensors import inbox_sensor
    resources = defs.resources
    with DagsterInstance.get() as instance:
        # The events sensor records the failed run's documents as failed.
        with build_sensor_context(instance=instance, resources={
                k: resources[k] for k in ("document_store", "queue")}) as context:
            outcome_events_sensor(context)
        # The inbox sensor registers a new file; its run is never made (no daemon): a
        # registered, pending document. The daemon would add the partitions the tick asks.
        with build_sensor_context(instance=instance, resources={
                k: resources[k] for k in ("document_store", "inbox", "extraction")}) as context:
            result = inbox_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions("documents", list(request.partition_keys))
        print(json.dumps([k for r in result.dynamic_partitions_requests
                          for k in r.partition_keys]))
""")


def make_old_home(project: Path, old_tree: Path, text_pdf: bytes) -> OldHome:
    """With the previous release, in the project's home and store: a run that succeeded for
    one document and quarantined another, a run that failed in document_chunks (its document
    then recorded `failed` by the events sensor), and a document the inbox registered whose
    run never started."""
    env = {**os.environ, "PYTHONPATH": str(old_tree), "DOC_RUNS_STAGE_RETRIES": "0"}

    def old(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "doc_runs.cli", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=600)

    (project / "old-in").mkdir()
    (project / "old-in" / "good report.pdf").write_bytes(text_pdf)
    (project / "old-in" / "broken scan.pdf").write_bytes(b"%PDF-1.7\n" + b"1 0 obj <<" * 50)
    first = old("process", str(project / "old-in"), "--json", "--no-report")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = {Path(line["path"]).name: line for line in map(json.loads, first.stdout.splitlines())}

    (project / "old-fail").mkdir()
    (project / "old-fail" / "stuck note.md").write_text("# Stuck\n\n- It fails in chunking.\n")
    blocker = project / "data" / "store" / "artifacts" / "document_chunks"
    blocker.rename(blocker.with_name("chunks-aside"))
    blocker.write_text("in the way")
    failed = old("process", str(project / "old-fail"), "--json", "--no-report")
    blocker.unlink()
    blocker.with_name("chunks-aside").rename(blocker)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (stuck,) = map(json.loads, failed.stdout.splitlines())

    (project / "data" / "inbox" / "waiting memo.txt").write_text(
        "A memo that waits for its run. Two sentences.")
    time.sleep(2.5)  # the inbox takes a file once it has not changed for 2 s
    sensors = subprocess.run([sys.executable, "-c", _SENSORS, str(old_tree)], cwd=project,
                             env=env, capture_output=True, text=True, timeout=300)
    assert sensors.returncode == 0, sensors.stderr
    (pending,) = json.loads(sensors.stdout.strip().splitlines()[-1])
    good, bad = lines["good report.pdf"], lines["broken scan.pdf"]
    assert (good["status"], bad["status"], bad["reason"]) == ("succeeded", "quarantined",
                                                              "corrupt")
    return OldHome(
        succeeded=good["document_id"], quarantined=bad["document_id"],
        failed=stuck["document_id"], pending=pending, failed_run=stuck["run_id"],
        names={good["document_id"]: "good report.pdf", bad["document_id"]: "broken scan.pdf",
               stuck["document_id"]: "stuck note.md", pending: "waiting memo.txt"})
