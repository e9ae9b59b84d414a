"""The pieces of a stage's step on their own: what the recorder writes of a document that is
still the run's and of one a newer batch took over, the step's rows, counts and usage sums,
which errors end a step without retries, and an interrupt stopping the worker threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRun, Failure, RetryRequested, build_asset_context

from doc_runs.core.agent.protocol import ModelRateLimited
from doc_runs.core.catalog import Batch, DocumentCatalog, NewDocument
from doc_runs.core.outcomes import Outcome, Reason, TransientStageError
from doc_runs.core.stages import DocumentChunks
from doc_runs.core.store import DocumentStore
from doc_runs.defs import stage_runner
from doc_runs.defs.stage_facts import document_facts
from doc_runs.defs.stage_records import DocumentDone, StageRecorder, keeps_progress_journal
from doc_runs.defs.stage_result import step_result
from doc_runs.defs.stage_runner import computed, for_each_document, step_stops
from doc_runs.defs.stage_scope import StageScope
from doc_runs.defs.tags import PROGRESS_TAG

STAGE = "document_chunks"
KEPT, TAKEN, QUARANTINED = (f"{n:064x}" for n in (1, 2, 3))


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[DocumentCatalog]:
    with DocumentCatalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as opened:
        yield opened


@pytest.fixture
def batch(catalog: DocumentCatalog) -> Batch:
    """KEPT, TAKEN and QUARANTINED, TAKEN since named by a newer batch."""
    first = catalog.register_batch("b-1", "acme", [NewDocument(KEPT, ["kept.md"]),
                                                   NewDocument(TAKEN, ["taken.md"]),
                                                   NewDocument(QUARANTINED)], "inbox")
    catalog.register_batch("b-2", "acme", [NewDocument(TAKEN, ["taken.md"])], "inbox")
    return first


def finished(key: str, outcome: Outcome | None = None, duration_s: float = 0.25
             ) -> DocumentDone:
    output = DocumentChunks(document_id=key, outcome=outcome or Outcome.succeeded())
    return DocumentDone(key, output, duration_s, document_facts(output, duration_s, 2, {}))


def test_only_a_document_still_the_runs_is_stored_journaled_and_recorded(
        tmp_path: Path, catalog: DocumentCatalog, batch: Batch) -> None:
    store = DocumentStore(tmp_path / "store")
    recorder = StageRecorder(store, catalog, batch, STAGE, "run-1", 2, journal=True)
    done = [finished(KEPT), finished(TAKEN)]
    for document in done:
        recorder.document_finished(document)

    artifact = store.artifact_path(STAGE, DocumentChunks.VERSION, KEPT)
    assert DocumentChunks.model_validate_json(artifact.read_bytes()) == done[0].output
    assert not store.artifact_path(STAGE, DocumentChunks.VERSION, TAKEN).exists()
    assert store.read_progress("run-1")[0] == [
        {"stage": STAGE, "document_id": KEPT, "status": "succeeded", "reason": None}]
    assert catalog.read_records(KEPT) == {}  # the records wait for the step

    assert recorder.step_finished(done) == {KEPT}
    record = catalog.read_records(KEPT)[STAGE]
    assert (record["run_id"], record["attempt"], record["stage"]) == ("run-1", 2, STAGE)
    assert STAGE not in catalog.read_records(TAKEN)


def test_the_journal_is_kept_only_for_the_commands_own_runs() -> None:
    tags = {PROGRESS_TAG: "journal"}
    assert keeps_progress_journal(DagsterRun(job_name="j", tags=tags))
    assert not keeps_progress_journal(DagsterRun(job_name="j", tags=tags, parent_run_id="p",
                                                 root_run_id="p"))
    assert not keeps_progress_journal(DagsterRun(job_name="j"))


def test_the_steps_rows_counts_and_usage_cover_what_the_run_recorded(
        tmp_path: Path, catalog: DocumentCatalog, batch: Batch) -> None:
    store = DocumentStore(tmp_path / "store")
    store.add_source_name(KEPT, "kept.md")
    scope = StageScope(build_asset_context(), store, catalog, batch, [KEPT, QUARANTINED])
    recorder = StageRecorder(store, catalog, batch, STAGE, "run-1", 2)
    quarantined = Outcome.quarantined(Reason.TOO_LARGE, "big")
    done = [finished(KEPT, duration_s=0.5), finished(QUARANTINED, quarantined, 0.25)]
    usage = {KEPT: {"tokens_in": 7, "model": "m"}, QUARANTINED: {"tokens_in": 5}}

    result = step_result(scope, recorder, done, {KEPT, QUARANTINED}, usage.__getitem__)

    assert [(r["document_id"], r["status"]) for r in result.rows] == [
        (KEPT, "succeeded"), (TAKEN, "superseded"), (QUARANTINED, "quarantined")]
    assert [r["name"] for r in result.rows] == ["kept.md", TAKEN[:12], QUARANTINED[:12]]
    metadata = result.metadata
    assert metadata["outcomes"].data == {"succeeded": 1, "superseded": 1,
                                         "quarantined:too_large": 1}
    assert (metadata["document_count"], metadata["attempt"], metadata["duration_s"]) == (
        3, 2, 0.75)
    assert metadata["tokens_in"] == 12 and "model" not in metadata
    assert set(result.outputs) == {KEPT, QUARANTINED}

    only_kept = step_result(scope, recorder, done, {KEPT}, usage.__getitem__)
    assert only_kept.metadata["tokens_in"] == 7
    assert only_kept.metadata["outcomes"].data == {"succeeded": 1, "superseded": 2}


def test_an_error_a_retry_cannot_fix_fails_the_step_without_retries() -> None:
    def broken(key: str) -> DocumentChunks:
        raise ValueError("bad input")

    with pytest.raises(Failure) as failed:
        computed(STAGE, broken, KEPT)
    assert not failed.value.allow_retries
    assert isinstance(failed.value.__cause__, ValueError)
    assert failed.value.metadata["document_id"].value == KEPT

    def flaky(key: str) -> DocumentChunks:
        raise TransientStageError("try again")

    with pytest.raises(TransientStageError):
        computed(STAGE, flaky, KEPT)


def test_a_rate_limit_retries_the_step_after_the_servers_wait() -> None:
    context = build_asset_context()
    with pytest.raises(RetryRequested) as retried, step_stops(context, STAGE, 4):
        raise ModelRateLimited(12.5, "slow down")
    assert (retried.value.max_retries, retried.value.seconds_to_wait) == (4, 12.5)


@pytest.mark.parametrize("terminating", [True, False])
def test_an_interrupt_in_a_run_asked_to_end_fails_the_step_without_retries(
        monkeypatch: pytest.MonkeyPatch, terminating: bool) -> None:
    monkeypatch.setattr(stage_runner, "run_is_terminating", lambda context: terminating)
    context = build_asset_context()
    with pytest.raises(BaseException) as stopped, step_stops(context, STAGE, 4):
        raise KeyboardInterrupt
    if terminating:
        assert isinstance(stopped.value, Failure) and not stopped.value.allow_retries
    else:
        assert isinstance(stopped.value, KeyboardInterrupt)


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_only_an_interrupt_stops_the_isolated_calls_of_the_busy_documents(
        monkeypatch: pytest.MonkeyPatch, error: type[BaseException]) -> None:
    stops: list[str] = []
    second_running, isolated_calls_stopped = threading.Event(), threading.Event()

    def stop_isolated_calls(reason: str) -> None:
        stops.append(reason)
        isolated_calls_stopped.set()

    monkeypatch.setattr(stage_runner, "stop_isolated_calls", stop_isolated_calls)
    busy_ended_by_stop: list[bool] = []

    def work(key: str) -> DocumentDone:
        if key == "a":
            second_running.wait(5)
            raise error("stop")
        second_running.set()
        busy_ended_by_stop.append(isolated_calls_stopped.wait(1))  # a parser still busy
        return finished(key)

    with pytest.raises(error):
        for_each_document(["a", "b"], work, 2, "document_text")
    if error is KeyboardInterrupt:
        assert stops == ["document_text interrupted (KeyboardInterrupt)"]
        assert busy_ended_by_stop == [True]
    else:
        assert stops == [] and busy_ended_by_stop == [False]


def test_one_worker_takes_the_documents_in_order_on_this_thread() -> None:
    threads: list[str] = []

    def work(key: str) -> DocumentDone:
        threads.append(threading.current_thread().name)
        return finished(key)

    done = for_each_document([KEPT, TAKEN], work, 1, STAGE)
    assert [d.key for d in done] == [KEPT, TAKEN]
    assert set(threads) == {threading.current_thread().name}
