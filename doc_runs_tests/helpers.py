"""Helpers the test modules share: a test module imports from here (or another helper
module), never from another test module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
    SensorResult,
    build_sensor_context,
)
from dagster._core.events import DagsterEvent
from dagster._core.events.log import EventLogEntry

from doc_runs.core.agent.tools import DocumentTools
from doc_runs.core.chunking import ChunkingConfig, PagedText, chunk_text
from doc_runs.core.store import DEFAULT_TENANT, document_hasher
from doc_runs.queue.consumer import Claim, claim_idempotency_keys
from doc_runs.queue.streams import StreamNames
from doc_runs_tests.live import dagster_answers, start_detached, stop_dagster_dev, wait_until
from doc_runs_tests.servers import free_port

if TYPE_CHECKING:
    from doc_runs_tests.api_tests.conftest import ApiUnderTest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCAL_INSTANCE = PROJECT_ROOT / "deploy" / "dagster.local.yaml"
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


# -- the command line --

def doc_runs(project: Path, *args: str, dagster_yaml: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """`doc-runs ARGS` run in the project folder as a user runs it, on the local instance
    (or `dagster_yaml`)."""
    (project / "dagster_home" / "dagster.yaml").write_text(
        dagster_yaml or LOCAL_INSTANCE.read_text())
    return subprocess.run(
        [sys.executable, "-m", "doc_runs.cli", *args],
        cwd=project, env=os.environ.copy(), capture_output=True, text=True, timeout=600,
    )


def instance_day(run_ids: set[str]) -> str:
    """The day partition the runs went into (one day: the command makes its batches now)."""
    with DagsterInstance.get() as instance:
        (day,) = {instance.get_run_by_id(r).tags["dagster/partition"] for r in run_ids}
    return day


# -- `dagster dev` and its webserver --

class DagsterDev:
    """`dagster dev` (webserver, daemon, code server) on the test's project folder."""

    def __init__(self, project: Path, dagster_yaml: str | None = None) -> None:
        self.project = project
        self.port = free_port()
        shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
        # The local default's instance (run monitoring and run retries on) unless told.
        (project / "dagster_home" / "dagster.yaml").write_text(
            dagster_yaml or LOCAL_INSTANCE.read_text())
        self.log = project / "dagster-dev.log"
        self.process = start_detached(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(self.port)], project, self.log)

    def __enter__(self) -> DagsterDev:
        wait_until(lambda: dagster_answers(self.port), 180, "the Dagster webserver")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_dagster_dev(self.process, self.project)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def graphql(port: int, query: str, variables: dict) -> dict:
    """The webserver's answer to a GraphQL request, as the UI sends it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as refused:  # a query the schema rejects: its errors
        return json.loads(refused.read())


def started_run(instance: DagsterInstance) -> DagsterRun | None:
    """A document run that has started, if any."""
    runs = instance.get_runs(RunsFilter(job_name="document_pipeline",
                                        statuses=[DagsterRunStatus.STARTED]))
    return runs[0] if runs else None


def ended_run(instance: DagsterInstance, run_id: str) -> DagsterRun | None:
    """The run, once it has ended."""
    current = instance.get_run_by_id(run_id)
    return current if current is not None and current.status in FINISHED else None


def step_started(instance: DagsterInstance, run_id: str, step: str) -> bool:
    """Whether the run has started that step."""
    return any(e.step_key == step for e in instance.all_logs(
        run_id, of_type=DagsterEventType.STEP_START))


# -- model calls --

def model_cache_keys(project: Path) -> set[str]:
    """The model calls that completed: each answer is cached as it arrives."""
    return {path.stem.removeprefix("model-")
            for path in (project / "data" / "store" / "cache").glob("*/model-*.json")}


def cache_key_of(body: dict, endpoint: str) -> str:
    """The cache key doc_runs gives the request the server received."""
    from doc_runs.core.agent.protocol import ChatRequest

    return ChatRequest(backend="openai", model=body["model"], messages=body["messages"],
                       tools=body.get("tools") or [], max_tokens=body["max_tokens"],
                       temperature=body["temperature"]).cache_key(endpoint)


# -- the Dagster layer in process --

def evaluate(instance, project, cursor=None, settle: float = 0.0,
             max_bytes: int = 10_000_000) -> SensorResult:
    """A tick of the inbox sensor on the project's inbox (two documents a run)."""
    from doc_runs.defs.resources import (
        CatalogResource,
        DocumentStoreResource,
        ExtractionResource,
        InboxResource,
    )
    from doc_runs.defs.sensors import inbox_sensor

    resources = {
        "document_store": DocumentStoreResource(
            root=str(project / "data" / "store"), reports_dir=str(project / "data" / "reports")
        ),
        "inbox": InboxResource(path=str(project / "data" / "inbox"), settle_seconds=settle,
                               max_documents_per_run=2),
        "extraction": ExtractionResource(max_bytes=max_bytes),
        "catalog": CatalogResource(),
    }
    with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return inbox_sensor(context)


def store_run_event(instance: DagsterInstance, run: DagsterRun, kind: DagsterEventType,
                    pid: int, seconds_ago: float = 0.0) -> None:
    """An event of the run as its process would store it, `seconds_ago`."""
    event = DagsterEvent(kind.value, job_name=run.job_name, pid=pid)
    instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="",
                                            run_id=run.run_id,
                                            timestamp=time.time() - seconds_ago,
                                            dagster_event=event))


# -- the agent --

# A two-page agreement, its id and its pages.
AGREEMENT_ID = "e" * 64
AGREEMENT_PAGES = {
    1: "Master Services Agreement. This agreement is signed on 2 March 2026 by Alpha Corp "
       "and Beta Ltd. Questions go to legal@alpha.example or https://alpha.example/terms.",
    2: "Beta Ltd pays EUR 4,000 per month. The term is two years. Either party may end it "
       "with 60 days notice. Liability is capped at the fees of one year.",
}


def agreement_tools() -> DocumentTools:
    """The agent's tools over the agreement, cut in chunks of 200 characters."""
    paged = PagedText(sorted(AGREEMENT_PAGES.items()))
    chunks = chunk_text(AGREEMENT_ID, paged, ChunkingConfig(chunk_size=200, chunk_overlap=0))
    return DocumentTools(chunks, AGREEMENT_PAGES)


# -- the store, the queue and the API --

def document_id_of(data: bytes, tenant: str = DEFAULT_TENANT) -> str:
    """The id the store gives these bytes stored for the tenant."""
    hasher = document_hasher(tenant)
    hasher.update(data)
    return hasher.hexdigest()


def claim_idempotency_key(client: redis.Redis, names: StreamNames, tenant: str, key: str,
                          entry_id: str, ttl_s: float, fingerprint: str = "") -> bool:
    """One claim, as the queue sensor makes them in bulk: True when this entry may act on
    (tenant, key), the first to claim it or the same entry read again after a failed tick."""
    (claim,) = claim_idempotency_keys(client, names, [(tenant, key, entry_id, fingerprint)],
                                      ttl_s)
    return claim is Claim.CLAIMED


def assert_nothing_left(api: ApiUnderTest, data: bytes, tenant: str = "acme",
                        blobs_before: set[str] | None = None) -> None:
    """The refused upload left nothing: no document, no owner, no temporary file, and (given
    the blobs before) no blob."""
    document_id = document_id_of(data, tenant)
    assert not api.store.has_document(document_id)
    assert api.store.owner(document_id) is None
    assert document_id not in api.store.documents_of(tenant)
    assert api.tmp_files() == []
    if blobs_before is not None:
        assert api.blobs() == blobs_before
