"""The batch's outcome as an asset check on `document_summary`, so that a run holding a
quarantined document is not shown green while its other documents succeed.

Why a check and not a failed materialization: a run covers a batch, and failing it would fail
the good documents with it (and call for a re-execution that cannot help). The check is
partitioned like the asset, by day: each run evaluates it once for its batch, failed (ERROR)
when any of the batch's documents ended quarantined, with their names, ids, reasons and details
in its metadata. On the run's page the check reads Failed; on the asset's Checks tab a day is
red when the latest run of that day held a quarantined document."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    PreviewWarning,
    TableColumn,
    TableRecord,
    TableSchema,
)

from doc_runs.defs.partitions import days

DOCUMENT_CHECK = "document_succeeded"
SHOWN_IN_DESCRIPTION = 5

with warnings.catch_warnings():
    # Partitioned checks are marked preview; the warning would be printed by every process
    # that loads the code.
    warnings.simplefilter("ignore", PreviewWarning)
    DOCUMENT_CHECK_SPEC = AssetCheckSpec(
        DOCUMENT_CHECK,
        asset="document_summary",
        partitions_def=days,
        description="Every document of the run's batch ended succeeded (summary and findings "
        "written); failed, naming each quarantined document with its reason and detail.",
    )

_QUARANTINED_SCHEMA = TableSchema(columns=[
    TableColumn("name", "string"), TableColumn("document_id", "string"),
    TableColumn("reason", "string"), TableColumn("detail", "string")])


def batch_check_result(rows: Sequence[dict[str, Any]]) -> AssetCheckResult:
    """The check's result for a batch, from the last stage's documents table rows."""
    quarantined = [row for row in rows if row.get("status") == "quarantined"]
    succeeded = sum(row.get("status") == "succeeded" for row in rows)
    metadata: dict[str, Any] = {
        "documents": len(rows), "succeeded": succeeded, "quarantined": len(quarantined),
        "quarantined_documents": MetadataValue.table(
            [TableRecord({"name": row.get("name") or "", "document_id": row["document_id"],
                          "reason": row.get("reason") or "",
                          "detail": (row.get("detail") or "")[:200]})
             for row in quarantined], schema=_QUARANTINED_SCHEMA),
    }
    if not quarantined:
        return AssetCheckResult(passed=True, metadata=metadata,
                                severity=AssetCheckSeverity.ERROR)
    named = ", ".join(f"{row.get('name') or row['document_id'][:12]} ({row.get('reason')})"
                      for row in quarantined[:SHOWN_IN_DESCRIPTION])
    more = len(quarantined) - SHOWN_IN_DESCRIPTION
    return AssetCheckResult(
        passed=False, severity=AssetCheckSeverity.ERROR, metadata=metadata,
        description=(f"{len(quarantined)} of {len(rows)} documents quarantined: {named}"
                     + (f" and {more} more" if more > 0 else ""))[:1000])
