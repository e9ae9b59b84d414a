"""The per-document outcome as a partitioned asset check, so that a quarantined document is
not shown green in the UI while the other documents of its run succeed.

Why a check and not a failed materialization: a run covers a range of documents and Dagster
materializes every partition of a ranged step or none of them; the only per-partition
"failed" state it keeps is for partitions of a run that failed. Failing the run would fail
the good documents with it (and call for a re-execution that cannot help). A partitioned
check's result is per document: on the asset's Checks tab the check reads "Failed" while any
document is quarantined, its Partitions tab marks each quarantined document red and each
succeeded one green, each result carries the source name, reason and detail, and a document
that later succeeds (after a fix and a re-run) turns green. The asset's own partition list
stays green for a quarantined document, because Dagster did materialize it (with `status:
quarantined` in the metadata); Dagster OSS has no per-partition state between the two.

(An unpartitioned check summing up the run was tried and dropped: on a ranged step it targets
whichever partition was materialized last, so the UI showed it "not evaluated" as soon as
runs overlapped.)"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Output,
    PreviewWarning,
)

# Not exported at the top level; the pins in pyproject.toml keep it where it is.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from doc_runs.core.outcomes import Status
from doc_runs.core.stages import StageOutput
from doc_runs.defs.partitions import documents

DOCUMENT_CHECK = "document_succeeded"

with warnings.catch_warnings():
    # Partitioned checks are marked preview; the warning would be printed by every process
    # that loads the code.
    warnings.simplefilter("ignore", PreviewWarning)
    DOCUMENT_CHECK_SPEC = AssetCheckSpec(
        DOCUMENT_CHECK,
        asset="document_summary",
        partitions_def=documents,
        description="This document ended succeeded (summary and findings written); failed, "
        "with the reason and detail, for a quarantined one.",
    )


def document_check_evaluations(
    context: AssetExecutionContext, asset_key: AssetKey, outputs: Mapping[str, StageOutput],
) -> Iterator[AssetCheckEvaluation | Output]:
    """One evaluation per document, each tied to the materialization this step just wrote
    for it (a result that targets an older materialization is shown as stale)."""
    # The check's own (empty) output, which an AssetCheckResult would have yielded for us;
    # AssetCheckResult itself has no partition of a ranged step to name.
    (output_name,) = [name for name, spec in context.assets_def.check_specs_by_output_name
                      .items() if spec.key == DOCUMENT_CHECK_SPEC.key]
    yield Output(None, output_name=output_name)
    latest = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(outputs)),
        limit=len(outputs),
    ).records
    ours = {record.partition_key: record for record in latest
            if record.run_id == context.run.run_id}
    for key, output in outputs.items():
        outcome = output.outcome
        record = ours.get(key)
        target = None if record is None else AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        # The name the stage put in the materialization's metadata (read, not looked up again).
        shown = record.asset_materialization.metadata.get("source_name") if (
            record is not None and record.asset_materialization is not None) else None
        passed = outcome.status is Status.SUCCEEDED
        metadata: dict[str, str] = {"source_name": str(shown.value) if shown else ""}
        if not passed:
            metadata |= {"status": outcome.status.value,
                         "reason": outcome.reason.value if outcome.reason else "",
                         "detail": outcome.detail or ""}
        yield AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=DOCUMENT_CHECK,
            partition=key,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=None if passed else
            f"quarantined: {metadata['reason']}: {metadata['detail']}"[:500],
            metadata=metadata,
            target_materialization_data=target,
            blocking=False,
        )
