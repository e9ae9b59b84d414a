"""doc-runs status: what a run or a document went through, stage by stage. Reads what the runs
recorded (Dagster's run storage, the catalog), never re-deriving it."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from doc_runs.cli.common import (
    DOCUMENT_ID,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    RUN_ID,
    SetupProblem,
    say,
)
from doc_runs.cli.instance import operator_catalog, operator_instance
from doc_runs.core.status import RUN_FAILURE, STAGES, document_status
from doc_runs.core.store import DocumentStore
from doc_runs.defs.tags import BATCH_TAG, DOCUMENTS_TAG, TENANT_TAG, TRIGGER_TAG

RECENT_RUNS = 20


def when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def describe_run(instance: Any, catalog: Any, store: DocumentStore, run_id: str
                 ) -> dict[str, Any] | None:
    """What run `run_id` went through: its steps with their attempts and the reason each
    failed step gives, and each of its documents' records."""
    from doc_runs.cli.runs import failure_message
    from doc_runs.defs.launch import unfinished_reexecutions
    from doc_runs.defs.partitions import run_documents

    record = next(iter(instance.get_run_records(_runs_filter(run_ids=[run_id]))), None)
    if record is None:
        return None
    run = record.dagster_run
    ended = run.is_finished
    steps = []
    for stats in sorted(instance.get_run_step_stats(run_id),
                        key=lambda s: s.start_time or 0):
        status = stats.status.value if stats.status else "IN_PROGRESS"
        steps.append({
            "step": stats.step_key,
            # A step with no end in a run that ended was cut off (its process killed): Dagster
            # still reads it IN_PROGRESS, from its start event.
            "status": "NOT_FINISHED" if ended and status == "IN_PROGRESS" else status,
            "attempts": stats.attempts or 1,
            "duration_s": round(stats.end_time - stats.start_time, 3)
            if stats.end_time and stats.start_time else None,
        })
    failure = failure_message(instance, run_id) if run.status.value != "SUCCESS" else None
    if failure:
        failed_step = failure.split(":", 1)[0]
        for step in steps:
            if step["step"] == failed_step:
                step["reason"] = failure.split(":", 1)[1].strip()
    docs = []
    keys = run_documents(catalog, run.tags)
    records_of = catalog.records_of(keys)
    latest = catalog.latest_batches(keys)
    for key in keys:
        records = records_of[key]
        state = document_status(records)
        docs.append({
            "document_id": key,
            "names": store.source_names(key)[:3],
            "state": state.state.value, "reason": state.reason, "detail": state.detail,
            # False where a newer request took the document over: its state (above) is
            # then that request's, and this run's records of it were not kept.
            "latest_batch": latest.get(key, ("", ""))[0] == run.tags.get(BATCH_TAG),
            "stages_recorded_by_this_run": [stage for stage, rec in records.items()
                                            if rec.get("run_id") == run_id],
        })
    return {
        "run_id": run_id, "job": run.job_name, "status": run.status.value,
        "parent_run_id": run.parent_run_id, "root_run_id": run.root_run_id,
        "trigger": run.tags.get(TRIGGER_TAG) or run.tags.get("dagster/sensor_name")
        or run.tags.get("dagster/schedule_name"),
        "tenant": run.tags.get(TENANT_TAG), "batch": run.tags.get(BATCH_TAG),
        "day": run.tags.get("dagster/partition"),
        "started": when(record.start_time), "ended": when(record.end_time),
        "failure": failure, "steps": steps, "documents": docs,
        "reexecuting": [{"run_id": child.run_id, "status": child.status.value}
                        for child in unfinished_reexecutions(instance, run_id)],
    }


def _runs_filter(**kwargs: Any) -> Any:
    from dagster import RunsFilter

    return RunsFilter(**kwargs)


def describe_document(document_id: str, instance: Any, catalog: Any, store: DocumentStore
                      ) -> dict[str, Any] | None:
    """Every stage's record of the document: which run wrote it, its outcome, reason,
    attempt and duration; the batches that named it and their runs (newest first); and,
    where it did not finish, how the run of its last record ended (a run that failed
    without a daemon to record it for each document)."""
    from doc_runs.cli.runs import failure_message

    row = catalog.document(document_id)
    if row is None and not store.has_document(document_id):
        return None
    records = catalog.read_records(document_id)
    state = document_status(records)
    stages = []
    for stage in (*STAGES, RUN_FAILURE):
        rec = records.get(stage)
        if rec is None:
            continue
        stages.append({
            "stage": stage, "status": rec.get("status", "failed"),
            "reason": rec.get("reason"), "detail": rec.get("detail"),
            "attempt": rec.get("attempt"), "duration_s": rec.get("duration_s"),
            "run_id": rec.get("run_id"), "recorded": when(rec.get("recorded_at")),
        })
    runs = []
    for batch in catalog.batches_of(document_id):
        for run in instance.get_runs(_runs_filter(tags={BATCH_TAG: batch.batch_id}), limit=10):
            runs.append({"run_id": run.run_id, "status": run.status.value,
                         "batch": batch.batch_id, "day": batch.day, "trigger": batch.trigger,
                         "parent_run_id": run.parent_run_id})
    last_run = None
    latest = max(stages, key=lambda s: records[s["stage"]].get("recorded_at", 0),
                 default=None)
    if latest is not None and latest["run_id"] and \
            state.state.value in ("incomplete", "failed"):
        run = instance.get_run_by_id(latest["run_id"])
        if run is not None:
            last_run = {"run_id": run.run_id, "status": run.status.value,
                        "batch": run.tags.get(BATCH_TAG),
                        "failure": failure_message(instance, run.run_id)
                        if run.is_finished and run.status.value != "SUCCESS" else None}
    return {"document_id": document_id, "names": store.source_names(document_id),
            "owner": store.owner(document_id), "state": state.state.value,
            "reason": state.reason, "detail": state.detail,
            "stage_reached": state.stage_reached, "stages": stages, "runs": runs,
            "last_run": last_run}


def print_run(instance: Any, catalog: Any, store: DocumentStore, run_id: str, *,
              as_json: bool, stream: Any = None) -> bool:
    view = describe_run(instance, catalog, store, run_id)
    if view is None:
        return False
    out = stream or sys.stdout
    if as_json:
        print(json.dumps(view, ensure_ascii=False), file=out)
        return True
    print(f"run {view['run_id']}  {view['status']}  job {view['job']}"
          + (f"  re-execution of {view['parent_run_id']}" if view["parent_run_id"] else ""),
          file=out)
    print(f"  started {view['started'] or '-'}  ended {view['ended'] or '-'}  trigger "
          f"{view['trigger'] or '-'}  tenant {view['tenant'] or '-'}  batch "
          f"{view['batch'] or '-'} ({view['day'] or '-'})", file=out)
    for step in view["steps"]:
        took = f"{step['duration_s']:.1f} s" if step["duration_s"] is not None else "-"
        print(f"  {step['step']:<20} {step['status']:<12} attempts {step['attempts']}  {took}"
              + (f"  {step['reason']}" if step.get("reason") else ""), file=out)
    if view["failure"]:
        print(f"  failure: {view['failure']}", file=out)
    for doc in view["documents"]:
        name = doc["names"][0] if doc["names"] else "-"
        why = f"  {doc['reason']}: {doc['detail']}" if doc["reason"] else ""
        now = "" if doc["latest_batch"] else \
            "  (taken over by a newer request since: its state now)"
        print(f"  document {doc['document_id'][:12]}  {name}  {doc['state']}{why}{now}",
              file=out)
    for child in view["reexecuting"]:
        print(f"  being re-executed by run {child['run_id']} ({child['status']}): its "
              "documents' states above are from before", file=out)
    if view["status"] in ("FAILURE", "CANCELED") and not view["reexecuting"]:
        if view["job"] == "document_pipeline" and not view["batch"]:
            # A run of a release before batches: today's job cannot re-execute it.
            print("  run its documents again: doc-runs rerun DOCUMENT_ID (one command "
                  "each; a run from before batches cannot be re-executed)", file=out)
        else:
            print(f"  re-execute it: doc-runs reexecute {view['run_id']}", file=out)
    return True


def _print_document(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, ensure_ascii=False))
        return
    names = ", ".join(view["names"]) or "-"
    print(f"document {view['document_id']}  {view['state']}  ({names}; tenant "
          f"{view['owner'] or '-'})")
    for stage in view["stages"]:
        took = f"{stage['duration_s']:.2f} s" if stage["duration_s"] is not None else "-"
        why = f"  {stage['reason']}: {stage['detail']}" if stage["reason"] else ""
        print(f"  {stage['stage']:<18} {stage['status']:<12} attempt {stage['attempt'] or '-'}"
              f"  {took}  run {stage['run_id'] or '-'}{why}")
    if view["state"] == "pending":
        print("  no stage of its latest batch has run yet")
    for run in view["runs"]:
        print(f"  run {run['run_id']}  {run['status']:<11} batch {run['batch']} "
              f"({run['day']}, {run['trigger']})"
              + (f"  re-execution of {run['parent_run_id']}" if run["parent_run_id"] else ""))
    last = view["last_run"]
    if last is not None:
        print(f"  its last run {last['run_id']} is {last['status']}"
              + (f": {last['failure']}" if last["failure"] else ""))
        if last["status"] in ("FAILURE", "CANCELED"):
            print(f"  re-execute it: doc-runs reexecute {last['run_id']}" if last["batch"]
                  else f"  run it again: doc-runs rerun {view['document_id']} (its run is "
                  "from before batches and cannot be re-executed)")


def _print_recent(instance: Any, as_json: bool) -> None:
    records = instance.get_run_records(limit=RECENT_RUNS)
    rows = [{"run_id": r.dagster_run.run_id, "status": r.dagster_run.status.value,
             "job": r.dagster_run.job_name, "started": when(r.start_time),
             "documents": r.dagster_run.tags.get(DOCUMENTS_TAG),
             "trigger": r.dagster_run.tags.get(TRIGGER_TAG)
             or r.dagster_run.tags.get("dagster/sensor_name")
             or r.dagster_run.tags.get("dagster/schedule_name")} for r in records]
    for row in rows:
        if as_json:
            print(json.dumps(row))
        else:
            print(f"{row['run_id']}  {row['status']:<11} {row['job']:<20} "
                  f"{row['started'] or '-':<25} {row['trigger'] or '-'}")
    if not rows and not as_json:
        print("no runs yet")


def status(args: argparse.Namespace) -> int:
    target = (args.id or "").strip().lower()
    if target and not (RUN_ID.fullmatch(target) or DOCUMENT_ID.fullmatch(target)):
        say(f"{args.id!r} is neither a run id nor a document id (64 hexadecimal characters; "
            "`--json` prints whole ids)")
        return EXIT_USAGE
    try:
        with operator_instance(args.settings) as instance, \
                operator_catalog(instance, args.settings) as catalog:
            from doc_runs.defs.upgrade import needs_upgrade

            store = DocumentStore(args.settings.store_dir)
            if needs_upgrade(instance, catalog):
                say("this home holds documents of an earlier release (a partition each) that "
                    "are not in the catalog yet: run `doc-runs upgrade` to carry them over")
            if DOCUMENT_ID.fullmatch(target):
                view = describe_document(target, instance, catalog, store)
                if view is None:
                    say(f"no document {target} in the store")
                    return EXIT_FAILED
                _print_document(view, args.json)
            elif not target:
                _print_recent(instance, args.json)
            elif not print_run(instance, catalog, store, target, as_json=args.json):
                say(f"no run {target} in this Dagster instance ({instance.root_directory})")
                return EXIT_FAILED
    except SetupProblem as problem:
        say(str(problem))
        return EXIT_USAGE
    return EXIT_OK


def add_commands(commands: Any) -> None:
    show = commands.add_parser(
        "status",
        help="what a run or a document went through, stage by stage",
        description="With a RUN_ID: the run's steps (status, attempts, duration, the reason "
        "a step failed) and its documents. With a DOCUMENT_ID: each stage's record (run, "
        "outcome, reason, attempt, duration). With neither: the most recent runs.",
    )
    show.add_argument("id", nargs="?", metavar="RUN_ID|DOCUMENT_ID")
    show.add_argument("--json", action="store_true", help="one JSON object per item")
    show.set_defaults(handler=status)
