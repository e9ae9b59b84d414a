import os
import time

from dagster import RunRequest, SensorResult, SkipReason, build_sensor_context, instance_for_test

from doc_runs.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from doc_runs.defs.resources import DocumentStoreResource, InboxResource
from doc_runs.defs.sensors import inbox_sensor


def evaluate(instance, project, settle: float = 0.0):
    resources = {
        "document_store": DocumentStoreResource(
            root=str(project / "data" / "store"), reports_dir=str(project / "data" / "reports")
        ),
        "inbox": InboxResource(path=str(project / "data" / "inbox"), settle_seconds=settle,
                               max_documents_per_run=2),
    }
    with build_sensor_context(instance=instance, resources=resources) as context:
        return inbox_sensor(context)


def test_inbox_sensor_batches_new_documents_once(project, text_pdf) -> None:
    inbox = project / "data" / "inbox"
    with instance_for_test() as instance:
        assert isinstance(evaluate(instance, project), SkipReason)  # empty inbox

        (inbox / "a.pdf").write_bytes(text_pdf)
        (inbox / "a-again.pdf").write_bytes(text_pdf)  # same bytes: one document
        (inbox / "b.txt").write_text("Plain notes. Two sentences.")
        (inbox / "c.md").write_text("# C\n\n- one\n- two\n")
        (inbox / ".hidden.pdf").write_bytes(text_pdf)
        (inbox / "upload.pdf.part").write_bytes(b"%PDF-1.4 half")
        result = evaluate(instance, project)
        assert isinstance(result, SensorResult)
        (add,) = result.dynamic_partitions_requests
        assert len(add.partition_keys) == 3
        requests: list[RunRequest] = result.run_requests
        assert len(requests) == 2  # max_documents_per_run=2
        assert requests[0].tags[RANGE_START_TAG] == add.partition_keys[0]
        assert requests[0].tags[RANGE_END_TAG] == add.partition_keys[1]
        assert requests[1].partition_key == add.partition_keys[2]

        # The daemon adds the partitions; the next tick starts nothing again.
        instance.add_dynamic_partitions("documents", list(add.partition_keys))
        assert isinstance(evaluate(instance, project), SkipReason)


def test_files_still_being_written_wait(project, text_pdf) -> None:
    path = project / "data" / "inbox" / "fresh.pdf"
    path.write_bytes(text_pdf)
    with instance_for_test() as instance:
        assert isinstance(evaluate(instance, project, settle=60), SkipReason)
        old = time.time() - 120
        os.utime(path, (old, old))
        assert isinstance(evaluate(instance, project, settle=60), SensorResult)
