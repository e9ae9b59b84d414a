"""doc-runs process: stores the inputs, starts runs on the configured Dagster instance and
reports what the runs recorded."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from doc_runs.auth import valid_tenant
from doc_runs.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    collect_inputs,
    fail,
    say,
)
from doc_runs.cli.progress import ProgressView, StageCounts, print_outcome_table
from doc_runs.core.agent.ledger import CallRecord, totals
from doc_runs.core.intake import IntakeRefused, store_file
from doc_runs.core.stages import DocumentFindings, DocumentSummary
from doc_runs.core.store import DocumentStore, display_name
from doc_runs.defs.tags import PROGRESS_TAG, TRIGGER_TAG
from doc_runs.project import ensure_dagster_home, project_dir

if TYPE_CHECKING:
    from doc_runs.core.catalog import DocumentCatalog


@dataclass
class InputFile:
    path: str
    document_id: str | None = None
    refused: IntakeRefused | None = None
    result: dict[str, Any] = field(default_factory=dict)


def cores() -> int:
    """CPU cores this process may use (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def ingest(store: DocumentStore, files: list[str], tenant: str, max_bytes: int,
           checkpoint: Callable[[], None] = lambda: None) -> list[InputFile]:
    """Stores each file (or notes why it was refused); `checkpoint` runs before each."""
    inputs = []
    for path in files:
        checkpoint()
        item = InputFile(path=path)
        try:
            item.document_id = store_file(store, path, tenant=tenant, max_bytes=max_bytes)
        except IntakeRefused as refused:
            item.refused = refused
        inputs.append(item)
    return inputs


def document_result(store: DocumentStore, catalog: DocumentCatalog, document_id: str,
                    run_id: str, run_failure: str | None) -> dict[str, Any]:
    """The document's outcome as recorded by run `run_id`; records of earlier runs do not
    count, so a document that succeeded yesterday and failed now reads as failed."""
    records = {
        stage: record for stage, record in catalog.read_records(document_id).items()
        if record.get("run_id") == run_id
    }
    usage = run_usage(store, document_id, run_id)
    final = records.get("document_summary")
    if final is None:
        empty = {"pages": None, "chunks": None, "findings": None, "summary": None,
                 "usage": usage}
        if run_failure is None:
            # The run ended well but recorded nothing of it: the document was asked for again
            # meanwhile (a newer batch takes it; see doc_runs.core.catalog).
            return {"status": "superseded", "reason": None,
                    "detail": "the document was asked for again while this run worked on it; "
                    f"the newer request's run records it (doc-runs status {document_id})",
                    **empty}
        return {"status": "failed", "reason": None, "detail": run_failure, **empty}
    summary = findings = None
    if records.get("document_findings", {}).get("status") == "succeeded":
        raw = store.read_artifact("document_findings", DocumentFindings.VERSION, document_id)
        found = DocumentFindings.model_validate_json(raw).findings
        findings = ({name: answer.view() for name, answer in found.fields.items()}
                    if found else None)
    if final["status"] == "succeeded":
        raw = store.read_artifact("document_summary", DocumentSummary.VERSION, document_id)
        parsed = DocumentSummary.model_validate_json(raw).summary
        summary = parsed.text if parsed else None
    return {
        "status": final["status"],
        "reason": final.get("reason"),
        "detail": final.get("detail"),
        "pages": records.get("document_text", {}).get("pages"),
        "chunks": records.get("document_chunks", {}).get("chunks"),
        "findings": findings,
        "summary": summary,
        "usage": usage,
    }


def run_usage(store: DocumentStore, document_id: str, run_id: str) -> dict[str, Any]:
    """What the run spent on the document: model calls (cached ones cost nothing), tool
    calls, tokens and estimated cost, over every attempt."""
    usage = totals([CallRecord.model_validate(r) for r in store.read_ledger(document_id)
                    if r["run_id"] == run_id])
    return usage.model_dump(exclude={"latency_s"})


def run_batches(instance: Any, store: DocumentStore, catalog: DocumentCatalog,
                batches: list[list[str]], args: argparse.Namespace,
                code_location: Callable[[], Any], own_stderr: TextIO, launched: list[str]
                ) -> tuple[dict[str, str], dict[str, str | None]]:
    """Runs the batches, one run each, with progress on `own_stderr`, then the corpus report
    of their day unless --no-report; returns each document's run and the failure message of
    each run that did not succeed. `code_location` waits for the workspace; `launched` gets
    every run id as it starts, whatever happens after."""
    from doc_runs.cli.runs import failure_message, launch_and_wait, wait_or_cancel
    from doc_runs.defs.batches import register
    from doc_runs.defs.launch import launch_job_run
    from doc_runs.defs.partitions import PARTITION_TAG
    from doc_runs.defs.run_failures import record_failure_of_run

    wanted = [key for batch in batches for key in batch]
    days: set[str] = set()
    terminal = own_stderr.isatty()
    view = ProgressView(StageCounts(store, wanted), live=terminal,
                        runs_total=len(batches), stream=own_stderr) \
        if terminal or args.progress else None
    with view or nullcontext():
        workspace = code_location()

        def launch(documents: list[str]) -> str:
            batch, tags = register(catalog, store, f"cli-{uuid.uuid4().hex}", args.tenant,
                                   documents, "cli")
            days.add(batch.day)
            return launch_job_run(instance, workspace, "document_pipeline",
                                  {**tags, PROGRESS_TAG: "journal",
                                   PARTITION_TAG: batch.day}).run_id

        run_of, statuses = launch_and_wait(instance, batches, launch, view,
                                           max_in_flight=cores(),
                                           launched=launched)
        failures = {run_id: failure_message(instance, run_id)
                    or f"the run ended {status.value} before the document finished"
                    for run_id, status in statuses.items()
                    if status.value != "SUCCESS"}
        for run_id, status in statuses.items():
            if status.value == "FAILURE":
                # Its documents read failed now, whether or not a daemon is there to say so.
                record_failure_of_run(instance, catalog, run_id)
        if not args.no_report:
            reports = [launch_job_run(instance, workspace, "corpus_report_job",
                                      {TRIGGER_TAG: "cli", PARTITION_TAG: day}).run_id
                       for day in sorted(days)]
            wait_or_cancel(instance, reports)
    return run_of, failures


def checked_files(args: argparse.Namespace) -> list[str] | int:
    """The files to process, or the exit code when there is nothing to do or the arguments are
    wrong (said on standard error)."""
    if args.batch_size is not None and args.batch_size < 1:
        return fail("--batch-size must be at least 1", EXIT_USAGE)
    try:
        files = collect_inputs(args.paths)
    except FileNotFoundError as missing:
        return fail(f"no such file or directory: {missing}", EXIT_USAGE)
    if not valid_tenant(args.tenant):
        return fail(f"{args.tenant!r} is not a tenant name (lower-case letters, digits, "
                    "- and _)", EXIT_USAGE)
    if not files:
        say("no files under " + ", ".join(args.paths)
            + " (names starting with a dot are skipped; name such a file to include it)")
        return EXIT_OK
    return files


@dataclass
class ProcessRuns:
    """One `doc-runs process` against an instance: its inputs stored, its runs and how they
    ended, and where its child processes' output went."""

    args: argparse.Namespace
    instance: Any
    store: DocumentStore
    log_path: Any
    catalog: Any = None
    inputs: list[InputFile] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    run_of: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)

    def run(self, files: list[str], stack: ExitStack) -> None:
        """Stores the files and runs them in batches against a code server of its own."""
        from doc_runs.cli.runs import (
            children_output_to,
            interrupts_raised,
            plan_batches,
            raise_if_interrupted,
        )
        from doc_runs.core.catalog import DocumentCatalog
        from doc_runs.defs.batches import chunked
        from doc_runs.defs.launch import code_location_workspace_started
        from doc_runs.defs.resources import instance_catalog_url
        from doc_runs.defs.upgrade import needs_upgrade

        args, instance = self.args, self.instance
        # The code server starts while the inputs are stored; it, every process it starts and
        # Dagster's warnings here write to the log, the progress to `own_stderr`. From here a
        # signal raises Interrupted: whatever was started is stopped.
        with interrupts_raised(), children_output_to(self.log_path) as own_stderr, \
                code_location_workspace_started(instance, project_dir()) as code_location:
            self.catalog = stack.enter_context(DocumentCatalog(
                instance_catalog_url(instance, args.settings)))
            if needs_upgrade(instance, self.catalog):
                print("doc-runs: this home holds documents of an earlier release (a partition "
                      "each) that are not in the catalog yet: run `doc-runs upgrade` to carry "
                      "them over", file=own_stderr)
            self.inputs = ingest(self.store, files, args.tenant, args.settings.max_bytes,
                                 checkpoint=raise_if_interrupted)
            wanted = list(dict.fromkeys(i.document_id for i in self.inputs if i.document_id))
            batches = chunked(wanted, plan_batches(len(wanted), args.batch_size, cores())
                              ) if wanted else []
            # Nothing to run when every input was refused at intake.
            if batches:
                self.run_of, self.failures = run_batches(
                    instance, self.store, self.catalog, batches, args, code_location,
                    own_stderr, self.launched)


def process(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from doc_runs.cli.runs import Interrupted, RunsCanceled, child_log_path, tidy_child_log

    files = checked_files(args)
    if isinstance(files, int):
        return files
    try:
        # The project's own .dagster_home unless set; its dagster.yaml.
        ensure_dagster_home(args.settings.dagster_home)
    except OSError as unusable:
        return fail(f"cannot use DAGSTER_HOME: {unusable}", EXIT_USAGE)
    with DagsterInstance.get() as instance, ExitStack() as stack:
        runs = ProcessRuns(args, instance, DocumentStore(args.settings.store_dir),
                           child_log_path(instance))
        try:
            runs.run(files, stack)
        except RunsCanceled as canceled:
            log_of_runs = tidy_child_log(runs.log_path)
            return fail(f"interrupted ({canceled.signal_name}); canceled "
                        f"{len(canceled.run_ids)} unfinished run(s) and freed their slots. Run "
                        "the same command again to finish: stages already done are not redone."
                        + (f" The runs' own output is in {log_of_runs}." if log_of_runs
                           else ""), EXIT_INTERRUPTED)
        except Interrupted as interrupted:
            # Outside the waits that cancel runs: storing the inputs, starting the server, or
            # between the runs' end and the report.
            when = "after its runs had ended" if runs.launched else "before any run started"
            return fail(f"interrupted ({interrupted}) {when}; the files stored so far are "
                        "kept. Run the same command again to go on.", EXIT_INTERRUPTED)
        finally:
            log_of_runs = tidy_child_log(runs.log_path)
            for run_id in runs.launched:
                runs.store.delete_progress(run_id)
        rows = outcome_rows(runs.inputs, runs.store, runs.catalog, runs.run_of, runs.failures)
    return report_outcomes(rows, args.json, log_of_runs)


def report_outcomes(rows: list[dict[str, Any]], as_json: bool, log_of_runs: Any) -> int:
    """Prints a line per input (JSON, or the table); the exit code says whether any failed."""
    failed = any(line["status"] == "failed" for line in rows)
    if as_json:
        for line in rows:
            print(json.dumps(line, ensure_ascii=False), flush=True)
    else:
        print_outcome_table(rows)
    if failed and log_of_runs is not None:
        say(f"the runs' own output is in {log_of_runs}")
    return EXIT_FAILED if failed else EXIT_OK


def outcome_rows(inputs: list[InputFile], store: DocumentStore, catalog: DocumentCatalog,
                 run_of: dict[str, str], failures: dict[str, str | None]
                 ) -> list[dict[str, Any]]:
    """One line per input file: refused at intake, or what its run recorded."""
    rows = []
    for item in inputs:
        line: dict[str, Any] = {"path": display_name(item.path),
                                "document_id": item.document_id}
        if item.refused is not None:
            line.update(status="quarantined", reason=item.refused.reason.value,
                        detail=item.refused.detail, pages=None, chunks=None, findings=None,
                        summary=None, usage=None)
            line["run_id"] = None
        else:
            run_id = run_of[item.document_id]
            line.update(document_result(store, catalog, item.document_id, run_id,
                                        failures.get(run_id)))
            line["run_id"] = run_id
        rows.append(line)
    return rows


def add_commands(commands: Any) -> None:
    run = commands.add_parser(
        "process",
        help="run the document pipeline through Dagster over files and folders",
        description="Stores every file under PATH, runs the document pipeline on the "
        "configured Dagster instance (DAGSTER_HOME, else ./.dagster_home) and prints one "
        "outcome per file. The runs show in the Dagster UI and can be re-executed there.",
    )
    run.add_argument("paths", nargs="+", metavar="PATH")
    run.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    run.add_argument("--batch-size", type=int, default=None,
                     help="most documents in one run (default: as few runs as keep every "
                     "core busy, at most 500 documents each)")
    run.add_argument("--no-report", action="store_true",
                     help="do not refresh the corpus report afterwards")
    run.add_argument("--tenant", default="default",
                     help="tenant the runs' model usage is booked to (default: default)")
    run.add_argument("--progress", action="store_true",
                     help="report progress per stage even when stderr is not a terminal "
                     "(a plain line whenever it moves)")
    run.set_defaults(handler=process)
