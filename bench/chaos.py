"""Chaos: a deployment started by `bin/up` takes a steady stream of uploads (over HTTP) and
queue messages (`doc-runs submit`, and now and then a poison message), while a part of it is
SIGKILLed at random moments: the run worker, the code server, the daemon, the webserver, the
HTTP API, or everything at once (the host lost power). What `bin/up` restarts itself it is left
to (the API, a code server); when `bin/up` exits, or everything was killed, it is started
again, as a container's restart policy would. After the last kill the stream stops, and the
deployment is given time to finish. Then it checks:

- every accepted document is final (`succeeded`: every input is a valid document), none lost;
- no model request was sent again after its answer had been stored (an answer that arrived
  but died with its process before it was stored may be asked again: counted apart);
- every poison message is a dead letter, and every dead letter has a reason;
- every document's latest `final` outcome event says what the catalog says;
- no upload cut off by a kill left a temporary file behind, no run is left in flight.

and prints the figures: documents accepted, final, lost; kills survived, by part; seconds from
the last restart to every document final.

    .venv/bin/python bench/chaos.py [--minutes 10] [--kill-every 45] [--seed 7]
                                    [--out bench/out/chaos.json]

Runs its own copy of the deployment's files in a temporary folder (its own DAGSTER_HOME, store,
ports, and Redis key prefix, deleted afterwards), against the Redis at DOC_RUNS_REDIS_URL
(else 127.0.0.1:6379, else a throwaway one) and a scripted OpenAI-compatible model server
(doc_runs_tests/chat_server.py), so that every model request is seen. The short form is
doc_runs_tests/test_chaos.py; bin/bench runs this one (`--only chaos`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_runs_tests.chat_server import ScriptedChatServer  # noqa: E402
from doc_runs_tests.live import running_in  # noqa: E402
from doc_runs_tests.servers import free_port  # noqa: E402

PARTS = ("run_worker", "code_server", "daemon", "webserver", "api", "all")
TENANT = "acme"  # bin/up's development tenant
FINAL_STATES = {"succeeded", "quarantined"}
# What bin/up needs of the checkout; the installed package is the .venv's.
DEPLOYMENT_FILES = ("bin", "deploy", "workspace.yaml", "pyproject.toml")


def note(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Kill:
    at_s: float  # since the stream began
    part: str
    pids: list[int]


@dataclass
class ChaosResult:
    accepted: int = 0
    accepted_uploads: int = 0
    accepted_queue: int = 0
    final: int = 0
    lost: list[str] = field(default_factory=list)  # accepted, not final in the end
    states: dict[str, int] = field(default_factory=dict)
    not_succeeded: dict[str, str] = field(default_factory=dict)  # document: state and reason
    uploads_retried: int = 0  # upload attempts that got no answer (the API was down)
    kills: list[Kill] = field(default_factory=list)
    starts: int = 0  # of bin/up
    seconds_to_all_final: float | None = None  # from the stream's end, the last kill or start
    seconds_from_last_start: float | None = None  # of bin/up, to every document final
    model_requests: int = 0
    resent_after_answer: int = 0  # asked again after its answer was stored: must be 0
    asked_twice_answer_lost: int = 0  # asked again, its first answer having died unstored
    poison_sent: int = 0
    dead_letters: int = 0
    dead_letters_without_reason: int = 0
    poison_not_dead_lettered: int = 0
    final_events_missing: list[str] = field(default_factory=list)
    final_events_disagreeing: list[str] = field(default_factory=list)
    duplicate_event_deliveries: int = 0  # the same event (source id) published again
    leftover_temporaries: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)
    run_failures: dict[str, int] = field(default_factory=dict)  # first line of each reason
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kills_by_part"] = dict(Counter(k.part for k in self.kills))
        return data


# -- the deployment ---------------------------------------------------------------------

class Deployment:
    """`bin/up` in a folder of its own, started again whenever it is not running."""

    def __init__(self, folder: Path, model_url: str, redis_url: str) -> None:
        self.folder = folder
        for name in DEPLOYMENT_FILES:
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, folder / name)
        for name in ("samples", "inbox", "store", "reports"):
            (folder / "data" / name).mkdir(parents=True, exist_ok=True)
        # The installed package, as bin/up would find it in a checkout; its samples are left
        # out (the documents counted are the ones this stream sends).
        (folder / ".venv").symlink_to(Path(sys.prefix))
        self.home = folder / ".dagster_home"
        self.prefix = f"doc-runs-chaos-{uuid.uuid4().hex[:8]}:"
        self.ui_port, self.api_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "DOC_RUNS_SECRETS_FILE": str(folder / ".secrets" / "tenants.json"),
            "DOC_RUNS_STORE_DIR": str(folder / "data" / "store"),
            "DOC_RUNS_INBOX_DIR": str(folder / "data" / "inbox"),
            "DOC_RUNS_REPORTS_DIR": str(folder / "data" / "reports"),
            "DOC_RUNS_PORT": str(self.ui_port), "DOC_RUNS_API_PORT": str(self.api_port),
            "DOC_RUNS_HOST": "127.0.0.1", "DOC_RUNS_API_HOST": "127.0.0.1",
            "DOC_RUNS_REDIS_URL": redis_url, "DOC_RUNS_STREAM_PREFIX": self.prefix,
            "DOC_RUNS_MODEL_BACKEND": "openai", "OPENAI_BASE_URL": model_url,
            "OPENAI_API_KEY": "chaos-key", "DOC_RUNS_MODEL": "scripted-model",
            "DOC_RUNS_MODEL_TIMEOUT_S": "30",
        }
        for name in ("DOC_RUNS_DATABASE_URL", "DAGSTER_POSTGRES_URL"):
            self.env.pop(name, None)  # the local default: SQLite in the home
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = 0.0
        self.disrupted_at = 0.0  # the last kill or start

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> None:
        self.starts += 1
        log = (self.folder / f"up-{self.starts}.log").open("wb")
        try:
            self.process = subprocess.Popen(["bash", "bin/up"], cwd=self.folder, env=self.env,
                                            start_new_session=True, stdout=log,
                                            stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.started_at = self.disrupted_at = time.monotonic()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def keep_running(self) -> bool:
        """Starts bin/up again when it ended; whether it had to."""
        if self.running():
            return False
        # What outlived it (a code server, a run worker) may still hold the port or the
        # home's lock for a moment: bin/up refuses then, and is started again next time.
        self.start()
        return True

    def ready(self) -> bool:
        try:
            api = httpx.get(f"{self.api_url}/healthz", timeout=5).status_code == 200
            ui = httpx.get(f"{self.ui_url}/server_info", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False
        return api and ui

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.keep_running()
            if self.ready():
                return
            time.sleep(1)
        raise RuntimeError(f"the deployment did not come up in {timeout:.0f} s: "
                           f"{self.log_tail()}")

    def token(self) -> str:
        return (self.folder / ".secrets" / "dev-token-acme").read_text().strip()

    def log_tail(self, chars: int = 3000) -> str:
        logs = sorted(self.folder.glob("up-*.log"), key=lambda p: int(p.stem.split("-")[1]))
        return logs[-1].read_text(errors="replace")[-chars:] if logs else ""

    # -- the parts ---------------------------------------------------------------------

    def processes(self) -> list[tuple[int, str]]:
        return running_in(self.folder)

    def part_pids(self, part: str) -> list[int]:
        found = self.processes()
        if part == "all":
            return [pid for pid, _ in found]
        if part == "run_worker":
            return self.run_worker_pids()
        marks = {"code_server": " api grpc ", "daemon": "dagster._daemon run",
                 "webserver": "-m dagster_webserver", "api": "doc-runs api"}
        chosen = [pid for pid, command in found if marks[part] in f" {command} "]
        if part == "code_server":  # the server, not the run workers it spawned
            chosen = [pid for pid in chosen if _parent_command(pid).find("code-server") >= 0]
        return chosen

    def run_worker_pids(self) -> list[int]:
        """The processes of the runs in flight: each writes its run's RUN_START itself."""
        from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

        with _instance_env(self.env), DagsterInstance.get() as instance:
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            pids = []
            for run in runs:
                started = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
                if started and started[0].dagster_event and started[0].dagster_event.pid:
                    pids.append(started[0].dagster_event.pid)
        return [pid for pid in pids if psutil.pid_exists(pid)]

    def kill(self, part: str, rng: random.Random | None = None) -> list[int]:
        pids = self.part_pids(part)
        if part == "run_worker" and len(pids) > 1:
            pids = [(rng or random).choice(pids)]  # one process dies, as the OOM killer picks
        if part == "all" and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        killed = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        if part == "all":
            deadline = time.monotonic() + 20
            while self.processes() and time.monotonic() < deadline:
                for pid, _ in self.processes():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            if self.process is not None:
                self.process.wait()
        return pids if part == "all" else killed

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid, _ in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 20
                            else signal.SIGKILL)
            time.sleep(0.5)
        for pid, _ in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _parent_command(pid: int) -> str:
    try:
        parent = psutil.Process(pid).parent()
        return " ".join(parent.cmdline()) if parent else ""
    except psutil.Error:
        return ""


@contextlib.contextmanager
def _instance_env(env: dict[str, str]) -> Iterator[None]:
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


# -- the stream of work -----------------------------------------------------------------

def document_text(n: int) -> str:
    return (f"# Note {n}\n\nThe board approved budget {n * 7919 % 100003} for project {n}. "
            f"The audit of area {n % 97} found nothing. Revenue rose by {n % 40 + 1} percent. "
            f"Payment terms are {n % 60 + 10} days.\n")


class Stream:
    """Uploads over HTTP and queue messages through `doc-runs submit`, each retried until
    the deployment takes it, as a patient client would; and now and then a poison message."""

    def __init__(self, deployment: Deployment, uploads_per_s: float, submit_every_s: float,
                 submit_burst: int, poison_every: int) -> None:
        self.deployment = deployment
        self.uploads_per_s = uploads_per_s
        self.submit_every_s = submit_every_s
        self.submit_burst = submit_burst
        self.poison_every = poison_every
        self.uploads: dict[str, str] = {}  # name: document id
        self.queued: dict[str, str] = {}
        self.poison: list[str] = []
        self.upload_attempts_unanswered = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._count = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._upload_loop, daemon=True),
                         threading.Thread(target=self._submit_loop, daemon=True)]
        # Beside the deployment, not in it: a kill of "everything in its folder" must not take
        # the producers with it.
        self.outbox = deployment.folder.parent / f"{deployment.folder.name}-outbox"
        self.outbox.mkdir()

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(300)
            if thread.is_alive():
                self.errors.append(f"{thread.name} did not stop")

    def _upload_loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                n = self._next()
                name = f"upload-{n:05d}.md"
                body = document_text(n).encode()
                # The same request, with its key, until it is answered (also while stopping:
                # one given up on would be neither lost nor accepted).
                give_up = time.monotonic() + 300
                while time.monotonic() < give_up:
                    try:
                        answer = client.post(
                            f"{self.deployment.api_url}/v1/documents",
                            headers={"Authorization": f"Bearer {self.deployment.token()}",
                                     "Idempotency-Key": name},
                            files={"file": (name, body, "text/markdown")})
                    except (httpx.HTTPError, OSError):
                        answer = None
                    if answer is not None and answer.status_code in (200, 202):
                        self.uploads[name] = answer.json()["document_id"]
                        break
                    if answer is not None and answer.status_code not in (500, 502, 503):
                        self.errors.append(f"{name}: HTTP {answer.status_code} "
                                           f"{answer.text[:200]}")
                        break
                    self.upload_attempts_unanswered += 1
                    time.sleep(1.0)
                else:
                    self.errors.append(f"{name}: no answer in 300 s")
                wait = 1.0 / self.uploads_per_s - (time.monotonic() - started)
                if wait > 0:
                    self._stop.wait(wait)

    def _submit_loop(self) -> None:
        bursts = 0
        while not self._stop.wait(self.submit_every_s):
            bursts += 1
            folder = self.outbox / f"burst-{bursts:04d}"
            folder.mkdir()
            for _ in range(self.submit_burst):
                n = self._next()
                (folder / f"queued-{n:05d}.md").write_text(document_text(n))
            self._submit(folder)
            if self.poison_every and bursts % self.poison_every == 0:
                self._send_poison(bursts)

    def _submit(self, folder: Path) -> None:
        files = sorted(folder.iterdir())
        said = ""
        for _ in range(30):  # Redis is not part of what is killed: this normally succeeds
            done = subprocess.run(
                [str(Path(sys.prefix) / "bin" / "doc-runs"), "submit", "--tenant", TENANT,
                 "--json", *map(str, files)],
                cwd=self.outbox, env=self.deployment.env, capture_output=True, text=True,
                timeout=300)
            for line in (json.loads(text) for text in done.stdout.splitlines() if text.strip()):
                if line.get("status") == "enqueued":
                    self.queued[Path(line["path"]).name] = line["document_id"]
            files = [f for f in files if f.name not in self.queued]
            if not files:
                return
            said = f"exit {done.returncode}: {done.stderr[-300:]}"
            time.sleep(1)
        self.errors.append(f"doc-runs submit of {len(files)} file(s) failed 30 times: {said}")

    def _send_poison(self, n: int) -> None:
        names = _stream_names(self.deployment.prefix)
        client = redis.Redis.from_url(self.deployment.env["DOC_RUNS_REDIS_URL"])
        try:
            payload = json.dumps({"schema_version": 1, "tenant": TENANT,
                                  "not": f"an envelope {n}"}).encode()
            client.xadd(names.documents, {"envelope": payload})
            self.poison.append(payload.decode())
        finally:
            client.close()


def _stream_names(prefix: str) -> Any:
    from doc_runs.queue.streams import StreamNames

    return StreamNames(prefix)


# -- the run ----------------------------------------------------------------------------

@dataclass
class ChaosPlan:
    seconds: float = 600.0  # of stream and kills
    kill_every_s: float = 45.0  # on average
    parts: tuple[str, ...] = PARTS  # drawn from at random, or in order with `in_order`
    in_order: bool = False
    uploads_per_s: float = 1.0
    submit_every_s: float = 10.0
    submit_burst: int = 5
    poison_every: int = 4  # bursts
    seed: int = 7
    settle_s: float = 300.0  # after the last kill, for every document to be final


def run_chaos(work: Path, plan: ChaosPlan, redis_url: str | None = None) -> ChaosResult:
    """The whole run, on the Redis of `bench_redis`."""
    with bench_redis(redis_url) as url:
        return _run_chaos(work, plan, url)


@contextlib.contextmanager
def bench_redis(redis_url: str | None = None) -> Iterator[str]:
    """The Redis at `redis_url` (else DOC_RUNS_REDIS_URL, else 127.0.0.1:6379); a throwaway one
    where none answers: not bin/up's own, which the kills would take with them."""
    from doc_runs_tests.servers import redis_answers, start_throwaway_redis

    redis_url = redis_url or os.environ.get("DOC_RUNS_REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(redis_url):
        yield redis_url
        return
    note(f"no Redis answers at {redis_url}: starting a throwaway one")
    server = start_throwaway_redis()
    try:
        yield server.url
    finally:
        server.stop()


def _run_chaos(work: Path, plan: ChaosPlan, redis_url: str) -> ChaosResult:
    work.mkdir(parents=True, exist_ok=True)
    result = ChaosResult()
    rng = random.Random(plan.seed)
    with ScriptedChatServer() as model:
        # Slow enough that kills land mid-stage, fast enough for a steady stream.
        model.fault = lambda body, n: "latency:0.4"
        deployment = Deployment(work, model.url, redis_url)
        try:
            deployment.start()
            deployment.wait_ready(240)
            note(f"up: UI {deployment.ui_url}, API {deployment.api_url}, in {work}")
            stream = Stream(deployment, plan.uploads_per_s, plan.submit_every_s,
                            plan.submit_burst, plan.poison_every)
            began = time.monotonic()
            stream.start()
            parts = list(plan.parts)
            next_kill = began + rng.expovariate(1 / plan.kill_every_s)
            while time.monotonic() - began < plan.seconds:
                if deployment.keep_running():
                    note(f"bin/up had ended: started again ({deployment.starts})")
                if time.monotonic() >= next_kill:
                    part = parts.pop(0) if plan.in_order and parts else rng.choice(plan.parts)
                    kill_part(deployment, part, began, result, rng)
                    if plan.in_order and not parts:
                        break
                    next_kill = time.monotonic() + max(
                        10.0, rng.expovariate(1 / plan.kill_every_s))
                time.sleep(0.5)
            note("the stream stops; waiting for every document to be final")
            stream.stop()
            # Measured from here, or from a restart after here: what is left is catching up.
            deployment.disrupted_at = max(deployment.disrupted_at, time.monotonic())
            result.problems.extend(f"stream: {e}" for e in stream.errors[:20])
            settle(deployment, stream, plan, result)
            check(deployment, stream, model, result)
        finally:
            deployment.stop()
            with contextlib.suppress(Exception):
                _delete_keys(redis_url, deployment.prefix)
    return result


def kill_part(deployment: Deployment, part: str, began: float, result: ChaosResult,
              rng: random.Random) -> None:
    with contextlib.suppress(RuntimeError):
        deployment.wait_ready(240)  # a kill while it is still starting tells little more
    pids = deployment.kill(part, rng)
    deadline = time.monotonic() + 60  # a run worker: wait for a run to be in flight
    while not pids and part == "run_worker" and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = deployment.kill(part, rng)
    deployment.disrupted_at = time.monotonic()
    at = round(time.monotonic() - began, 1)
    result.kills.append(Kill(at, part, pids))
    note(f"{at} s: killed {part} ({len(pids)} process(es): {pids[:6]})")
    if part == "all":
        deployment.start()


def document_states(deployment: Deployment) -> dict[str, tuple[str, str | None]]:
    import sqlalchemy as sa

    from doc_runs.core.catalog_schema import catalog_url, documents_table, engine_url

    engine = sa.create_engine(engine_url(catalog_url(deployment.env)))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(documents_table.c.document_id,
                                          documents_table.c.state,
                                          documents_table.c.reason)).all()
    finally:
        engine.dispose()
    return {row.document_id: (row.state, row.reason) for row in rows}


def settle(deployment: Deployment, stream: Stream, plan: ChaosPlan, result: ChaosResult
           ) -> None:
    accepted = set(stream.uploads.values()) | set(stream.queued.values())
    deadline = time.monotonic() + plan.settle_s
    states: dict[str, tuple[str, str | None]] = {}
    while time.monotonic() < deadline:
        deployment.keep_running()
        with contextlib.suppress(Exception):  # the catalog is being written
            states = document_states(deployment)
        if all(states.get(d, ("",))[0] in FINAL_STATES for d in accepted):
            result.seconds_to_all_final = round(time.monotonic() - deployment.disrupted_at, 1)
            result.seconds_from_last_start = round(time.monotonic() - deployment.started_at, 1)
            break
        time.sleep(2)
    result.accepted_uploads = len(set(stream.uploads.values()))
    result.accepted_queue = len(set(stream.queued.values()))
    result.accepted = len(accepted)
    result.uploads_retried = stream.upload_attempts_unanswered
    result.final = sum(1 for d in accepted if states.get(d, ("",))[0] in FINAL_STATES)
    result.lost = sorted(d for d in accepted if states.get(d, ("",))[0] not in FINAL_STATES)
    result.states = dict(Counter(states[d][0] if d in states else "missing" for d in accepted))
    result.not_succeeded = {d: f"{states[d][0]} {states[d][1] or ''}".strip()
                            for d in accepted if d in states and states[d][0] != "succeeded"}
    result.starts = deployment.starts
    if result.lost:
        result.problems.append(f"{len(result.lost)} accepted document(s) not final after "
                               f"{plan.settle_s:.0f} s: {result.states}")
    if result.not_succeeded:
        result.problems.append(f"documents not succeeded: {list(result.not_succeeded.items())[:5]}")


def check(deployment: Deployment, stream: Stream, model: ScriptedChatServer,
          result: ChaosResult) -> None:
    check_model_requests(deployment, model, result)
    check_dead_letters(deployment, stream, result)
    check_events(deployment, stream, result)
    check_leftovers(deployment, result)


def check_model_requests(deployment: Deployment, model: ScriptedChatServer,
                         result: ChaosResult) -> None:
    from doc_runs.core.agent.protocol import ChatRequest

    stored = {path.stem.removeprefix("model-"): path.stat().st_mtime
              for path in (deployment.folder / "data" / "store" / "cache").glob(
                  "*/model-*.json")}
    seen: Counter[str] = Counter()
    result.model_requests = len(model.requests)
    for body, at in zip(list(model.requests), list(model.received_at), strict=True):
        key = ChatRequest(backend="openai", model=body["model"], messages=body["messages"],
                          tools=body.get("tools") or [], max_tokens=body["max_tokens"],
                          temperature=body["temperature"]).cache_key(model.url)
        seen[key] += 1
        if key in stored and at > stored[key] + 0.05:
            result.resent_after_answer += 1
        elif seen[key] > 1:
            result.asked_twice_answer_lost += 1
    if result.resent_after_answer:
        result.problems.append(f"{result.resent_after_answer} model request(s) sent again "
                               "after their answer was stored")


def check_dead_letters(deployment: Deployment, stream: Stream, result: ChaosResult) -> None:
    from doc_runs.queue.dead_letters import list_dead_letters

    client = redis.Redis.from_url(deployment.env["DOC_RUNS_REDIS_URL"])
    try:
        letters = list_dead_letters(client, _stream_names(deployment.prefix))
    finally:
        client.close()
    result.poison_sent = len(stream.poison)
    result.dead_letters = len(letters)
    result.dead_letters_without_reason = sum(1 for letter in letters if not letter.reason)
    kept = {letter.payload_text() for letter in letters}
    result.poison_not_dead_lettered = sum(1 for payload in stream.poison if payload not in kept)
    if result.dead_letters_without_reason:
        result.problems.append(f"{result.dead_letters_without_reason} dead letter(s) without "
                               "a reason")
    if result.poison_not_dead_lettered:
        result.problems.append(f"{result.poison_not_dead_lettered} poison message(s) not "
                               "dead-lettered")


def check_events(deployment: Deployment, stream: Stream, result: ChaosResult) -> None:
    from doc_runs.queue.events import FINAL, read_events

    states = document_states(deployment)
    client = redis.Redis.from_url(deployment.env["DOC_RUNS_REDIS_URL"])
    names = _stream_names(deployment.prefix)
    deadline = time.monotonic() + 60  # the events sensor publishes every few seconds
    accepted = set(stream.uploads.values()) | set(stream.queued.values())
    try:
        while True:
            latest: dict[str, str] = {}
            sources: Counter[tuple[str, str, str, str]] = Counter()
            after = "0-0"
            while batch := read_events(client, names, TENANT, after, count=1000):
                for entry_id, event in batch:
                    after = entry_id
                    sources[(event.document_id, event.stage, event.status,
                             event.source_id)] += 1
                    if event.stage == FINAL:
                        latest[event.document_id] = event.status
            missing = sorted(d for d in accepted if d not in latest)
            disagreeing = sorted(d for d in accepted if d in latest and d in states
                                 and latest[d] != states[d][0])
            if not (missing or disagreeing) or time.monotonic() > deadline:
                break
            time.sleep(3)
    finally:
        client.close()
    result.final_events_missing = missing
    result.final_events_disagreeing = disagreeing
    result.duplicate_event_deliveries = sum(n - 1 for n in sources.values() if n > 1)
    if missing:
        result.problems.append(f"{len(missing)} document(s) without a final outcome event")
    if disagreeing:
        result.problems.append(f"{len(disagreeing)} document(s) whose latest final event "
                               "disagrees with the catalog")


def check_leftovers(deployment: Deployment, result: ChaosResult) -> None:
    from dagster import DagsterEventType, DagsterInstance

    tmp = deployment.folder / "data" / "store" / "tmp"
    result.leftover_temporaries = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    if result.leftover_temporaries:
        result.problems.append(f"temporary files left in the store: "
                               f"{result.leftover_temporaries[:5]}")
    in_flight_states = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
    with _instance_env(deployment.env), DagsterInstance.get() as instance:
        # A run whose launch died with the deployment is failed 20 s after it at the soonest
        # (starting_runs_sensor), a minute at the latest (the instance's start timeout), then
        # retried: given that long to end.
        deadline = time.monotonic() + 180
        while True:
            runs = instance.get_runs()
            if time.monotonic() > deadline or not any(
                    run.status.value in in_flight_states for run in runs):
                break
            deployment.keep_running()
            time.sleep(3)
        result.runs = dict(Counter(run.status.value for run in runs))
        reasons: Counter[str] = Counter()
        for run in runs:
            if run.status.value != "FAILURE":
                continue
            for event in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE):
                said = (event.dagster_event.message if event.dagster_event else "") or ""
                reasons[said.replace(run.run_id, "<run>").splitlines()[0][:160]] += 1
        result.run_failures = dict(reasons)
    in_flight = {s: n for s, n in result.runs.items() if s in in_flight_states}
    if in_flight:
        result.problems.append(f"runs still in flight at the end: {in_flight}")


def _delete_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


# -- the command ------------------------------------------------------------------------

def figures_table(result: ChaosResult) -> str:
    by_part = Counter(k.part for k in result.kills)
    rows = [
        ("documents accepted (uploads + queue)",
         f"{result.accepted} ({result.accepted_uploads} + {result.accepted_queue})"),
        ("final / lost", f"{result.final} / {len(result.lost)}"),
        ("states", json.dumps(result.states)),
        ("kills survived", f"{len(result.kills)}: " + ", ".join(
            f"{part} {n}" for part, n in sorted(by_part.items()))),
        ("starts of bin/up", str(result.starts)),
        ("seconds to every document final: from the end of the stream (or a later kill or "
         "restart); from the last start of bin/up",
         f"{result.seconds_to_all_final}; {result.seconds_from_last_start}"),
        ("model requests; sent again after the answer was stored; asked again, the answer "
         "having died unstored",
         f"{result.model_requests}; {result.resent_after_answer}; "
         f"{result.asked_twice_answer_lost}"),
        ("poison sent; dead letters; without a reason; poison not dead-lettered",
         f"{result.poison_sent}; {result.dead_letters}; {result.dead_letters_without_reason}; "
         f"{result.poison_not_dead_lettered}"),
        ("final events missing; disagreeing; duplicate deliveries",
         f"{len(result.final_events_missing)}; {len(result.final_events_disagreeing)}; "
         f"{result.duplicate_event_deliveries}"),
        ("runs by status; why runs failed", f"{json.dumps(result.runs)}; "
         f"{json.dumps(result.run_failures)}"),
        ("upload attempts unanswered (retried)", str(result.uploads_retried)),
        ("leftover temporaries", str(len(result.leftover_temporaries))),
        ("holds", "yes" if result.holds else "NO: " + "; ".join(result.problems)),
    ]
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=45.0,
                        help="seconds between kills, on average (at least 10)")
    parser.add_argument("--uploads-per-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle", type=float, default=300.0,
                        help="seconds allowed after the stream for every document to be final")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "chaos.json")
    args = parser.parse_args()
    if not (0 < args.minutes <= 24 * 60 and args.kill_every >= 10 and
            0 < args.uploads_per_s <= 50 and args.settle > 0):
        parser.error("--minutes in (0, 1440], --kill-every >= 10, --uploads-per-s in (0, 50], "
                     "--settle > 0")
    plan = ChaosPlan(seconds=args.minutes * 60, kill_every_s=args.kill_every,
                     uploads_per_s=args.uploads_per_s, seed=args.seed, settle_s=args.settle)
    with tempfile.TemporaryDirectory(prefix="doc-runs-chaos-") as tmp:
        work = Path(tmp) / "deployment"
        work.mkdir()
        result = run_chaos(work, plan)
    print(figures_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"plan": asdict(plan), "result": result.as_json()},
                                   indent=2, default=str))
    print(f"written: {args.out}")
    return 0 if result.holds else 1


if __name__ == "__main__":
    sys.exit(main())
