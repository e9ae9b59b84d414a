"""The inbox sensor, evaluated as the daemon evaluates it: a result is committed (its cursor
kept, its runs made) only when the tick succeeds."""

import os
import time
from pathlib import Path

import pytest
from dagster import RunRequest, SensorResult, instance_for_test

from doc_runs.defs.tags import BATCH_TAG, TENANT_TAG
from doc_runs_tests.batches import catalog_of
from doc_runs_tests.helpers import evaluate


def commit(instance, result: SensorResult) -> str | None:
    """What the daemon does with a successful tick's result: a run per request (here only
    created, with the request's tags), then the cursor."""
    for request in result.run_requests:
        instance.create_run_for_job(_job(), run_id=None, tags=request.tags)
    return result.cursor


def _job():
    from doc_runs_tests.batches import load_defs

    return load_defs().resolve_job_def("document_pipeline")


def batch_documents(instance, request: RunRequest) -> list[str]:
    """The documents of the batch a run request names."""
    with catalog_of(instance) as catalog:
        return list(catalog.batch(request.tags[BATCH_TAG]).documents)


def requested_documents(instance, result: SensorResult) -> list[str]:
    return [d for r in result.run_requests for d in batch_documents(instance, r)]


def backdate(path, seconds: float = 120) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


def test_inbox_sensor_batches_new_documents_once(project, text_pdf) -> None:
    inbox = project / "data" / "inbox"
    with instance_for_test() as instance:
        empty = evaluate(instance, project)
        assert empty.run_requests == [] and empty.skip_reason

        (inbox / "a.pdf").write_bytes(text_pdf)
        (inbox / "a-again.pdf").write_bytes(text_pdf)  # same bytes: one document
        (inbox / "b.txt").write_text("Plain notes. Two sentences.")
        (inbox / "c.md").write_text("# C\n\n- one\n- two\n")
        (inbox / ".hidden.pdf").write_bytes(text_pdf)
        (inbox / "upload.pdf.part").write_bytes(b"%PDF-1.4 half")
        result = evaluate(instance, project)
        requests: list[RunRequest] = result.run_requests
        assert len(requests) == 2  # max_documents_per_run=2
        first, second = (batch_documents(instance, r) for r in requests)
        assert len(first) == 2 and len(second) == 1 and not set(first) & set(second)
        assert {r.tags[TENANT_TAG] for r in requests} == {"default"}
        assert {r.partition_key for r in requests} == {time.strftime("%Y-%m-%d", time.gmtime())}

        # The tick failed or timed out before the daemon committed it: the files were not
        # handled, and the next tick (same cursor) asks for the same runs with the same keys
        # and the same batches.
        again = evaluate(instance, project)
        assert [r.run_key for r in again.run_requests] == [r.run_key for r in requests]
        assert [r.tags[BATCH_TAG] for r in again.run_requests] == \
            [r.tags[BATCH_TAG] for r in requests]

        cursor = commit(instance, result)
        after = evaluate(instance, project, cursor)
        assert after.run_requests == [] and after.cursor == cursor
        # The same bytes dropped again under a new name are the same document: no new run.
        (inbox / "a-third-time.pdf").write_bytes(text_pdf)
        assert evaluate(instance, project, cursor).run_requests == []


def test_files_still_being_written_wait(project, text_pdf) -> None:
    path = project / "data" / "inbox" / "fresh.pdf"
    path.write_bytes(text_pdf)
    with instance_for_test() as instance:
        waiting = evaluate(instance, project, settle=60)
        assert waiting.run_requests == [] and waiting.cursor == evaluate(
            instance, project, settle=60).cursor
        # ctime cannot be set back; a settle time of 0 stands in for "a minute later".
        assert len(evaluate(instance, project, settle=0).run_requests) == 1


def test_a_file_moved_in_with_an_old_mtime_is_not_missed(project, text_pdf, tmp_path) -> None:
    inbox = project / "data" / "inbox"
    (inbox / "first.txt").write_text("The first note. It arrives first.")
    with instance_for_test() as instance:
        cursor = commit(instance, evaluate(instance, project))
        elsewhere = tmp_path / "old.pdf"
        elsewhere.write_bytes(text_pdf)
        backdate(elsewhere, 86400 * 365)  # `mv` keeps a year-old mtime; ctime moves
        time.sleep(0.01)
        os.replace(elsewhere, inbox / "old.pdf")
        result = evaluate(instance, project, cursor)
        assert len(result.run_requests) == 1


def test_odd_inputs_in_the_inbox(project, text_pdf, tmp_path) -> None:
    inbox = project / "data" / "inbox"
    raw_name = os.path.join(os.fsencode(inbox), b"Vertr\xe4ge.pdf")
    with open(raw_name, "wb") as handle:
        handle.write(text_pdf)
    (inbox / "to-passwd.txt").symlink_to("/etc/passwd")
    (inbox / "loop").symlink_to(inbox / "loop")
    os.mkfifo(inbox / "pipe.pdf")
    (inbox / "huge.txt").write_bytes(b"a" * (len(text_pdf) + 1000))
    with instance_for_test() as instance:
        started = time.monotonic()
        result = evaluate(instance, project, max_bytes=len(text_pdf) + 100)
        assert time.monotonic() - started < 10  # the FIFO was not opened
        assert len(result.run_requests) == 1
        (document_id,) = requested_documents(instance, result)
        from doc_runs.core.store import DocumentStore

        store = DocumentStore(project / "data" / "store")
        assert store.source_names_raw(document_id) == [b"Vertr\xe4ge.pdf"]
        assert store.source_names(document_id) == ["Vertr\\xe4ge.pdf"]
        # Nothing of /etc/passwd reached the store.
        passwd = Path("/etc/passwd").read_bytes()
        for blob in (store.root / "blobs").rglob("*"):
            assert not blob.is_file() or blob.read_bytes() != passwd
        # Every refused file counts as handled: the next tick does not see them again.
        cursor = commit(instance, result)
        assert evaluate(instance, project, cursor).run_requests == []


def test_a_store_that_cannot_be_written_fails_the_tick(project, text_pdf) -> None:
    (project / "data" / "inbox" / "a.pdf").write_bytes(text_pdf)
    store_root = project / "data" / "store"
    store_root.rmdir()
    store_root.write_text("not a folder")  # writing the store fails like a full disk
    with (instance_for_test() as instance,
          pytest.raises(OSError, match=r"Not a directory|File exists")):
        evaluate(instance, project)


def test_a_folder_moved_in_whole_is_not_missed(project, tmp_path) -> None:
    inbox = project / "data" / "inbox"
    batch = tmp_path / "batch"
    (batch / "deeper").mkdir(parents=True)
    (batch / "one.txt").write_text("The first moved note. Two sentences.")
    (batch / "deeper" / "two.txt").write_text("The second moved note. Two sentences.")
    time.sleep(0.05)
    (inbox / "later.txt").write_text("Arrived after the folder's files were written.")
    with instance_for_test() as instance:
        cursor = commit(instance, evaluate(instance, project))
        os.replace(batch, inbox / "batch")  # the files keep their old ctimes
        moved = evaluate(instance, project, cursor)
        assert len(requested_documents(instance, moved)) == 2
        cursor = commit(instance, moved)
        assert evaluate(instance, project, cursor).run_requests == []


def test_a_file_with_a_future_mtime_is_taken(project) -> None:
    path = project / "data" / "inbox" / "future.txt"
    path.write_text("Written by a clock that runs ahead. Two sentences.")
    ahead = time.time() + 86400
    os.utime(path, (ahead, ahead))
    with instance_for_test() as instance:
        assert len(evaluate(instance, project, settle=0.0).run_requests) == 1
