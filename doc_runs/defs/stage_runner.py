"""Runs one stage over the documents of a run's batch: each document computed (several at once
where the stage allows), recorded as it finishes and once the step is done (stage_records),
shown in the step's materialization and log (stage_result), and the step ended so that
Dagster retries it only where a retry can help."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

from dagster import AssetExecutionContext, DagsterRunStatus, Failure, RetryRequested

from doc_runs.core.agent.protocol import ModelRateLimited, ModelUnavailable
from doc_runs.core.isolation import stop_isolated_calls
from doc_runs.core.outcomes import TransientStageError
from doc_runs.core.stages import StageOutput
from doc_runs.defs.stage_facts import document_facts
from doc_runs.defs.stage_records import DocumentDone, StageRecorder
from doc_runs.defs.stage_result import ExtraFacts, StageResult, step_result
from doc_runs.defs.stage_scope import StageScope

# Raised for these, a step is retried by its RetryPolicy; anything else is a bug or a
# permanent condition and fails without retries.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientStageError,
    ModelUnavailable,
    ModelRateLimited,  # turned into RetryRequested with the server's wait (step_stops)
    OSError,
    TimeoutError,
    ConnectionError,
)


def run_stage(
    scope: StageScope,
    stage: str,
    compute: Callable[[str], StageOutput],
    *,
    workers: int = 1,
    rate_limit_retries: int = 5,
    extra_facts: ExtraFacts | None = None,
) -> StageResult:
    """`compute` over the scope's documents, `workers` of them at once; `extra_facts` adds
    to each document's record (model usage)."""
    recorder = StageRecorder.of(scope, stage)
    work = partial(run_document, recorder, compute, extra_facts)
    with step_stops(scope.context, stage, rate_limit_retries):
        done = for_each_document(scope.documents, work, workers, stage)
    recorded = recorder.step_finished(done)
    return step_result(scope, recorder, done, recorded, extra_facts)


def run_document(recorder: StageRecorder, compute: Callable[[str], StageOutput],
                 extra_facts: ExtraFacts | None, key: str) -> DocumentDone:
    """One document through the stage, recorded as it finishes; a failure, its recording's
    too, is logged as the document's before it ends the step."""
    started = time.perf_counter()
    try:
        output = computed(recorder.stage, compute, key)
        duration_s = time.perf_counter() - started
        done = DocumentDone(key, output, duration_s, document_facts(
            output, duration_s, recorder.attempt, extra_facts(key) if extra_facts else {}))
        recorder.document_finished(done)
    except BaseException as error:
        recorder.document_failed(key, error, time.perf_counter() - started)
        raise
    return done


def computed(stage: str, compute: Callable[[str], StageOutput], key: str) -> StageOutput:
    """The stage's output for the document; an error that is not transient is a bug or a
    permanent condition, and ends the step without retries."""
    try:
        return compute(key)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        raise Failure(
            description=f"{stage} failed on document {key}: {type(exc).__name__}: {exc}",
            metadata={"document_id": key, "stage": stage, "error": type(exc).__name__},
            allow_retries=False,
        ) from exc


def for_each_document(keys: Sequence[str], work: Callable[[str], DocumentDone], workers: int,
                      stage: str) -> list[DocumentDone]:
    """`work` on each document, in their order; on `workers` threads where there are more
    documents than one."""
    if workers <= 1 or len(keys) <= 1:
        return [work(key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
        try:
            return list(pool.map(work, keys))
        except BaseException as stopped:
            # Dagster raises a run's termination in this thread; leaving the `with` waits for
            # the pool's threads, which would each wait for its parser (minutes for a
            # spinning PDF) unless their workers are stopped first.
            if not isinstance(stopped, Exception):
                pool.shutdown(wait=False, cancel_futures=True)
                stop_isolated_calls(f"{stage} interrupted ({type(stopped).__name__})")
            raise


@contextmanager
def step_stops(context: AssetExecutionContext, stage: str,
               rate_limit_retries: int) -> Iterator[None]:
    """A rate-limited step retried after the server's wait; a step interrupted in a run asked
    to end, failed without retries."""
    try:
        yield
    except ModelRateLimited as limited:
        # The call cache keeps every completed call: the retry re-sends only the rest.
        context.log.warning(f"{stage}: {limited}; retrying the step after the wait")
        raise RetryRequested(max_retries=rate_limit_retries,
                             seconds_to_wait=limited.retry_after_s) from limited
    except BaseException as stopped:
        if not isinstance(stopped, Exception) and run_is_terminating(context):
            # Dagster retries a step its interrupt stopped when the step has a retry policy
            # (it takes the interrupt for a preemption), and the in-process executor would
            # then start this stage again in a run asked to end. A failure that allows no
            # retry ends the step; the run then ends CANCELED (FAILURE where run monitoring
            # stopped it past its maximum runtime).
            raise Failure(description=f"{stage} stopped: the run was asked to terminate",
                          metadata={"stage": stage}, allow_retries=False) from stopped
        raise


def run_is_terminating(context: AssetExecutionContext) -> bool:
    """Whether this run was asked to end or was ended from outside: the UI's Terminate, a
    canceled command (CANCELING, CANCELED), or run monitoring past the maximum runtime, which
    may mark it FAILURE before its interrupt arrives here."""
    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and run.status not in (DagsterRunStatus.STARTED,
                                                  DagsterRunStatus.STARTING)
