"""doc-runs reexecute and status: what an operator does after a failure, from a terminal.

Thin: re-execution is Dagster's own (the run the UI's "Re-execute" menu would create, from the
same code location), and status reads what the runs recorded, never re-deriving it."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from doc_runs.project import ensure_dagster_home, project_dir

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DOCUMENT_ID = re.compile(r"[0-9a-f]{64}")
# A daemon that has not written a heartbeat for this long is taken for stopped.
DAEMON_SILENT_S = 60.0
RECENT_RUNS = 20


def _say(message: str) -> None:
    print(f"doc-runs: {message}", file=sys.stderr)


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def daemon_launches_queued_runs(instance: Any) -> bool:
    """Whether queued runs are launched by a running daemon: the instance queues runs and its
    daemon's run-queue loop wrote a heartbeat lately."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_SILENT_S


class SetupProblem(Exception):
    """DAGSTER_HOME or the instance's storage cannot be used; the message says why."""


@contextmanager
def operator_instance() -> Iterator[Any]:
    """The configured Dagster instance, or SetupProblem saying why it cannot be had."""
    from dagster import DagsterInstance

    try:
        home = ensure_dagster_home()
    except OSError as unusable:
        raise SetupProblem(f"cannot use DAGSTER_HOME: {unusable}") from None
    try:
        instance = DagsterInstance.get()
    except Exception as failed:
        raise SetupProblem(f"the Dagster instance in {home} cannot be used: "
                           f"{' '.join(str(failed).split())[:500]}") from None
    with instance:
        try:
            instance.get_run_records(limit=1)  # the storage answers, or we say so now
        except Exception as failed:
            raise SetupProblem(f"the Dagster instance in {home} cannot be used: "
                               f"{' '.join(str(failed).split())[:500]}") from None
        yield instance


@contextmanager
def operator_catalog(instance: Any) -> Iterator[Any]:
    """The instance's document catalog, or SetupProblem saying why it cannot be had."""
    from doc_runs.core.catalog import CatalogUnavailable, DocumentCatalog
    from doc_runs.defs.resources import instance_catalog_url

    try:
        catalog = DocumentCatalog(instance_catalog_url(instance))
    except CatalogUnavailable as failed:
        raise SetupProblem(str(failed)) from None
    with catalog:
        yield catalog


def reexecute(args: argparse.Namespace) -> int:
    from doc_runs.defs.launch import NotReexecutable, reexecutable_run

    run_id = args.run_id.strip().lower()
    if not RUN_ID.fullmatch(run_id):
        _say(f"{args.run_id!r} is not a run id (a run id looks like "
             "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9; `doc-runs status` lists recent runs, "
             "`--json` prints whole ids)")
        return EXIT_USAGE
    try:
        with operator_instance() as instance:
            try:
                parent = reexecutable_run(instance, run_id)
            except NotReexecutable as refused:
                _say(f"cannot re-execute: {refused}")
                return EXIT_USAGE
            return _launch_reexecution(instance, parent, args)
    except SetupProblem as problem:
        _say(str(problem))
        return EXIT_USAGE


def _launch_reexecution(instance: Any, parent: Any, args: argparse.Namespace) -> int:
    from doc_runs.defs.launch import create_reexecution

    how = "all steps" if args.all_steps else "from failure"

    def create(workspace: Any) -> Any:
        try:
            return create_reexecution(instance, workspace, parent, all_steps=args.all_steps)
        except Exception as refused:  # Dagster's own refusal, e.g. no step to redo
            raise Refused(f"cannot re-execute run {parent.run_id} {how}: "
                          f"{' '.join(str(refused).split())}") from None

    return _start_and_follow(instance, create, f"re-execution of {parent.run_id} {how}",
                             "doc-runs reexecute", args.wait)


class Refused(Exception):
    """The run cannot be created; the message says why."""


def _start_and_follow(instance: Any, create: Any, what: str, command: str, wait: bool) -> int:
    """Creates a run against the code location (as the UI does) and queues it where a daemon
    launches queued runs, else launches it here; prints its id, and waits for it where it is
    run here or `wait` asks to."""
    from doc_runs.cli_runs import EXIT_INTERRUPTED, RunsCanceled, interrupts_raised
    from doc_runs.cli_runs import wait_or_cancel as wait_for_runs

    queued = daemon_launches_queued_runs(instance)
    try:
        with interrupts_raised(), loaded_code_location(instance) as workspace:
            try:
                run = create(workspace)
            except Refused as refused:
                _say(str(refused))
                return EXIT_USAGE
            if queued:
                # As the UI does: the run waits its turn under the run and pool limits.
                instance.submit_run(run.run_id, workspace)
                print(f"run {run.run_id} queued: {what}; the daemon launches it",
                      file=sys.stderr)
            else:
                if not wait:
                    _say("no daemon is launching queued runs here, so this command runs it "
                         "itself and waits for it")
                instance.launch_run(run.run_id, workspace)
                print(f"run {run.run_id} started: {what}", file=sys.stderr)
            print(run.run_id, flush=True)
            if queued and not wait:
                return EXIT_OK
            statuses = wait_for_runs(instance, [run.run_id], command=command,
                                     on_poll=QueuedNotice(instance, run.run_id))
    except RunsCanceled as canceled:
        _say(f"interrupted ({canceled.signal_name}); run {run.run_id} was canceled")
        return EXIT_INTERRUPTED
    with operator_catalog(instance) as catalog:
        _print_run(instance, catalog, run.run_id, as_json=False, stream=sys.stderr)
    return EXIT_OK if statuses[run.run_id].value == "SUCCESS" else EXIT_FAILED


def rerun(args: argparse.Namespace) -> int:
    """A run of one document alone, as a new request (a fix was deployed, a model changed):
    a batch of its own, for its owner, into today's partition."""
    from doc_runs.cli_queue import configured
    from doc_runs.core.store import DocumentStore

    document_id = args.document_id.strip().lower()
    if not DOCUMENT_ID.fullmatch(document_id):
        _say(f"{args.document_id!r} is not a document id (64 hexadecimal characters; "
             "`doc-runs process --json` and the API print them)")
        return EXIT_USAGE
    store = DocumentStore(configured("document_store").root)
    owner = store.owner(document_id)
    if owner is None:
        _say(f"no document {document_id} in the store")
        return EXIT_FAILED
    if args.tenant is not None and args.tenant != owner:
        # The one auth rule: another tenant's document reads exactly as a missing one.
        _say(f"no document {document_id} in the store for tenant {args.tenant!r}")
        return EXIT_FAILED
    try:
        with operator_instance() as instance, operator_catalog(instance) as catalog:
            def create(workspace: Any) -> Any:
                import uuid

                from doc_runs.defs.batches import register
                from doc_runs.defs.launch import create_job_run
                from doc_runs.defs.partitions import PARTITION_TAG

                batch, tags = register(catalog, store, f"rerun-{uuid.uuid4().hex}", owner,
                                       [document_id], "rerun")
                return create_job_run(instance, workspace, "document_pipeline",
                                      {**tags, PARTITION_TAG: batch.day})

            return _start_and_follow(instance, create, f"document {document_id} alone",
                                     "doc-runs rerun", args.wait)
    except SetupProblem as problem:
        _say(str(problem))
        return EXIT_USAGE


@contextmanager
def loaded_code_location(instance: Any) -> Iterator[Any]:
    """The doc_runs code location in a code server of this command's, or SetupProblem saying
    why it does not load (a wrong setting, usually)."""
    from doc_runs.defs.launch import code_location_workspace

    started = code_location_workspace(instance, project_dir())
    try:
        workspace = started.__enter__()
    except Exception as failed:
        raise SetupProblem(f"the doc_runs code location cannot be loaded: "
                           f"{' '.join(str(failed).split())[:1500]}") from None
    try:
        yield workspace
    except BaseException:
        if not started.__exit__(*sys.exc_info()):
            raise
    else:
        started.__exit__(None, None, None)


class QueuedNotice:
    """Says once, while waiting, that a queued run is not being launched: the daemon that
    seemed to run when it was queued has stopped."""

    def __init__(self, instance: Any, run_id: str, after_s: float = 60.0) -> None:
        self.instance, self.run_id = instance, run_id
        self.since = time.monotonic()
        self.after_s = after_s
        self.said = False

    def __call__(self, states: dict[Any, Any]) -> None:
        if self.said or states[self.run_id].value != "QUEUED":
            return
        if time.monotonic() - self.since > self.after_s and \
                not daemon_launches_queued_runs(self.instance):
            _say(f"run {self.run_id} is still queued and no daemon has launched a run for "
                 f"{self.after_s:.0f} s: start the daemon (bin/up, or dagster-daemon run), or "
                 "press Ctrl-C to cancel it")
            self.said = True


def describe_run(instance: Any, catalog: Any, run_id: str) -> dict[str, Any] | None:
    """What run `run_id` went through: its steps with their attempts and the reason each
    failed step gives, and each of its documents' records."""
    from doc_runs.cli_queue import configured
    from doc_runs.cli_runs import failure_message
    from doc_runs.core.status import document_status
    from doc_runs.core.store import DocumentStore
    from doc_runs.defs.partitions import BATCH_TAG, run_documents

    record = next(iter(instance.get_run_records(_runs_filter(run_ids=[run_id]))), None)
    if record is None:
        return None
    from doc_runs.defs.launch import unfinished_reexecutions

    run = record.dagster_run
    ended = run.is_finished
    steps = []
    for stats in sorted(instance.get_run_step_stats(run_id),
                        key=lambda s: s.start_time or 0):
        steps.append({
            "step": stats.step_key,
            # A step with no end in a run that ended was cut off (its process killed).
            "status": stats.status.value if stats.status else
            ("NOT_FINISHED" if ended else "IN_PROGRESS"),
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
    store = DocumentStore(configured("document_store").root)
    docs = []
    keys = run_documents(catalog, run.tags)
    records_of = catalog.records_of(keys)
    for key in keys:
        records = records_of[key]
        state = document_status(records)
        docs.append({
            "document_id": key,
            "names": store.source_names(key)[:3],
            "state": state.state.value, "reason": state.reason, "detail": state.detail,
            "stages_recorded_by_this_run": [stage for stage, rec in records.items()
                                            if rec.get("run_id") == run_id],
        })
    return {
        "run_id": run_id, "job": run.job_name, "status": run.status.value,
        "parent_run_id": run.parent_run_id, "root_run_id": run.root_run_id,
        "trigger": run.tags.get("doc_runs/trigger") or run.tags.get("dagster/sensor_name")
        or run.tags.get("dagster/schedule_name"),
        "tenant": run.tags.get("doc_runs/tenant"), "batch": run.tags.get(BATCH_TAG),
        "day": run.tags.get("dagster/partition"),
        "started": _when(record.start_time), "ended": _when(record.end_time),
        "failure": failure, "steps": steps, "documents": docs,
        "reexecuting": [{"run_id": child.run_id, "status": child.status.value}
                        for child in unfinished_reexecutions(instance, run_id)],
    }


def _runs_filter(**kwargs: Any) -> Any:
    from dagster import RunsFilter

    return RunsFilter(**kwargs)


def describe_document(document_id: str, instance: Any, catalog: Any
                      ) -> dict[str, Any] | None:
    """Every stage's record of the document: which run wrote it, its outcome, reason,
    attempt and duration; the batches that named it and their runs (newest first); and,
    where it did not finish, how the run of its last record ended (a run that failed
    without a daemon to record it for each document)."""
    from doc_runs.cli_queue import configured
    from doc_runs.core.status import RUN_FAILURE, STAGES, document_status
    from doc_runs.core.store import DocumentStore
    from doc_runs.defs.partitions import BATCH_TAG

    store = DocumentStore(configured("document_store").root)
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
            "run_id": rec.get("run_id"), "recorded": _when(rec.get("recorded_at")),
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
        from doc_runs.cli_runs import failure_message

        run = instance.get_run_by_id(latest["run_id"])
        if run is not None:
            last_run = {"run_id": run.run_id, "status": run.status.value,
                        "failure": failure_message(instance, run.run_id)
                        if run.is_finished and run.status.value != "SUCCESS" else None}
    return {"document_id": document_id, "names": store.source_names(document_id),
            "owner": store.owner(document_id), "state": state.state.value,
            "reason": state.reason, "detail": state.detail,
            "stage_reached": state.stage_reached, "stages": stages, "runs": runs,
            "last_run": last_run}


def _print_run(instance: Any, catalog: Any, run_id: str, *, as_json: bool,
               stream: Any = None) -> bool:
    view = describe_run(instance, catalog, run_id)
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
        print(f"  document {doc['document_id'][:12]}  {name}  {doc['state']}{why}", file=out)
    for child in view["reexecuting"]:
        print(f"  being re-executed by run {child['run_id']} ({child['status']}): its "
              "documents' states above are from before", file=out)
    if view["status"] in ("FAILURE", "CANCELED") and not view["reexecuting"]:
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
            print(f"  re-execute it: doc-runs reexecute {last['run_id']}")


def _print_recent(instance: Any, as_json: bool) -> None:
    records = instance.get_run_records(limit=RECENT_RUNS)
    rows = [{"run_id": r.dagster_run.run_id, "status": r.dagster_run.status.value,
             "job": r.dagster_run.job_name, "started": _when(r.start_time),
             "documents": r.dagster_run.tags.get("doc_runs/documents"),
             "trigger": r.dagster_run.tags.get("doc_runs/trigger")
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
        _say(f"{args.id!r} is neither a run id nor a document id (64 hexadecimal characters; "
             "`--json` prints whole ids)")
        return EXIT_USAGE
    try:
        with operator_instance() as instance, operator_catalog(instance) as catalog:
            from doc_runs.defs.upgrade import needs_upgrade

            if needs_upgrade(instance, catalog):
                _say("this home holds documents of an earlier release (a partition each) that "
                     "are not in the catalog yet: run `doc-runs upgrade` to carry them over")
            if DOCUMENT_ID.fullmatch(target):
                view = describe_document(target, instance, catalog)
                if view is None:
                    _say(f"no document {target} in the store")
                    return EXIT_FAILED
                _print_document(view, args.json)
            elif not target:
                _print_recent(instance, args.json)
            elif not _print_run(instance, catalog, target, as_json=args.json):
                _say(f"no run {target} in this Dagster instance ({instance.root_directory})")
                return EXIT_FAILED
    except SetupProblem as problem:
        _say(str(problem))
        return EXIT_USAGE
    return EXIT_OK


def upgrade(args: argparse.Namespace) -> int:
    """Carries a home made when every document was a partition into the catalog."""
    from doc_runs.cli_queue import configured
    from doc_runs.core.store import DocumentStore
    from doc_runs.defs.upgrade import upgrade_home

    store = DocumentStore(configured("document_store").root)
    try:
        with operator_instance() as instance, operator_catalog(instance) as catalog:
            report = upgrade_home(instance, catalog, store,
                                  progress=lambda line: print(line, file=sys.stderr))
    except SetupProblem as problem:
        _say(str(problem))
        return EXIT_USAGE
    summary = {"partitions": report.registered, "carried": report.carried,
               "already_in_catalog": report.already, "stored_only": report.stored_only,
               "missing_from_store": len(report.missing), "states": dict(report.states)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{report.registered} documents were partitions: {report.carried} carried into the "
              f"catalog with their records, {report.already} there already, "
              f"{len(report.missing)} with no bytes in the store (left out); "
              f"{report.stored_only} stored but never registered, listed as pending")
        print("documents by state: " + ", ".join(f"{n} {state}" for state, n
                                                 in sorted(report.states.items())))
        for key in report.missing[:10]:
            print(f"  not in the store: {key}")
    return EXIT_OK


def add_operate_commands(commands: Any) -> None:
    carry = commands.add_parser(
        "upgrade",
        help="carry a home made by an earlier release (a partition per document) into the "
        "catalog",
        description="Reads every document an earlier release registered as a partition of "
        "`documents` and its per-stage records from the store, and writes them into the "
        "catalog, so that every document keeps its names, owner and state. Run it once with "
        "the deployment stopped; running it again adds nothing. Nothing is deleted.",
    )
    carry.add_argument("--json", action="store_true", help="print the summary as JSON")
    carry.set_defaults(handler=upgrade)
    again = commands.add_parser(
        "reexecute",
        help="re-execute a failed run, from its failed steps (as the UI's Re-execute menu)",
        description="Re-executes a failed or canceled run from the same code location the "
        "Dagster UI uses: from failure by default (stages that completed are not run again, "
        "and model calls already answered are read from the cache), or all steps. Where a "
        "daemon launches queued runs, the run is queued as the UI queues it; otherwise this "
        "command runs it and waits. Prints the new run's id.",
    )
    again.add_argument("run_id", metavar="RUN_ID")
    again.add_argument("--all-steps", action="store_true",
                       help="run every step again, not only the failed ones")
    again.add_argument("--wait", action="store_true",
                       help="wait for the new run to end and exit non-zero if it failed")
    again.set_defaults(handler=reexecute)
    again_one = commands.add_parser(
        "rerun",
        help="run one document again, in a run of its own",
        description="Starts a run for DOCUMENT_ID alone, as a new request (a fix was "
        "deployed, a model changed): its stages run again (model calls already answered are "
        "read from the cache) and it records over the document's earlier results. Queued "
        "where a daemon launches runs; otherwise this command runs it and waits. Prints the "
        "run's id.",
    )
    again_one.add_argument("document_id", metavar="DOCUMENT_ID")
    again_one.add_argument("--tenant", default=None,
                           help="refuse unless the document is this tenant's")
    again_one.add_argument("--wait", action="store_true",
                           help="wait for the run to end and exit non-zero if it failed")
    again_one.set_defaults(handler=rerun)
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
