import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from doc_runs.core.intake import store_file
from doc_runs.core.store import DocumentStore


def test_same_bytes_are_one_document(tmp_path) -> None:
    store = DocumentStore(tmp_path / "store")
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4 same")
    (tmp_path / "b.txt").write_bytes(b"%PDF-1.4 same")
    first = store_file(store, tmp_path / "a.pdf")
    second = store_file(store, tmp_path / "b.txt")
    assert first == second == store.put_bytes(b"%PDF-1.4 same")
    store.add_source_name(first, "a.pdf")
    assert store.source_names(first) == ["a.pdf", "b.txt"]
    assert store.owner(first) == "default" and store.documents_of("default") == [first]
    assert list((tmp_path / "store" / "blobs").rglob("*")) == [
        store.blob_path(first).parent, store.blob_path(first)
    ]
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_artifacts_are_rewritten_identically(tmp_path) -> None:
    store = DocumentStore(tmp_path)
    doc = "a" * 64
    path = store.write_artifact("document_text", 1, doc, b'{"x": 1}')
    store.write_artifact("document_text", 1, doc, b'{"x": 1}')
    assert path.read_bytes() == b'{"x": 1}'
    assert [p.name for p in path.parent.iterdir()] == [f"{doc}.json"]


@pytest.mark.processes
def test_core_never_imports_dagster() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, doc_runs.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module("
        "'doc_runs.core.' + m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'dagster'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_tenants_never_share_a_document_id(tmp_path) -> None:
    store = DocumentStore(tmp_path)
    ours, theirs = store.put_bytes(b"same bytes", "acme"), store.put_bytes(b"same bytes", "beta")
    assert ours != theirs and hashlib.sha256(b"same bytes").hexdigest() not in (ours, theirs)
    assert (store.owner(ours), store.owner(theirs)) == ("acme", "beta")
    assert store.documents_of("acme") == [ours] and store.owner("f" * 64) is None


def test_a_blob_from_before_owners_belongs_to_the_default_tenant(tmp_path) -> None:
    store = DocumentStore(tmp_path)
    document_id = store.put_bytes(b"old bytes")
    (tmp_path / "owners" / document_id[:2] / document_id).unlink()
    assert store.owner(document_id) == "default"


def _age(path, seconds: float = 60) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.mark.processes
def test_an_upload_cut_off_by_a_killed_process_is_swept_a_live_one_is_not(tmp_path) -> None:
    store = DocumentStore(tmp_path)
    # A process that dies mid-upload, as the API killed mid-stream would.
    script = ("import os, signal, sys\n"
              "from doc_runs.core.store import DocumentStore\n"
              "upload = DocumentStore(sys.argv[1]).begin_upload(tenant='acme')\n"
              "upload.write(b'half of a document')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert died.returncode == -signal.SIGKILL
    (cut_off,) = (tmp_path / "tmp").glob("upload-*")
    with store.begin_upload(tenant="acme") as live:
        live.write(b"still arriving")
        for path in (tmp_path / "tmp").glob("upload-*"):
            _age(path)
        assert store.sweep_abandoned_writes() == [cut_off]
        assert live._tmp.exists()
        live.write(b", and done")
        document_id = live.commit()
    assert store.blob_path(document_id).read_bytes() == b"still arriving, and done"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_half_written_files_are_swept_only_once_idle(tmp_path) -> None:
    store = DocumentStore(tmp_path)
    store.write_artifact("document_text", 1, "ab" * 32, b"whole")  # renamed into place
    assert list((tmp_path / "tmp").iterdir()) == []
    half = tmp_path / "tmp" / ".tmp-abandoned"
    half.write_bytes(b"half")
    assert store.sweep_abandoned_writes() == []  # just written: maybe being made
    _age(half)
    assert store.sweep_abandoned_writes() == [half]
    assert store.read_artifact("document_text", 1, "ab" * 32) == b"whole"
    assert DocumentStore(tmp_path / "never-made").sweep_abandoned_writes() == []


def test_a_sweep_at_the_moment_of_the_rename_takes_nothing(tmp_path, monkeypatch) -> None:
    import doc_runs.core.store as store_module

    store = DocumentStore(tmp_path)
    real_replace = os.replace

    def sweep_then_replace(source, target) -> None:
        # Another process sweeping, with no grace at all, just before the file is renamed.
        assert store.sweep_abandoned_writes(idle_s=-1) == []
        real_replace(source, target)

    monkeypatch.setattr(store_module.os, "replace", sweep_then_replace)
    store.write_artifact("document_text", 1, "cd" * 32, b"whole")
    with store.begin_upload(tenant="acme") as upload:
        upload.write(b"an upload")
        document_id = upload.commit()
    assert store.read_artifact("document_text", 1, "cd" * 32) == b"whole"
    assert store.blob_path(document_id).read_bytes() == b"an upload"


def test_a_folder_of_the_store_on_another_filesystem_is_written_in_place(tmp_path) -> None:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or os.stat(elsewhere).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's temporary folder")
    cache = Path(tempfile.mkdtemp(dir=elsewhere))
    try:
        (tmp_path / "cache").symlink_to(cache)
        store = DocumentStore(tmp_path)
        store.write_cached("a-key", b"an answer")  # a rename across filesystems would fail
        assert store.read_cached("a-key") == b"an answer"
    finally:
        shutil.rmtree(cache)
