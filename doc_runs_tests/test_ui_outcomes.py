"""What the Dagster UI answers about a file, read over the webserver's GraphQL API (the API the
UI's own pages query): a quarantined document's partition is not shown as a success, a
succeeded one shows its summary, and a file name leads to its document."""

import json
import re
import shutil
import sys
from pathlib import Path

from doc_runs_tests.live import (
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    wait_until,
)
from doc_runs_tests.servers import free_port
from doc_runs_tests.test_cli import PROJECT_ROOT, doc_runs
from doc_runs_tests.test_ui_reexecution import graphql

# The asset page's "Checks" tab and the partition view read these fields.
DOCUMENT_VIEW = """
query DocumentView($partitions: [String!]) {
  assetNodes(assetKeys: [{path: ["document_summary"]}]) {
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          partitionStatuses {
            __typename
            ... on AssetCheckDefaultPartitionStatuses {
              succeededPartitions failedPartitions inProgressPartitions
              skippedPartitions executionFailedPartitions
            }
          }
        }
      }
    }
  }
  summary: assetOrError(assetKey: {path: ["document_summary"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        metadataEntries {
          label
          ... on MarkdownMetadataEntry { mdStr }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
  report: assetOrError(assetKey: {path: ["corpus_report"]}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        metadataEntries { label ... on MarkdownMetadataEntry { mdStr } }
      }
    }
  }
}
"""

CHECK_EXECUTION = """
query CheckExecution($partition: String!) {
  assetCheckExecutions(assetKey: {path: ["document_summary"]}, checkName: "document_succeeded",
                       partition: $partition, limit: 10) {
    partition status
    evaluation { severity description metadataEntries { label ... on TextMetadataEntry { text } } }
  }
}
"""


def entries(materialization: dict) -> dict[str, str]:
    return {e["label"]: e.get("mdStr") or e.get("text") for e in materialization["metadataEntries"]}


def test_the_ui_shows_quarantine_summary_and_finds_a_file_by_name(project, text_pdf) -> None:
    inputs = project / "in"
    inputs.mkdir()
    (inputs / "quarterly report.pdf").write_bytes(text_pdf)
    (inputs / "broken scan.pdf").write_bytes(b"%PDF-1.7\n" + b"1 0 obj <<" * 50)
    done = doc_runs(project, "process", str(inputs), "--json")
    assert done.returncode == 0, done.stderr
    by_name = {Path(line["path"]).name: line
               for line in map(json.loads, done.stdout.splitlines())}
    good = by_name["quarterly report.pdf"]["document_id"]
    bad = by_name["broken scan.pdf"]["document_id"]
    assert by_name["broken scan.pdf"]["status"] == "quarantined"

    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    port = free_port()
    server = start_detached(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)], project)
    try:
        wait_until(lambda: dagster_answers(port), 120, "the Dagster webserver")
        answer = graphql(port, DOCUMENT_VIEW, {"partitions": [good, bad]})
        assert "errors" not in answer, answer
        data = answer["data"]

        # Quarantined is not green: the per-document check has failed for it, passed for
        # the other document of the same run.
        (node,) = data["assetNodes"]
        (check,) = node["assetChecksOrError"]["checks"]
        assert check["name"] == "document_succeeded"
        statuses = check["partitionStatuses"]
        assert statuses["failedPartitions"] == [bad]
        assert statuses["succeededPartitions"] == [good]
        executions = graphql(port, CHECK_EXECUTION, {"partition": bad})
        assert "errors" not in executions, executions
        executions = executions["data"]
        failed = executions["assetCheckExecutions"]
        assert [e["partition"] for e in failed] == [bad] and failed[0]["status"] == "FAILED"
        assert failed[0]["evaluation"]["description"].startswith("quarantined: corrupt")
        shown = {e["label"]: e.get("text") for e in failed[0]["evaluation"]["metadataEntries"]}
        assert shown["source_name"] == "broken scan.pdf" and shown["reason"] == "corrupt"

        # The summary is in the succeeded document's metadata, with its citations.
        materialized = {m["partition"]: entries(m)
                        for m in data["summary"]["assetMaterializations"]}
        assert "Revenue rose by ten percent" in materialized[good]["summary"]
        assert re.search(r"`\[c[0-9a-f-]+\]`", materialized[good]["summary"])
        assert materialized[good]["source_name"] == "quarterly report.pdf"
        assert "summary" not in materialized[bad]

        # From a file name to its partition: the report's table has the key beside it.
        (report,) = data["report"]["assetMaterializations"]
        preview = entries(report)["preview"]
        (row,) = [line for line in preview.splitlines() if "quarterly report.pdf" in line]
        assert good in row and "succeeded" in row
        (row,) = [line for line in preview.splitlines() if "broken scan.pdf" in line]
        assert bad in row and "quarantined" in row and "corrupt" in row
    finally:
        stop_dagster_dev(server, project)
