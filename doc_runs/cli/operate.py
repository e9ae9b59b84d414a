"""doc-runs reexecute, rerun and upgrade: what an operator does after a failure or a fix, from
a terminal (doc-runs status is doc_runs/cli/status.py).

Thin: re-execution is Dagster's own (the run the UI's "Re-execute" menu would create, from the
same code location); a re-run is a batch of one document and a run of it."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from doc_runs.cli.common import (
    DOCUMENT_ID,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RUN_ID,
    SetupProblem,
    say,
)
from doc_runs.cli.instance import daemon_launches_queued_runs, operator_catalog, operator_instance
from doc_runs.cli.status import print_run
from doc_runs.core.store import DocumentStore
from doc_runs.project import project_dir
from doc_runs.settings import Settings


def reexecute(args: argparse.Namespace) -> int:
    from doc_runs.defs.launch import NotReexecutable, reexecutable_run

    run_id = args.run_id.strip().lower()
    if not RUN_ID.fullmatch(run_id):
        say(f"{args.run_id!r} is not a run id (a run id looks like "
            "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9; `doc-runs status` lists recent runs, "
            "`--json` prints whole ids)")
        return EXIT_USAGE
    try:
        with operator_instance(args.settings) as instance:
            try:
                parent = reexecutable_run(instance, run_id)
            except NotReexecutable as refused:
                say(f"cannot re-execute: {refused}")
                return EXIT_USAGE
            return _launch_reexecution(instance, parent, args)
    except SetupProblem as problem:
        say(str(problem))
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

    return _start_and_follow(instance, args.settings, create,
                             f"re-execution of {parent.run_id} {how}",
                             "doc-runs reexecute", args.wait)


class Refused(Exception):
    """The run cannot be created; the message says why."""


def _start_and_follow(instance: Any, settings: Settings, create: Any, what: str, command: str,
                      wait: bool) -> int:
    """Creates a run against the code location (as the UI does) and queues it where a daemon
    launches queued runs, else launches it here; prints its id, and waits for it where it is
    run here or `wait` asks to."""
    from doc_runs.cli.runs import RunsCanceled, interrupts_raised
    from doc_runs.cli.runs import wait_or_cancel as wait_for_runs

    queued = daemon_launches_queued_runs(instance)
    try:
        with interrupts_raised(), loaded_code_location(instance) as workspace:
            try:
                run = create(workspace)
            except Refused as refused:
                say(str(refused))
                return EXIT_USAGE
            if queued:
                # As the UI does: the run waits its turn under the run and pool limits.
                instance.submit_run(run.run_id, workspace)
                print(f"run {run.run_id} queued: {what}; the daemon launches it",
                      file=sys.stderr)
            else:
                if not wait:
                    say("no daemon is launching queued runs here, so this command runs it "
                        "itself and waits for it")
                instance.launch_run(run.run_id, workspace)
                print(f"run {run.run_id} started: {what}", file=sys.stderr)
            print(run.run_id, flush=True)
            if queued and not wait:
                return EXIT_OK
            statuses = wait_for_runs(instance, [run.run_id], command=command,
                                     on_poll=QueuedNotice(instance, run.run_id))
    except RunsCanceled as canceled:
        say(f"interrupted ({canceled.signal_name}); run {run.run_id} was canceled")
        return EXIT_INTERRUPTED
    with operator_catalog(instance, settings) as catalog:
        if statuses[run.run_id].value == "FAILURE":
            # Its documents read failed now, whether or not a daemon is there to say so.
            from doc_runs.defs.run_failures import record_failure_of_run

            record_failure_of_run(instance, catalog, run.run_id)
        print_run(instance, catalog, DocumentStore(settings.store_dir), run.run_id,
                  as_json=False, stream=sys.stderr)
    return EXIT_OK if statuses[run.run_id].value == "SUCCESS" else EXIT_FAILED


def rerun(args: argparse.Namespace) -> int:
    """A run of one document alone, as a new request (a fix was deployed, a model changed):
    a batch of its own, for its owner, into today's partition."""

    document_id = args.document_id.strip().lower()
    if not DOCUMENT_ID.fullmatch(document_id):
        say(f"{args.document_id!r} is not a document id (64 hexadecimal characters; "
            "`doc-runs process --json` and the API print them)")
        return EXIT_USAGE
    store = DocumentStore(args.settings.store_dir)
    owner = store.owner(document_id)
    if owner is None or (args.tenant is not None and args.tenant != owner):
        # The one auth rule: another tenant's document reads exactly as a missing one.
        say(f"no document {document_id} in the store"
            + (f" for tenant {args.tenant!r}" if args.tenant is not None else ""))
        return EXIT_FAILED
    try:
        with operator_instance(args.settings) as instance, \
                operator_catalog(instance, args.settings) as catalog:
            def create(workspace: Any) -> Any:
                from doc_runs.defs.batches import fields_requested, register
                from doc_runs.defs.launch import create_job_run
                from doc_runs.defs.partitions import PARTITION_TAG

                # The same request again: with the fields its last run asked for.
                fields = fields_requested(instance, catalog, [document_id])[document_id]
                batch, tags = register(catalog, store, f"rerun-{uuid.uuid4().hex}", owner,
                                       [document_id], "rerun", fields=fields)
                return create_job_run(instance, workspace, "document_pipeline",
                                      {**tags, PARTITION_TAG: batch.day})

            return _start_and_follow(instance, args.settings, create,
                                     f"document {document_id} alone",
                                     "doc-runs rerun", args.wait)
    except SetupProblem as problem:
        say(str(problem))
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
            say(f"run {self.run_id} is still queued and no daemon has launched a run for "
                f"{self.after_s:.0f} s: start the daemon (bin/up, or dagster-daemon run), or "
                "press Ctrl-C to cancel it")
            self.said = True


def upgrade(args: argparse.Namespace) -> int:
    """Carries a home made when every document was a partition into the catalog."""
    from doc_runs.defs.upgrade import upgrade_home

    store = DocumentStore(args.settings.store_dir)
    try:
        with operator_instance(args.settings) as instance, \
                operator_catalog(instance, args.settings) as catalog:
            report = upgrade_home(instance, catalog, store,
                                  progress=lambda line: print(line, file=sys.stderr))
    except SetupProblem as problem:
        say(str(problem))
        return EXIT_USAGE
    summary = {"partitions": report.registered, "carried": report.carried,
               "already_in_catalog": report.already, "stored_only": report.stored_only,
               "missing_from_store": len(report.missing),
               "carried_without_bytes": len(report.without_bytes),
               "states": dict(report.states)}
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
        if report.without_bytes:
            print(f"{len(report.without_bytes)} carried with their records, but their bytes "
                  "are missing from the store (a re-run quarantines them as unreadable until "
                  "the file is stored again):")
            for key in report.without_bytes[:10]:
                print(f"  no bytes: {key}")
    return EXIT_OK


def add_commands(commands: Any) -> None:
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
