"""The power cut of issue 18, as an operator met it: `bin/up` in a fresh folder, N uploads
through the HTTP API at 20 at a time, then, some seconds into their processing, every process
of the deployment SIGKILLed at once (the host lost power); `bin/up` started again. Measured:
how long from the restart until every accepted document has succeeded, and what the run that
was in flight became. With --settled-first M, M documents are uploaded and processed first
(the issue's second scenario: 1,000 done, then 1,000 more cut off).

    .venv/bin/python bench/power_cut.py --documents 600 [--settled-first 0] [--kill-after 10]
                                        [--out bench/out/power_cut.json] [--keep]

Same set-up as bench/chaos.py (its own folder, ports and Redis key prefix; the scripted model
server, answering at once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chaos import (  # noqa: E402
    ChaosResult,
    Deployment,
    _delete_keys,
    _instance_env,
    bench_redis,
    check_model_requests,
    document_states,
    document_text,
    note,
)
from doc_runs_tests.chat_server import ScriptedChatServer  # noqa: E402

AT_ONCE = 20


def upload_all(deployment: Deployment, first: int, count: int) -> list[str]:
    """Uploads documents first..first+count-1, AT_ONCE at a time; their ids."""
    token = deployment.token()

    def upload(n: int) -> str:
        name = f"upload-{n:05d}.md"
        with httpx.Client(timeout=60) as client:
            answer = client.post(f"{deployment.api_url}/v1/documents",
                                 headers={"Authorization": f"Bearer {token}"},
                                 files={"file": (name, document_text(n).encode(),
                                                 "text/markdown")})
        answer.raise_for_status()
        return answer.json()["document_id"]

    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(upload, range(first, first + count)))


def wait_final(deployment: Deployment, ids: list[str], timeout: float,
               marks: tuple[float, ...] = ()) -> tuple[float | None, dict[float, dict]]:
    """Seconds until every one of `ids` is final (None: not within `timeout`), and their
    states at each of `marks` seconds."""
    started = time.monotonic()
    at_marks: dict[float, dict] = {}
    while True:
        elapsed = time.monotonic() - started
        try:
            states = document_states(deployment)
        except Exception:  # being written
            states = None
        if states is not None:
            counts = dict(Counter(states.get(d, ("missing",))[0] for d in ids))
            for mark in marks:
                if mark not in at_marks and elapsed >= mark:
                    at_marks[mark] = counts
            if set(counts) <= {"succeeded", "quarantined"}:
                return round(elapsed, 1), at_marks
        if elapsed > timeout:
            return None, at_marks
        deployment.keep_running()
        time.sleep(1)


def first_run_started_after(deployment: Deployment, after: float, timeout: float) -> bool:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    deadline = time.monotonic() + timeout
    with _instance_env(deployment.env), DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            for run in instance.get_runs(RunsFilter(job_name="document_pipeline",
                                                    statuses=[DagsterRunStatus.STARTED,
                                                              DagsterRunStatus.SUCCESS])):
                stats = instance.get_run_stats(run.run_id)
                if stats.start_time and stats.start_time >= after:
                    return True
            time.sleep(0.5)
    return False


def run_power_cut(work: Path, documents: int, settled_first: int, kill_after_s: float,
                  redis_url: str | None = None) -> dict[str, Any]:
    """The whole run, on the Redis of bench.chaos.bench_redis."""
    with bench_redis(redis_url) as url:
        return _run_power_cut(work, documents, settled_first, kill_after_s, url)


def _run_power_cut(work: Path, documents: int, settled_first: int, kill_after_s: float,
                   redis_url: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"documents": documents, "settled_first": settled_first,
                               "kill_after_s": kill_after_s}
    with ScriptedChatServer() as model:
        deployment = Deployment(work, model.url, redis_url)
        try:
            deployment.start()
            deployment.wait_ready(240)
            if settled_first:
                began = time.monotonic()
                settled = upload_all(deployment, 1, settled_first)
                took, _ = wait_final(deployment, settled, 1200)
                figures["settled_first_s"] = None if took is None else round(
                    time.monotonic() - began, 1)
                note(f"{settled_first} documents first: final {figures['settled_first_s']} s "
                     "after their first upload")
            uploads_began_wall = time.time()
            began = time.monotonic()
            ids = upload_all(deployment, settled_first + 1, documents)
            figures["upload_s"] = round(time.monotonic() - began, 1)
            note(f"{documents} accepted in {figures['upload_s']} s")
            if not first_run_started_after(deployment, uploads_began_wall, 120):
                raise RuntimeError("no run started for the uploads within 120 s: "
                                   + deployment.log_tail())
            time.sleep(kill_after_s)
            states = document_states(deployment)
            figures["at_the_kill"] = dict(Counter(states.get(d, ("missing",))[0] for d in ids))
            figures["killed_processes"] = len(deployment.kill("all"))
            note(f"killed everything {kill_after_s} s into processing: "
                 f"{figures['at_the_kill']}")
            deployment.start()
            took, marks = wait_final(deployment, ids, 900, marks=(60.0, 120.0, 180.0))
            figures["seconds_from_restart_to_all_final"] = took
            figures["states_after_restart_s"] = {str(int(k)): v for k, v in marks.items()}
            states = document_states(deployment)
            figures["final_states"] = dict(Counter(states.get(d, ("missing",))[0]
                                                   for d in ids))
            figures["runs"] = run_outcomes(deployment)
            checked = ChaosResult()
            check_model_requests(deployment, model, checked)
            figures["model_requests"] = checked.model_requests
            figures["resent_after_answer"] = checked.resent_after_answer
            figures["asked_again_answer_lost"] = checked.asked_twice_answer_lost
            figures["holds"] = (took is not None and took < 180
                                and figures["final_states"] == {"succeeded": documents}
                                and checked.resent_after_answer == 0)
        finally:
            deployment.stop()
            _delete_keys(redis_url, deployment.prefix)
    return figures


def run_outcomes(deployment: Deployment) -> dict[str, Any]:
    from dagster import DagsterEventType, DagsterInstance

    with _instance_env(deployment.env), DagsterInstance.get() as instance:
        runs = instance.get_runs()
        reasons: Counter[str] = Counter()
        for run in runs:
            for event in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE):
                said = (event.dagster_event.message if event.dagster_event else "") or ""
                reasons[said.replace(run.run_id, "<run>").splitlines()[0][:160]] += 1
        return {"by_status": dict(Counter(r.status.value for r in runs)),
                "failures": dict(reasons)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--settled-first", type=int, default=0)
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "power_cut.json")
    parser.add_argument("--keep", action="store_true",
                        help="keep the deployment's folder (its home, store, logs) afterwards")
    args = parser.parse_args()
    if not (0 < args.documents <= 100_000 and 0 <= args.settled_first <= 100_000
            and 0 <= args.kill_after <= 3600):
        parser.error("--documents in 1..100000, --settled-first in 0..100000, --kill-after "
                     "in 0..3600")
    tmp = Path(tempfile.mkdtemp(prefix="doc-runs-power-cut-"))
    try:
        figures = run_power_cut(tmp / "deployment", args.documents, args.settled_first,
                                args.kill_after)
    finally:
        if args.keep:
            note(f"kept: {tmp / 'deployment'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    return 0 if figures["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
