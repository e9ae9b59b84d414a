"""What the Dagster UI answers about a file, read over the webserver's GraphQL API (the API the
UI's own pages query): a run holding a quarantined document is not shown as a success, each
run's materialization shows a table of its documents (name, id, status, reason, summary), and
a file name leads to its document."""

import json
import shutil
import sys
from pathlib import Path

from doc_runs_tests.helpers import PROJECT_ROOT, doc_runs, graphql, instance_day
from doc_runs_tests.live import (
    dagster_answers,
    start_detached,
    stop_dagster_dev,
    wait_until,
)
from doc_runs_tests.servers import free_port

# The asset page's "Checks" tab, the partition view and the events list read these fields.
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
            ... on AssetCheckTimePartitionStatuses { ranges { status startKey endKey } }
          }
        }
      }
    }
  }
  summary: assetOrError(assetKey: {path: ["document_summary"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        metadataEntries {
          label
          ... on TableMetadataEntry { table { records schema { columns { name } } } }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
  report: assetOrError(assetKey: {path: ["corpus_report"]}) {
    ... on Asset {
      assetMaterializations(partitions: $partitions, limit: 1) {
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
    partition status runId
    evaluation {
      severity description
      metadataEntries {
        label
        ... on TableMetadataEntry { table { records } }
        ... on IntMetadataEntry { intValue }
      }
    }
  }
}
"""


def entries(materialization: dict) -> dict[str, str]:
    return {e["label"]: e.get("mdStr") or e.get("text") for e in materialization["metadataEntries"]}


def table_rows(entry: dict) -> list[dict]:
    return [json.loads(record) for record in entry["table"]["records"]]


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
    (run_id,) = {line["run_id"] for line in by_name.values()}
    day = instance_day({run_id})

    shutil.copyfile(PROJECT_ROOT / "workspace.yaml", project / "workspace.yaml")
    port = free_port()
    server = start_detached(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)], project)
    try:
        wait_until(lambda: dagster_answers(port), 120, "the Dagster webserver")
        answer = graphql(port, DOCUMENT_VIEW, {"partitions": [day]})
        assert "errors" not in answer, answer
        data = answer["data"]

        # Quarantined is not green: the run's check failed, so its day reads failed.
        (node,) = data["assetNodes"]
        (check,) = node["assetChecksOrError"]["checks"]
        assert check["name"] == "document_succeeded"
        ranges = check["partitionStatuses"]["ranges"]
        assert [(r["status"], r["startKey"], r["endKey"]) for r in ranges] == [
            ("FAILED", day, day)]
        executions = graphql(port, CHECK_EXECUTION, {"partition": day})
        assert "errors" not in executions, executions
        (failed,) = executions["data"]["assetCheckExecutions"]
        assert (failed["partition"], failed["status"], failed["runId"]) == (day, "FAILED",
                                                                           run_id)
        evaluation = failed["evaluation"]
        assert evaluation["description"] == \
            "1 of 2 documents quarantined: broken scan.pdf (corrupt)"
        shown = {e["label"]: e for e in evaluation["metadataEntries"]}
        (held,) = table_rows(shown["quarantined_documents"])
        assert (held["name"], held["document_id"], held["reason"]) == (
            "broken scan.pdf", bad, "corrupt")

        # The run's materialization has a table of its documents: each by name, with its
        # id, status, reason and the summary's first sentence.
        (materialization,) = data["summary"]["assetMaterializations"]
        assert (materialization["partition"], materialization["runId"]) == (day, run_id)
        shown = {e["label"]: e for e in materialization["metadataEntries"]}
        rows = {row["name"]: row for row in table_rows(shown["documents"])}
        assert rows["quarterly report.pdf"]["document_id"] == good
        assert rows["quarterly report.pdf"]["status"] == "succeeded"
        assert rows["quarterly report.pdf"]["summary"].startswith("The quarterly report")
        assert (rows["broken scan.pdf"]["status"], rows["broken scan.pdf"]["reason"]) == (
            "quarantined", "corrupt")

        # From a file name to its document: the day's report has the id beside it.
        (report,) = data["report"]["assetMaterializations"]
        preview = entries(report)["preview"]
        (row,) = [line for line in preview.splitlines() if "quarterly report.pdf" in line]
        assert good in row and "succeeded" in row
        (row,) = [line for line in preview.splitlines() if "broken scan.pdf" in line]
        assert bad in row and "quarantined" in row and "corrupt" in row
    finally:
        stop_dagster_dev(server, project)
