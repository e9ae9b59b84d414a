"""What the same work costs against a growing past: a deployment's history of N documents
(bench/scale_history.py: written through the product's own storage paths), then `doc-runs
process` of 20 new documents, one tick of each sensor, the nightly schedule's evaluation and
the GraphQL queries the UI's asset pages make (the webserver's own queries,
doc_runs_tests/ui_queries.py), at each N; every figure divided by its value at N=0, and the
partitions per asset. On the local default (SQLite) and on PostgreSQL.

    .venv/bin/python bench/scale.py [--storage sqlite,postgresql] [--sizes 0,100000,1000000]
                                    [--per-day 5000] [--repeat 3] [--out bench/out/scale.json]
                                    [--keep] [--reuse SIZE=STATE ...]
                                    [--batch-size 50] [--process-documents 20] [--tries 5]

One deployment per N, each in a process of its own, built side by side; then --repeat rounds,
each measuring every deployment once in turn, so that the figures of two sizes are taken
minutes apart on this shared machine, not an hour. Each figure is the fastest over the rounds
(the fastest is the least disturbed); the sensor ticks, the schedule and the UI queries,
measured in milliseconds, of --tries (five) a round. --keep keeps each deployment (folder,
database, Redis keys) with its state file; --reuse measures a kept one again instead of
building it (a million documents' history takes about an hour to write). Uses the PostgreSQL
at TEST_POSTGRES_URL (else 127.0.0.1:5432, user postgres) with a database of its own, dropped
afterwards, and the Redis at DOC_RUNS_REDIS_URL (else 127.0.0.1:6379) under a key prefix of
its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_runs_tests.servers import DEFAULT_POSTGRES_URL  # noqa: E402

PROCESS_DOCUMENTS = 20  # of `doc-runs process` at each size (--process-documents)
TRIES = 5  # of each figure measured in milliseconds, a round (--tries)
TENANT = "bench"
KEYS = f"{TENANT}=bench-signing-key"


def note(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fastest(measure: Callable[[], float], repeat: int) -> float:
    return round(min(measure() for _ in range(repeat)), 4)


# -- one deployment per size, each in a process of its own (its environment set first) --
#
# The deployments of every size are built first (in parallel), then measured in turns: a
# round measures each once, one after the other, and each figure is the fastest over the
# rounds. Figures of two sizes are then taken minutes apart, not the hour that writing a
# million documents' history takes, in which this shared machine's speed moves by more than
# the target allows (the same query, touching no storage at all, read 1.8 times as long at
# the end of such an hour as at its start).

MARK = "@@scale "  # a worker's answers on its standard output (anything else is passed on)
STATE_FILE = "scale-state.json"


def worker(storage: str, size: int, per_day: int, batch_size: int,
           keep: bool = False, state: Path | None = None,
           process_documents: int = PROCESS_DOCUMENTS, tries: int = TRIES) -> None:
    """Builds (or, with `state`, takes up a kept) deployment of `size` documents' history,
    answers `ready`, then one `measure` per line read, until `done`."""
    if state is not None:
        kept = json.loads(state.read_text())
        if (kept["storage"], kept["size"]) != (storage, size):
            raise SystemExit(f"{state} is a {kept['storage']} deployment of {kept['size']} "
                             f"documents, not {storage} at {size}")
        work, env = Path(kept["work"]), kept["env"]
    else:
        work = Path(tempfile.mkdtemp(prefix=f"doc-runs-scale-{storage}-{size}-"))
        env = deployment_env(work, storage)
        kept = None
    os.environ.update(env)
    deployment = Deployment(work, storage, per_day, batch_size, process_documents, tries,
                            Answers())
    if kept is not None:
        deployment.inbox_cursor, deployment.queue_cursor = kept["cursors"]
        deployment.rounds = kept["rounds"]
    finished = False
    try:
        deployment.serve(size, grown=kept is not None)
        finished = True
    finally:
        if keep or state is not None:  # to look into or measure again: its state
            (work / STATE_FILE).write_text(json.dumps({
                "storage": storage, "size": size, "work": str(work), "env": env,
                "cursors": [deployment.inbox_cursor, deployment.queue_cursor],
                "rounds": deployment.rounds}))
            note(f"{storage} at {size}: kept in {work} ({'finished' if finished else 'failed'})"
                 f"; measure it again with --reuse {size}={work / STATE_FILE}")
        else:
            cleanup(storage, env)
            shutil.rmtree(work, ignore_errors=True)  # a SQLite history of a million: GBs


class Answers:
    """The worker's answers to its parent, on the standard output it was started with, which
    this makes its own: whatever else is printed in the worker, or by a process it starts (a
    code server logs as it stops), goes to the standard error instead. Sharing the pipe, a
    line of theirs could land inside an answer (with PYTHONUNBUFFERED, print writes a line
    and its newline apart)."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def __call__(self, payload: dict[str, Any]) -> None:
        self._out.write(MARK + json.dumps(payload) + "\n")
        self._out.flush()


def deployment_env(work: Path, storage: str) -> dict[str, str]:
    home = work / "dagster_home"
    home.mkdir(parents=True)
    for name in ("store", "reports", "inbox"):
        (work / name).mkdir()
    instance_file = "dagster.local.yaml"
    env = {"DAGSTER_HOME": str(home), "DOC_RUNS_STORE_DIR": str(work / "store"),
           "DOC_RUNS_REPORTS_DIR": str(work / "reports"),
           "DOC_RUNS_INBOX_DIR": str(work / "inbox"),
           "DOC_RUNS_SECRETS_FILE": str(work / "secrets.json"),
           "DOC_RUNS_SIGNING_KEYS": KEYS, "DOC_RUNS_INBOX_TENANT": TENANT,
           "DOC_RUNS_REDIS_URL": os.environ.get("DOC_RUNS_REDIS_URL",
                                                "redis://127.0.0.1:6379/0"),
           "DOC_RUNS_STREAM_PREFIX": f"doc_runs_scale:{uuid.uuid4().hex[:10]}:"}
    (work / "secrets.json").write_text('{"tenants": {}}')
    if storage == "postgresql":
        import psycopg2

        server = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        name = f"doc_runs_scale_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(server)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        admin.close()
        env["DAGSTER_POSTGRES_URL"] = server.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+psycopg2://", 1) + f"/{name}"
        env["BENCH_DATABASE"] = name
        instance_file = "dagster.postgres.yaml"
    (home / "dagster.yaml").write_text((ROOT / "deploy" / instance_file).read_text())
    return env


def settle(storage: str) -> None:
    """Brings the database to where a deployment that grew to this size over months would
    be: on PostgreSQL, what was just written is flushed (CHECKPOINT) and vacuumed and its
    statistics gathered (VACUUM ANALYZE, which autovacuum does over time). Measured straight
    after writing the history, the disk is still busy writing it back and autovacuum starts
    mid-measurement: figures that write (a run, a tick that registers a batch) then took up
    to a third longer at 100,000 than at 0, reads did not."""
    if storage != "postgresql":
        return
    import psycopg2

    url = os.environ["DAGSTER_POSTGRES_URL"].replace("postgresql+psycopg2://", "postgresql://")
    started = time.perf_counter()
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")
            try:
                cursor.execute("CHECKPOINT")
            except psycopg2.Error as refused:  # needs a superuser or pg_checkpoint
                note(f"{storage}: CHECKPOINT refused ({refused.pgerror}); measuring without")
    finally:
        connection.close()
    note(f"{storage}: vacuumed and checkpointed in {time.perf_counter() - started:.0f} s")


def history_writer(instance: Any, storage: str) -> Any:
    """The instance that writes the history. On PostgreSQL, one of its own: its connections
    are held open (as the webserver holds them: Dagster's storages otherwise connect once per
    event) and do not wait for each commit to reach the disk, which makes writing a million
    documents' history about twice as fast. What is written is the same; the instance that is
    measured keeps the storages' defaults, so every figure is measured as at N=0."""
    if storage != "postgresql":
        return instance
    from dagster import DagsterInstance

    url = os.environ["DAGSTER_POSTGRES_URL"]
    os.environ["DAGSTER_POSTGRES_URL"] = url + "?options=-c%20synchronous_commit%3Doff"
    try:
        writer = DagsterInstance.get()
    finally:
        os.environ["DAGSTER_POSTGRES_URL"] = url
    writer.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)
    return writer


def cleanup(storage: str, env: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(env["DOC_RUNS_REDIS_URL"])
    keys = list(client.scan_iter(match=env["DOC_RUNS_STREAM_PREFIX"] + "*"))
    if keys:
        client.delete(*keys)
    if storage == "postgresql":
        import psycopg2

        server = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        admin = psycopg2.connect(server)
        admin.autocommit = True
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{env["BENCH_DATABASE"]}" WITH (FORCE)')
        admin.close()


class Deployment:
    def __init__(self, work: Path, storage: str, per_day: int, batch_size: int,
                 process_documents: int, tries: int, answer: Answers) -> None:
        # One try a round of `process` (seconds); of the figures in milliseconds, the most
        # disturbed by a shared machine, `tries`. The caller makes the rounds.
        self.work, self.storage, self.answer = work, storage, answer
        self.tries, self.process_documents = tries, process_documents
        self.per_day, self.batch_size = per_day, batch_size
        self.inbox_cursor: str | None = None
        self.queue_cursor: str | None = None
        self.rounds = 0

    # The definitions read the environment when they load: imported only now.
    def serve(self, size: int, grown: bool) -> None:
        from dagster import DagsterInstance

        from bench.scale_history import History, RunTemplate, history_counts, template_records
        from doc_runs.core.catalog import DocumentCatalog
        from doc_runs.defs.partitions import days
        from doc_runs.defs.resources import instance_catalog_url
        from doc_runs.defs.tags import BATCH_TAG

        with DagsterInstance.get() as instance, \
                DocumentCatalog(instance_catalog_url(instance)) as catalog:
            wrote = 0.0
            if not grown:
                # The template: a real run of a batch of the sensors' size, and a report run.
                lines = self.process(self.batch_size, "template")
                document_run = instance.get_run_by_id(lines[0]["run_id"])
                report_run = next(r for r in instance.get_runs()
                                  if r.job_name == "corpus_report_job")
                writer = history_writer(instance, self.storage)
                history = History(writer, catalog, RunTemplate(instance, document_run.run_id),
                                  RunTemplate(instance, report_run.run_id),
                                  template_records(catalog, catalog.batch(
                                      document_run.tags[BATCH_TAG])),
                                  self.per_day, self.batch_size, TENANT)
                # The template's own batch counts as history from the start.
                history.documents = self.batch_size
                if size:
                    wrote = history.grow_to(max(size, self.batch_size), note)
                if writer is not instance:
                    writer.dispose()
            settle(self.storage)
            self.answer({"ready": True, "history_write_s": round(wrote, 1)})
            for line in sys.stdin:
                command = line.strip()
                if command == "measure":
                    note(f"{self.storage} at {size}: measuring")
                    self.answer({"figures": self.measure(instance, catalog)})
                elif command == "done":
                    self.answer({"partitions_per_asset": len(days.get_partition_keys()),
                            "catalog_rows": history_counts(catalog),
                            "dagster_runs": instance.get_runs_count()})
                    return
                else:
                    raise SystemExit(f"scale worker: unknown command {command!r}")

    # -- what is measured ---------------------------------------------------------------
    def measure(self, instance: Any, catalog: Any) -> dict[str, float]:
        figures: dict[str, float] = {}
        marks = []

        def process_once() -> float:
            marks.append(latest_storage_id(instance))
            started = time.perf_counter()
            self.process(self.process_documents, f"measure-{self.rounds}")
            return time.perf_counter() - started

        figures[f"process_{self.process_documents}_documents_s"] = fastest(process_once, 1)
        figures.update(self.sensor_ticks(instance, marks[-1]))
        figures["nightly_schedule_s"] = self.nightly(instance, catalog)
        figures.update(self.ui_queries(instance))
        return figures

    def process(self, count: int, label: str) -> list[dict[str, Any]]:
        self.rounds += 1
        folder = self.work / "in" / f"{label}-{self.rounds}"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"note-{i:03d}.txt").write_text(
                f"Note {i} of {label} round {self.rounds}. The quarterly report covers revenue "
                "and costs. Revenue rose by ten percent in the third quarter.\n")
        done = subprocess.run([sys.executable, "-m", "doc_runs.cli", "process", str(folder),
                               "--json", "--tenant", TENANT], capture_output=True, text=True,
                              timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"doc-runs process failed: {done.stderr[-2000:]}")
        return [json.loads(line) for line in done.stdout.splitlines()]

    def sensor_ticks(self, instance: Any, before_last_run: int) -> dict[str, float]:
        from dagster import build_sensor_context

        import doc_runs.definitions
        from doc_runs.auth import load_secrets
        from doc_runs.core.store import DocumentStore
        from doc_runs.defs.events_sensor import outcome_events_sensor
        from doc_runs.defs.queue_sensor import queue_sensor
        from doc_runs.defs.sensors import inbox_sensor, report_refresh_sensor
        from doc_runs.queue.envelope import UploadRef, build_envelope
        from doc_runs.queue.producer import enqueue
        from doc_runs.queue.streams import StreamNames
        from doc_runs.settings import Settings

        # Built from the environment as it is now (this worker changes it as it goes).
        defs = doc_runs.definitions.build_definitions(Settings.from_environ(os.environ))
        repository = defs.get_repository_def()
        secrets = load_secrets({"DOC_RUNS_SIGNING_KEYS": KEYS})
        store = DocumentStore(os.environ["DOC_RUNS_STORE_DIR"])
        import redis

        client = redis.Redis.from_url(os.environ["DOC_RUNS_REDIS_URL"])
        names = StreamNames(os.environ["DOC_RUNS_STREAM_PREFIX"])

        def tick(sensor: Any, cursor: str | None) -> tuple[float, Any]:
            with build_sensor_context(instance=instance, cursor=cursor,
                                      resources=defs.resources,
                                      repository_def=repository) as context:
                started = time.perf_counter()
                result = sensor(context)
                return time.perf_counter() - started, result

        def inbox_once() -> float:
            self.rounds += 1
            (Path(os.environ["DOC_RUNS_INBOX_DIR"]) / f"drop-{self.rounds}.txt").write_text(
                f"Dropped note {self.rounds}. It arrives in the inbox.")
            time.sleep(2.2)  # the inbox takes a file once it has not changed for 2 s
            took, result = tick(inbox_sensor, self.inbox_cursor)
            assert len(result.run_requests) == 1, result
            self.inbox_cursor = result.cursor
            return took

        def queue_once() -> float:
            self.rounds += 1
            document_id = store.put_bytes(f"Queued note {self.rounds}.".encode(), TENANT)
            enqueue(client, names, build_envelope(
                secrets, tenant=TENANT, idempotency_key=f"scale-{self.rounds}",
                document=UploadRef(kind="upload", document_id=document_id)))
            took, result = tick(queue_sensor, self.queue_cursor)
            assert len(result.run_requests) == 1, result
            self.queue_cursor = result.cursor
            return took

        def events_once() -> float:
            cursor = json.dumps({"after": before_last_run})
            return tick(outcome_events_sensor, cursor)[0]

        def report_once() -> float:
            took, result = tick(report_refresh_sensor, str(before_last_run))
            assert result.run_requests or result.skip_reason, result
            return took

        try:
            return {"inbox_sensor_tick_s": fastest(inbox_once, self.tries),
                    "queue_sensor_tick_s": fastest(queue_once, self.tries),
                    "outcome_events_sensor_tick_s": fastest(events_once, self.tries),
                    "report_refresh_sensor_tick_s": fastest(report_once, self.tries)}
        finally:
            client.close()

    def nightly(self, instance: Any, catalog: Any) -> float:
        """The schedule with the same unfinished documents at every N: a batch (of
        --process-documents) whose run was never made."""
        from dagster import build_schedule_context

        import doc_runs.definitions
        from doc_runs.core.catalog import NewDocument
        from doc_runs.core.store import DocumentStore
        from doc_runs.settings import Settings

        # Built from the environment as it is now (this worker changes it as it goes).
        defs = doc_runs.definitions.build_definitions(Settings.from_environ(os.environ))
        schedule = defs.get_repository_def().get_schedule_def("unfinished_documents_schedule")
        store = DocumentStore(os.environ["DOC_RUNS_STORE_DIR"])
        finish_leftovers(catalog)
        self.rounds += 1
        ids = [store.put_bytes(f"Unfinished {self.rounds}-{i}.".encode(), TENANT)
               for i in range(self.process_documents)]
        catalog.register_batch(f"scale-unfinished-{self.rounds}", TENANT,
                               [NewDocument(i) for i in ids], "queue")

        def once() -> float:
            with build_schedule_context(instance=instance, resources=defs.resources,
                                        scheduled_execution_time=datetime.now(UTC),
                                        repository_def=defs.get_repository_def()) as context:
                started = time.perf_counter()
                data = schedule.evaluate_tick(context)
                took = time.perf_counter() - started
            assert data.run_requests, data
            return took

        return fastest(once, self.tries)

    def ui_queries(self, instance: Any) -> dict[str, float]:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import ModuleTarget
        from dagster_graphql.test.utils import execute_dagster_graphql

        from doc_runs_tests.ui_queries import asset_page_variables, ui_queries

        queries = ui_queries()
        target = ModuleTarget(module_name="doc_runs.definitions", attribute=None,
                              working_directory=str(ROOT), location_name="doc_runs")
        figures: dict[str, float] = {}
        with WorkspaceProcessContext(instance, target) as process_context:
            for asset in ("document_summary", "corpus_report"):
                variables = asset_page_variables(asset)
                for name, query in queries.items():
                    shown: list[int] = []

                    def once(query: str = query, variables: dict = variables,
                             name: str = name, shown: list[int] = shown) -> float:
                        context = process_context.create_request_context()
                        started = time.perf_counter()
                        answer = execute_dagster_graphql(context, query, variables)
                        took = time.perf_counter() - started
                        if answer.errors:
                            raise RuntimeError(f"{name}: {answer.errors}")
                        shown.append(events_listed(answer.data))
                        return took

                    once()  # a page is opened again and again: its caches are warm
                    figures[f"ui:{asset}:{name}_s"] = fastest(once, self.tries)
                    if is_list_of_the_newest(name):
                        # The newest 100: the work per event listed, which a longer past must
                        # not change (the page lists as many as there are, up to 100).
                        figures[f"ui:{asset}:{name}_per_event_s"] = round(
                            figures[f"ui:{asset}:{name}_s"] / max(shown[-1], 1), 6)
        return figures


def finish_leftovers(catalog: Any) -> None:
    """Documents earlier measurements left unfinished (the sensors' ticks registered batches
    whose runs nobody made; the schedule's own): recorded succeeded, so that the schedule
    finds the same unfinished documents at every N."""
    from doc_runs.core.status import STAGES

    for row in catalog.unfinished():
        (batch,) = catalog.batches_of(row.document_id, limit=1)
        for stage in STAGES:
            catalog.write_stage_records(batch, stage, {row.document_id: {
                "status": "succeeded", "reason": None, "run_id": "scale-leftover"}})


def latest_storage_id(instance: Any) -> int:
    from dagster import DagsterEventType

    records = instance.fetch_run_status_changes(DagsterEventType.RUN_SUCCESS, limit=1).records
    return records[0].storage_id if records else 0


# -- the whole benchmark ----------------------------------------------------------------------

# The UI's events lists show the newest 100 events: their cost grows with the first 100 runs
# and not after, so they are compared with the middle N (its page is full), not with N=0.
LISTS_OF_THE_NEWEST = ("RecentAssetEventsQuery",)


def is_list_of_the_newest(name: str) -> bool:
    return any(query in name for query in LISTS_OF_THE_NEWEST)


def events_listed(data: Any) -> int:
    """How many events an events list answered with (0 for other queries)."""
    asset = (data or {}).get("assetOrError") or {}
    history = asset.get("assetEventHistory") or {}
    return len(history.get("results") or [])


def worst_ratio(result: dict[str, Any]) -> tuple[float, str]:
    """The largest ratio at the largest N to N=0; for an events list, of its time per event
    listed (it lists the newest 100, so its whole time follows how many exist, up to 100)."""
    sizes = list(result["sizes"])
    worst, which = 0.0, ""
    for name, value in result["sizes"][sizes[-1]]["figures"].items():
        if is_list_of_the_newest(name) and not name.endswith("_per_event_s"):
            continue
        base = result["sizes"][sizes[0]]["figures"][name]
        ratio = value / base if base else float("inf")
        if ratio > worst:
            worst, which = ratio, name
    return round(worst, 3), which


class Worker:
    """A worker process of one size, spoken to over its standard input and output."""

    def __init__(self, storage: str, size: int, args: list[str], state: Path | None) -> None:
        self.storage, self.size = storage, size
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", f"{storage}:{size}", *args,
             *(["--state", str(state)] if state else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            sys.stderr.write(line)
        raise RuntimeError(f"the {self.storage} deployment at {self.size} ended "
                           f"(exit {self.process.wait()}; its output is above)")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(600)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_scale(storages: list[str], sizes: str, per_day: int, repeat: int, batch_size: int,
              out: Path, keep: bool = False, reuse: dict[int, Path] | None = None,
              process_documents: int = PROCESS_DOCUMENTS, tries: int = TRIES
              ) -> list[dict[str, Any]]:
    """Each storage's deployments (one per size, each in a process of its own) built, then
    measured in `repeat` rounds, side by side."""
    results = []
    steps = [int(s) for s in sizes.split(",")]
    for storage in storages:
        if storage not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown storage {storage!r}: sqlite or postgresql")
        args = ["--per-day", str(per_day), "--batch-size", str(batch_size),
                "--process-documents", str(process_documents), "--tries", str(tries),
                *(["--keep"] if keep else [])]
        workers = [Worker(storage, size, args, (reuse or {}).get(size)) for size in steps]
        try:
            built = {w.size: w.read() for w in workers}
            measured: dict[int, list[dict[str, float]]] = {size: [] for size in steps}
            for round_number in range(repeat):
                # Each round in another order, so that no size is always measured first.
                turn = round_number % len(workers)
                for w in workers[turn:] + workers[:turn]:
                    measured[w.size].append(w.ask("measure")["figures"])
            result: dict[str, Any] = {"storage": storage, "per_day": per_day,
                                      "batch_size": batch_size, "rounds": repeat, "sizes": {}}
            for w in workers:
                figures = {name: round(min(r[name] for r in measured[w.size]), 6)
                           for name in measured[w.size][0]}
                result["sizes"][str(w.size)] = {
                    "history_write_s": built[w.size]["history_write_s"], "figures": figures,
                    "rounds": measured[w.size], **w.ask("done")}
                note(f"{storage} at {w.size}: {json.dumps(figures)}")
            results.append(result)
        finally:
            for w in workers:
                w.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps({"commit": commit, "results": results}, indent=1))
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        sizes = list(result["sizes"])
        base = result["sizes"][sizes[0]]["figures"]
        lines.append(f"\n{result['storage']}: history at {result['per_day']} documents a day, "
                     f"batches of {result['batch_size']}")
        header = "| figure | " + " | ".join(f"N={s}" for s in sizes) + " | " + " | ".join(
            f"ratio at {s}" for s in sizes[1:]) + " |"
        lines += [header, "|" + "---|" * (1 + 2 * len(sizes) - 1)]
        for name in base:
            values = [result["sizes"][s]["figures"][name] for s in sizes]
            ratios = [f"{v / values[0]:.2f}" if values[0] else "-" for v in values[1:]]
            shown = name + (" (the newest 100: see per event)"
                            if is_list_of_the_newest(name) and not name.endswith("_per_event_s")
                            else "")
            lines.append(f"| {shown} | " + " | ".join(f"{v:.6f}" for v in values) + " | "
                         + " | ".join(ratios) + " |")
        parts = [str(result["sizes"][s]["partitions_per_asset"]) for s in sizes]
        lines.append("| partitions per asset | " + " | ".join(parts) + " | " + " | ".join(
            "-" for _ in sizes[1:]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="0,100000,1000000")
    parser.add_argument("--per-day", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50,
                        help="documents of the template run (and of the history's batches)")
    parser.add_argument("--process-documents", type=int, default=PROCESS_DOCUMENTS,
                        help="of the `doc-runs process` measured at each size")
    parser.add_argument("--tries", type=int, default=TRIES,
                        help="of each figure measured in milliseconds, a round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "scale.json"))
    parser.add_argument("--keep", action="store_true",
                        help="keep each deployment (its folder, database and Redis keys) and "
                        "print its environment, instead of deleting it")
    parser.add_argument("--reuse", action="append", default=[], metavar="SIZE=STATE",
                        help="measure a deployment kept by an earlier --keep (its "
                        f"{STATE_FILE}) as the one of SIZE, instead of building it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        storage, size = args.worker.split(":", 1)
        worker(storage, int(size), args.per_day, args.batch_size, args.keep,
               Path(args.state) if args.state else None, args.process_documents, args.tries)
        return 0
    for name in ("per_day", "batch_size", "process_documents", "tries", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes[0] != 0:
        parser.error("--sizes must start with 0: every figure is divided by its value there")
    reuse: dict[int, Path] = {}
    for item in args.reuse:
        size, _, state = item.partition("=")
        if not (size.isdigit() and int(size) in sizes and Path(state).is_file()):
            parser.error(f"--reuse {item}: SIZE (one of --sizes) = a kept {STATE_FILE}")
        reuse[int(size)] = Path(state)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = run_scale(args.storage.split(","), args.sizes, args.per_day, args.repeat,
                            args.batch_size, out, args.keep, reuse, args.process_documents,
                            args.tries)
    except (ValueError, RuntimeError) as failed:
        print(f"scale: {failed}", file=sys.stderr)
        return 1
    print(table(results))
    for result in results:
        worst, which = worst_ratio(result)
        print(f"{result['storage']}: the largest ratio at {list(result['sizes'])[-1]} is "
              f"{worst} ({which})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
