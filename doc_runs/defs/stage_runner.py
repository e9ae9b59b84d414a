"""Runs one stage over every document of a step and records the facts of each: outcome,
reason, duration, attempt and the stage's counts, as asset metadata per document, as a record
in the store (which the corpus report reads) and as one JSON log line per step."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagster import AssetExecutionContext, Failure

from doc_runs.core.outcomes import TransientStageError
from doc_runs.core.stages import (
    DocumentChunks,
    DocumentSummary,
    DocumentText,
    StageOutput,
    StoredDocument,
)
from doc_runs.core.store import DocumentStore

# Raised for these, a step is retried by its RetryPolicy; anything else is a bug or a
# permanent condition and fails without retries.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientStageError,
    OSError,
    TimeoutError,
    ConnectionError,
)


def stage_facts(output: StageOutput) -> dict[str, Any]:
    """The counts each stage reports for one document."""
    if isinstance(output, StoredDocument):
        return {
            "media_type": output.media_type,
            "size_bytes": output.size_bytes,
            "source_name": output.source_name,
        }
    if isinstance(output, DocumentText):
        return {
            "pages": len(output.pages),
            "characters": output.chars,
            "pages_without_text": len(output.pages_without_text),
            "pages_failed": len(output.pages_failed),
            "pdf_warnings": output.pdf_warnings,
        }
    if isinstance(output, DocumentChunks):
        return {"chunks": len(output.chunks)}
    if isinstance(output, DocumentSummary):
        summary = output.summary
        return {
            "summary_sentences": len(summary.sentences) if summary else 0,
            "citations": len(summary.citations) if summary else 0,
        }
    return {}


def run_stage(
    context: AssetExecutionContext,
    store: DocumentStore,
    stage: str,
    compute: Callable[[str], StageOutput],
    *,
    workers: int = 1,
) -> dict[str, StageOutput]:
    keys = list(context.partition_keys)
    attempt = context.retry_number + 1

    def one(key: str) -> tuple[str, StageOutput, float]:
        started = time.perf_counter()
        try:
            output = compute(key)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            raise Failure(
                description=f"{stage} failed on document {key}: {type(exc).__name__}: {exc}",
                metadata={"document_id": key, "stage": stage, "error": type(exc).__name__},
                allow_retries=False,
            ) from exc
        return key, output, time.perf_counter() - started

    results: Iterable[tuple[str, StageOutput, float]]
    if workers > 1 and len(keys) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(keys))) as pool:
            results = list(pool.map(one, keys))
    else:
        results = [one(key) for key in keys]

    outputs: dict[str, StageOutput] = {}
    outcomes: Counter[str] = Counter()
    for key, output, duration in results:
        outcome = output.outcome
        facts = {
            "status": outcome.status.value,
            "reason": outcome.reason.value if outcome.reason else None,
            "detail": outcome.detail,
            "duration_s": round(duration, 4),
            "attempt": attempt,
            **stage_facts(output),
        }
        store.write_record(key, stage, {**facts, "stage": stage, "run_id": context.run.run_id})
        context.add_asset_metadata(
            {k: v for k, v in facts.items() if v is not None}, partition_key=key
        )
        if not outcome.ok and outcome.reason:
            outcomes[f"quarantined:{outcome.reason.value}"] += 1
        else:
            outcomes[outcome.status.value] += 1
        outputs[key] = output
    context.log.info(
        json.dumps(
            {
                "stage": stage,
                "documents": len(keys),
                "attempt": attempt,
                "outcomes": dict(outcomes),
                "duration_s": round(sum(d for _, _, d in results), 4),
            },
            sort_keys=True,
        )
    )
    return outputs
