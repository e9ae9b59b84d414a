"""The queue with the daemon up, as `bin/up` runs it (`dagster dev`, SQLite, the real Redis):
submit-to-run-start latency over N submissions spread over time, then the longest queue
sensor tick with 10,000 messages waiting (every tenth one poison).

    .venv/bin/python bench/queue_latency.py [--submissions 50] [--messages 10000]

Needs a Redis at DOC_RUNS_REDIS_URL (default redis://127.0.0.1:6379/0); uses a key prefix of
its own and deletes it afterwards. Prints a table and writes bench/out/queue_latency.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from dagster import DagsterInstance, DagsterRunStatus  # noqa: E402

from doc_runs.auth import load_secrets  # noqa: E402
from doc_runs.core.catalog import DocumentCatalog  # noqa: E402
from doc_runs.core.store import DocumentStore  # noqa: E402
from doc_runs.defs.partitions import run_documents  # noqa: E402
from doc_runs.defs.resources import instance_catalog_url  # noqa: E402
from doc_runs.defs.tags import TRIGGER_TAG  # noqa: E402
from doc_runs.queue.envelope import UploadRef, build_envelope  # noqa: E402
from doc_runs.queue.producer import ENVELOPE_FIELD, enqueue  # noqa: E402
from doc_runs.queue.streams import StreamNames  # noqa: E402
from doc_runs_tests.live import (  # noqa: E402
    dagster_answers,
    start_detached,
    stop_detached,
    wait_until,
)
from doc_runs_tests.servers import free_port  # noqa: E402

KEYS = "bench=bench-signing-key"


def run_of(instance: DagsterInstance, catalog: DocumentCatalog) -> dict[str, object]:
    """Each document's queue-started run record."""
    covered: dict[str, object] = {}
    for record in instance.get_run_records():
        tags = record.dagster_run.tags
        if tags.get(TRIGGER_TAG) != "queue":
            continue
        for key in run_documents(catalog, tags):
            covered.setdefault(key, record)
    return covered


def queue_sensor_ticks(instance: DagsterInstance, after: float) -> list[float]:
    (state,) = [s for s in instance.all_instigator_state() if s.name == "queue_sensor"]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
    return [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]


def measure_queue(submissions: int, messages: int, seed: int = 7, keep: bool = False
                  ) -> dict[str, object]:
    """Submit-to-run-start latency over `submissions` and the longest queue sensor tick with
    `messages` waiting, with `dagster dev` up on a project folder of its own."""
    rng = random.Random(seed)
    args = argparse.Namespace(submissions=submissions, messages=messages, keep=keep)

    project = Path(tempfile.mkdtemp(prefix="doc-runs-queue-bench-"))
    home = project / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    shutil.copyfile(ROOT / "workspace.yaml", project / "workspace.yaml")
    redis_url = os.environ.get("DOC_RUNS_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    os.environ.update({
        "DAGSTER_HOME": str(home), "DOC_RUNS_STORE_DIR": str(project / "store"),
        "DOC_RUNS_REPORTS_DIR": str(project / "reports"),
        "DOC_RUNS_INBOX_DIR": str(project / "inbox"), "DOC_RUNS_REDIS_URL": redis_url,
        "DOC_RUNS_STREAM_PREFIX": prefix, "DOC_RUNS_SIGNING_KEYS": KEYS,
    })
    client = redis.Redis.from_url(redis_url)
    names = StreamNames(prefix)
    secrets = load_secrets({"DOC_RUNS_SIGNING_KEYS": KEYS})
    store = DocumentStore(project / "store")
    port = free_port()
    server = start_detached(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)], project, project / "dagster.log")
    results: dict[str, object] = {"submissions": args.submissions, "messages": args.messages}
    try:
        wait_until(lambda: dagster_answers(port), 180, "the Dagster webserver")
        time.sleep(10)  # the daemon's first ticks
        with DagsterInstance.get() as instance:
            # 1. Submissions spread over time, as producers send them.
            sent: dict[str, float] = {}
            for i in range(args.submissions):
                text = f"Submission {i}. A short note to process. It has two sentences."
                document_id = store.put_bytes(text.encode(), "bench")
                envelope = build_envelope(secrets, tenant="bench", idempotency_key=f"s-{i}",
                                          document=UploadRef(kind="upload",
                                                             document_id=document_id))
                entry = enqueue(client, names, envelope)
                sent[document_id] = int(entry.split("-")[0]) / 1000
                time.sleep(rng.uniform(0.2, 2.0))

            def all_started():
                with DocumentCatalog(instance_catalog_url(instance)) as catalog:
                    covered = run_of(instance, catalog)
                started = {k: covered[k] for k in sent
                           if k in covered and covered[k].start_time}  # type: ignore[attr-defined]
                return started if len(started) == len(sent) else None

            started = wait_until(all_started, 600, "every submission's run to start")
            latencies = sorted(started[k].start_time - t for k, t in sent.items())  # type: ignore[attr-defined]
            # Where the time goes: until the sensor requested the run, then until it started.
            requested = sorted(started[k].create_timestamp.timestamp() - t  # type: ignore[attr-defined]
                               for k, t in sent.items())
            results["requested_median_s"] = round(statistics.median(requested), 2)
            results["latency_median_s"] = round(statistics.median(latencies), 2)
            # Nearest rank: the smallest latency at or above 95% of them.
            rank = math.ceil(0.95 * len(latencies)) - 1
            results["latency_p95_s"] = round(latencies[rank], 2)
            results["latency_max_s"] = round(latencies[-1], 2)
            results["runs_for_submissions"] = len({r.dagster_run.run_id  # type: ignore[attr-defined]
                                                   for r in started.values()})

            # 2. A backlog: every tenth message poison, the rest over 100 documents.
            uploads = [store.put_bytes(f"Backlog document {i}. Two sentences.".encode(),
                                       "bench") for i in range(100)]
            backlog_from = time.time()
            pipeline = client.pipeline(transaction=False)
            for i in range(args.messages):
                if i % 10 == 9:
                    pipeline.xadd(names.documents, {ENVELOPE_FIELD: f'{{"poison": {i}}}'})
                    continue
                envelope = build_envelope(secrets, tenant="bench", idempotency_key=f"b-{i}",
                                          document=UploadRef(kind="upload",
                                                             document_id=uploads[i % 100]))
                pipeline.xadd(names.documents,
                              {ENVELOPE_FIELD: envelope.model_dump_json().encode()})
            answers_ = pipeline.execute()
            last_entry = answers_[-1].decode() if answers_ else None
            results["backlog_enqueue_s"] = round(time.time() - backlog_from, 2)

            def caught_up():
                (state,) = [s for s in instance.all_instigator_state()
                            if s.name == "queue_sensor"]
                cursor = state.instigator_data.cursor if state.instigator_data else None
                return cursor == last_entry

            if last_entry:
                wait_until(caught_up, 600, "the queue sensor to reach the end of the backlog")
                # A tick that started just before the backlog was written can still read it
                # (its read comes after its start): look a little further back. Earlier idle
                # ticks are short and cannot raise the longest.
                ticks = queue_sensor_ticks(instance, backlog_from - 10)
                results["backlog_ticks"] = len(ticks)
                results["longest_tick_s"] = round(max(ticks), 2) if ticks else None
            results["dead_letters"] = client.xlen(names.dead_letters)
            results["failed_runs"] = sum(1 for r in instance.get_runs()
                                         if r.status == DagsterRunStatus.FAILURE)
    finally:
        stop_detached(server, 60)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        if args.keep:
            print(f"kept {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the project folder and log")
    parser.add_argument("--json-out", type=Path,
                        default=ROOT / "bench" / "out" / "queue_latency.json")
    args = parser.parse_args()
    results = measure_queue(args.submissions, args.messages, args.seed, args.keep)
    print("| figure | value |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value} |")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
