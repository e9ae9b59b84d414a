"""The run tags' names are on the wire: runs already in instances carry them, and the
deployments' tag concurrency limits name the tenant tag. Written out here on purpose."""

from pathlib import Path

import yaml

from doc_runs.defs import tags

ROOT = Path(__file__).resolve().parents[2]


def test_the_tag_names_do_not_change() -> None:
    assert {name: value for name, value in vars(tags).items() if name.endswith("_TAG")} == {
        "BATCH_TAG": "doc_runs/batch",
        "TENANT_TAG": "doc_runs/tenant",
        "EXTRA_FIELDS_TAG": "doc_runs/extra_fields",
        "PROGRESS_TAG": "doc_runs/progress",
        "LAUNCHED_BY_TAG": "doc_runs/launched_by",
        "TRIGGER_TAG": "doc_runs/trigger",
        "DOCUMENTS_TAG": "doc_runs/documents",
        "DESCRIPTION_TAG": "doc_runs/description",
        "MESSAGES_TAG": "doc_runs/messages",
        "DOCUMENT_RUNS_TAG": "doc_runs/document_runs",
    }


def test_the_deployments_limit_runs_per_tenant_by_the_tenant_tag() -> None:
    for name in ("dagster.local.yaml", "dagster.postgres.yaml"):
        instance = yaml.safe_load((ROOT / "deploy" / name).read_text())
        limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
        assert [limit["key"] for limit in limits] == [tags.TENANT_TAG], name
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert [limit["key"] for limit in coordinator["tagConcurrencyLimits"]] == [
        tags.TENANT_TAG]
