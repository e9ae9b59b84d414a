"""The one intake path on the inputs people really hand it: odd names, pipes, links, huge
files, half-written files."""

import os
import socket
import threading
import time

import pytest

from doc_runs.core.intake import IntakeRefused, scan_watched_folder, store_file
from doc_runs.core.outcomes import Reason
from doc_runs.core.store import DocumentStore, TooLarge


@pytest.fixture
def store(tmp_path) -> DocumentStore:
    return DocumentStore(tmp_path / "store")


def leftovers(store: DocumentStore) -> list[str]:
    return [p.name for p in (store.root / "tmp").iterdir()] if (store.root / "tmp").exists() \
        else []


def test_a_name_that_is_not_utf8_is_kept_byte_for_byte(tmp_path, store) -> None:
    raw = b"Vertr\xe4ge-\xff.txt"  # Latin-1 from an archive made on Windows
    path = os.path.join(os.fsencode(tmp_path), raw)
    with open(path, "wb") as handle:
        handle.write(b"Contract notes. Two sentences.")
    document_id = store_file(store, os.fsdecode(path))
    assert store.source_names_raw(document_id) == [raw]
    assert store.source_names(document_id) == ["Vertr\\xe4ge-\\xff.txt"]


def test_a_fifo_is_refused_without_being_opened(tmp_path, store) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer comes; were it opened, this would hang.
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(_refusal(store, fifo)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "store_file opened the FIFO and waited for a writer"
    (refused,) = outcome
    assert isinstance(refused, IntakeRefused)
    assert refused.reason is Reason.NOT_REGULAR_FILE and "FIFO" in refused.detail


def _refusal(store: DocumentStore, path, max_bytes: int | None = None) -> IntakeRefused | str:
    try:
        return store_file(store, path, max_bytes=max_bytes)
    except IntakeRefused as refused:
        return refused


def test_sockets_devices_and_folders_are_refused(tmp_path, store) -> None:
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert _refusal(store, sock_path).reason is Reason.NOT_REGULAR_FILE
    assert "character device" in _refusal(store, "/dev/zero").detail
    assert "directory" in _refusal(store, tmp_path).detail
    assert _refusal(store, tmp_path / "missing.pdf").reason is Reason.UNREADABLE
    assert leftovers(store) == []


def test_the_size_limit_holds_while_copying(tmp_path, store) -> None:
    big = tmp_path / "big.pdf"
    with open(big, "wb") as handle:
        handle.truncate(5 * 1024**3)  # 5 GB, sparse: reading it all would take minutes
    started = time.monotonic()
    refused = _refusal(store, big, max_bytes=100 * 1024 * 1024)
    assert time.monotonic() - started < 20
    assert refused.reason is Reason.TOO_LARGE
    assert leftovers(store) == [] and not (store.root / "blobs").exists()
    exactly = tmp_path / "exact.txt"
    exactly.write_bytes(b"x" * 1000)
    assert store_file(store, exactly, max_bytes=1000)
    with pytest.raises(IntakeRefused, match="too_large"):
        store_file(store, exactly, max_bytes=999)


def test_an_upload_broken_midway_leaves_nothing(store) -> None:
    def blocks():
        yield b"%PDF-1.4 first half"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(blocks(), tenant="acme")
    assert leftovers(store) == [] and store.documents_of("acme") == []
    with pytest.raises(TooLarge), store.begin_upload(tenant="acme", max_bytes=15) as upload:
        upload.write(b"a" * 10)
        upload.write(b"b" * 10)
    assert leftovers(store) == [] and store.documents_of("acme") == []
    with pytest.raises(TooLarge):
        store.put_stream([b"123456"], max_bytes=5)


def test_a_watched_folder_never_leads_outside_itself(tmp_path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("the daemon's secret")
    (inbox / "ok.txt").write_text("fine")
    (inbox / "to-secret.txt").symlink_to(outside / "secret.txt")
    (inbox / "to-passwd").symlink_to("/etc/passwd")
    (inbox / "sub" / "to-ok.txt").symlink_to(inbox / "ok.txt")  # inside: allowed
    (inbox / "loop-a").symlink_to(inbox / "loop-b")
    (inbox / "loop-b").symlink_to(inbox / "loop-a")
    (inbox / "dangling.pdf").symlink_to(inbox / "gone.pdf")
    (inbox / "linked-dir").symlink_to(outside, target_is_directory=True)
    os.link(outside / "secret.txt", inbox / "hard-secret.txt")
    os.link(inbox / "ok.txt", inbox / "sub" / "hard-ok.txt")  # both names inside: allowed
    (inbox / "via-hard-secret.txt").symlink_to("hard-secret.txt")  # a way round the count
    os.mkfifo(inbox / "fifo.pdf")
    (inbox / ".hidden.txt").write_text("ignored")
    (inbox / "upload.pdf.part").write_text("still arriving")

    found = {os.fsdecode(e.relative): e for e in scan_watched_folder(inbox)}
    assert set(found) == {"ok.txt", "to-secret.txt", "to-passwd", "sub/to-ok.txt", "loop-a",
                          "loop-b", "dangling.pdf", "hard-secret.txt", "sub/hard-ok.txt",
                          "fifo.pdf", "via-hard-secret.txt"}
    accepted = {name for name, e in found.items() if e.problem is None}
    assert accepted == {"ok.txt", "sub/to-ok.txt", "sub/hard-ok.txt"}
    reasons = {name: e.problem.reason for name, e in found.items() if e.problem}
    assert reasons == {
        "to-secret.txt": Reason.OUTSIDE_FOLDER, "to-passwd": Reason.OUTSIDE_FOLDER,
        "hard-secret.txt": Reason.OUTSIDE_FOLDER, "via-hard-secret.txt": Reason.OUTSIDE_FOLDER,
        "loop-a": Reason.UNREADABLE,
        "loop-b": Reason.UNREADABLE, "dangling.pdf": Reason.UNREADABLE,
        "fifo.pdf": Reason.NOT_REGULAR_FILE,
    }
    assert "Too many levels of symbolic links" in found["loop-a"].problem.detail


def test_a_file_swapped_after_the_scan_is_refused(tmp_path, store) -> None:
    (tmp_path / "a.txt").write_text("first")
    (entry,) = scan_watched_folder(tmp_path)
    (tmp_path / "b.tmp").write_text("someone else's")
    os.replace(tmp_path / "b.tmp", tmp_path / "a.txt")
    with pytest.raises(IntakeRefused, match="changed while being opened"):
        store_file(store, entry.path, expected=entry.info)


def test_a_file_under_a_root_is_kept_inside_it_as_it_is_opened(tmp_path, store) -> None:
    """What the path says when it is checked is not what is opened: a folder on the path
    swapped for a link out after the check, or a hard link to a file elsewhere, is refused
    from the open descriptor (where it is, how many names it has)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("the tenants' secrets")
    (root / "inner" / "secret.txt").write_text("an ordinary file under the root")
    (root / "near.txt").symlink_to(root / "inner" / "secret.txt")  # a link inside: fine
    real_root = os.path.realpath(root)
    kept = store_file(store, root / "near.txt", inside=real_root)
    assert store.blob_path(kept).read_bytes() == b"an ordinary file under the root"

    # The check saw root/inner/secret.txt; then `inner` became a link out.
    checked = root / "inner" / "secret.txt"
    (root / "inner").rename(root / "inner-was")
    (root / "inner").symlink_to(outside)
    with pytest.raises(IntakeRefused) as swapped:
        store_file(store, checked, inside=real_root, shown_as="r:inner/secret.txt")
    assert swapped.value.reason is Reason.OUTSIDE_FOLDER
    assert str(swapped.value.detail) == "r:inner/secret.txt leads outside its folder"

    os.link(outside / "secret.txt", root / "hard.txt")
    with pytest.raises(IntakeRefused) as linked:
        store_file(store, root / "hard.txt", inside=real_root, shown_as="r:hard.txt")
    assert linked.value.reason is Reason.OUTSIDE_FOLDER
    assert "2 hard links" in linked.value.detail
    assert not any(store.blob_path(d).read_bytes() == b"the tenants' secrets"
                   for d in store.documents_of("default"))
    assert leftovers(store) == []
