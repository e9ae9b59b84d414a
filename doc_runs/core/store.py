"""Content-addressed storage: document bytes by their tenant-scoped SHA-256, stage artifacts
by (stage, stage version, document id). What each stage recorded of a document lives in the
catalog (doc_runs.core.catalog). Every write is atomic and writing again writes the
same bytes, so retries and re-execution never append or corrupt anything.

A document id is the SHA-256 of a tenant namespace followed by the bytes: the same file is one
document within a tenant, and two tenants holding the same file hold two documents, so an id
never tells one tenant that another has a file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1024 * 1024
DEFAULT_TENANT = "default"
UPLOAD_PREFIX = "upload-"  # in the store's tmp/: an upload arriving
WRITE_PREFIX = ".tmp-"  # in the store's tmp/: a file being written, renamed into place after
# Younger files are left alone: one may be between being made and being locked.
ABANDONED_AFTER_S = 5.0


class TooLarge(Exception):
    """The bytes passed the size limit while being stored; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


def _sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def document_hasher(tenant: str):  # type: ignore[no-untyped-def]
    """A SHA-256 already fed with the tenant's namespace; feed it the document's bytes."""
    return hashlib.sha256(b"doc_runs/document/v1\0" + tenant.encode() + b"\0")


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


def display_name(name: str | bytes) -> str:
    """A file name as shown to people and written to JSON, on one line: bytes that are not
    UTF-8 (names made on other systems) and control characters (a newline) appear as \\xNN
    escapes; the raw name is kept beside it."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


def is_document_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class DocumentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------------------------
    def _atomic_write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._temporaries_for(target.parent),
                                   prefix=WRITE_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until renamed
                handle.write(data)
                handle.flush()
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _temporaries_for(self, folder: Path) -> Path:
        """Where a file bound for `folder` is written first, to be renamed into place (a
        reader sees the whole file or none): beside the other temporaries, one folder to
        sweep rather than the whole store; beside its target where that folder is on
        another filesystem (a rename cannot cross one)."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if os.stat(folder).st_dev != os.stat(tmp_dir).st_dev:
            return folder
        return tmp_dir

    def begin_upload(self, *, tenant: str = DEFAULT_TENANT,
                     max_bytes: int | None = None) -> UploadWriter:
        """A document arriving piece by piece (an HTTP upload): written to a temporary file
        that becomes the blob only on `commit`; `abort` (or any error) leaves nothing."""
        return UploadWriter(self, tenant, max_bytes)

    def put_stream(self, blocks: Iterable[bytes], *, tenant: str = DEFAULT_TENANT,
                   max_bytes: int | None = None) -> str:
        """Store a document's bytes once, streaming; the size limit is enforced while
        copying, so an oversized input costs at most the limit. Returns the document id."""
        with self.begin_upload(tenant=tenant, max_bytes=max_bytes) as upload:
            for block in blocks:
                upload.write(block)
            return upload.commit()

    def put_bytes(self, data: bytes, tenant: str = DEFAULT_TENANT) -> str:
        return self.put_stream([data], tenant=tenant)

    def sweep_abandoned_writes(self, idle_s: float = ABANDONED_AFTER_S) -> list[Path]:
        """Deletes what a process that died mid-write left in the store's temporary folder:
        uploads cut off (the API killed mid-stream) and half-written files (never read: they
        are renamed into place only once whole). A file is left alone while a process holds
        its lock (an upload still arriving) or was written in the last `idle_s` seconds.
        Reads that one folder only, whatever the store holds. Returns what it deleted."""
        deleted = []
        cutoff = time.time() - idle_s
        folder = self.root / "tmp"
        for path in [*folder.glob(UPLOAD_PREFIX + "*"), *folder.glob(WRITE_PREFIX + "*")]:
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                # Opened for writing: over NFS an exclusive lock needs it.
                with open(path, "r+b") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink()
            except OSError:  # being written (locked), gone meanwhile, or not ours to delete
                continue
            deleted.append(path)
        return deleted

    def _adopt(self, tmp: Path, document_id: str, tenant: str) -> str:
        blob = self.blob_path(document_id)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, blob)
        self._record_owner(document_id, tenant)
        return document_id

    def _record_owner(self, document_id: str, tenant: str) -> None:
        owner = self.root / "owners" / document_id[:2] / document_id
        if not owner.exists():
            self._atomic_write(owner, tenant.encode())
        listed = self.root / "tenants" / tenant / document_id[:2] / document_id
        if not listed.exists():
            self._atomic_write(listed, b"")

    def add_source_name(self, document_id: str, name: str | bytes) -> None:
        """Remember a name the document arrived under, byte for byte (a name that is not
        UTF-8 is kept as it was); one file per name, so concurrent initiators never race on a
        shared list."""
        raw = os.fsencode(name) if isinstance(name, str) else name
        marker = self.root / "sources" / document_id / _sha256_hex(raw)[:24]
        if not marker.exists():
            self._atomic_write(marker, raw)

    # -- reading -----------------------------------------------------------------------------
    def blob_path(self, document_id: str) -> Path:
        if not is_document_id(document_id):
            raise ValueError(f"not a document id: {document_id!r}")
        return self.root / "blobs" / document_id[:2] / document_id

    def has_document(self, document_id: str) -> bool:
        return is_document_id(document_id) and self.blob_path(document_id).is_file()

    def owner(self, document_id: str) -> str | None:
        """The tenant the document belongs to; None when there is no such document. A blob
        stored before documents had owners belongs to the default tenant."""
        if not is_document_id(document_id):
            return None
        try:
            return (self.root / "owners" / document_id[:2] / document_id).read_text()
        except FileNotFoundError:
            return DEFAULT_TENANT if self.blob_path(document_id).is_file() else None

    def documents_of(self, tenant: str) -> list[str]:
        """Every document stored for the tenant, read from its listing folder: a walk over
        all of them, for the upgrade of an old home; questions about documents go to the
        catalog (doc_runs.core.catalog), which answers by index."""
        folder = self.root / "tenants" / tenant
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob("*/*") if is_document_id(p.name))

    def read_head(self, document_id: str, size: int) -> bytes:
        with open(self.blob_path(document_id), "rb") as handle:
            return handle.read(size)

    def source_names_raw(self, document_id: str) -> list[bytes]:
        folder = self.root / "sources" / document_id
        if not folder.is_dir():
            return []
        return sorted(p.read_bytes() for p in folder.iterdir() if not p.name.startswith("."))

    def source_names(self, document_id: str) -> list[str]:
        """The names the document arrived under, as shown to people (see display_name)."""
        return [display_name(raw) for raw in self.source_names_raw(document_id)]

    # -- stage artifacts and per-stage records -----------------------------------------------
    def artifact_path(self, stage: str, version: int, document_id: str) -> Path:
        return self.root / "artifacts" / stage / f"v{version}" / f"{document_id}.json"

    def write_artifact(self, stage: str, version: int, document_id: str, data: bytes) -> Path:
        path = self.artifact_path(stage, version, document_id)
        self._atomic_write(path, data)
        return path

    def read_artifact(self, stage: str, version: int, document_id: str) -> bytes:
        return self.artifact_path(stage, version, document_id).read_bytes()

    # -- progress of runs ---------------------------------------------------------------------
    def progress_path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / "progress" / f"{run_id}.jsonl"

    def append_progress(self, run_id: str, entry: dict[str, Any]) -> None:
        """One line per document and stage as it finishes, for a run someone watches (the
        command line's progress bars). A single O_APPEND write per line, so lines from the
        threads and processes of a run never interleave."""
        path = self.progress_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def delete_progress(self, run_id: str) -> None:
        self.progress_path(run_id).unlink(missing_ok=True)

    def read_progress(self, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The complete lines after byte `offset`, and the offset to read from next time."""
        try:
            with self.progress_path(run_id).open("rb") as journal:
                journal.seek(offset)
                data = journal.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        return [json.loads(line) for line in data[:end].splitlines() if line], offset + end

    # -- model and tool call cache, usage ledger ---------------------------------------------
    def _cache_path(self, key: str) -> Path:
        return self.root / "cache" / key[:2] / f"{key}.json"

    def read_cached(self, key: str) -> bytes | None:
        try:
            return self._cache_path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_cached(self, key: str, data: bytes) -> None:
        self._atomic_write(self._cache_path(key), data)

    def write_ledger(self, document_id: str, stage: str, rows: list[dict[str, Any]]) -> None:
        path = self.root / "ledger" / document_id / f"{stage}.json"
        self._atomic_write(path, json.dumps(rows, sort_keys=True).encode())

    def read_ledger(self, document_id: str) -> list[dict[str, Any]]:
        folder = self.root / "ledger" / document_id
        if not folder.is_dir():
            return []
        rows: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.json")):
            rows.extend(json.loads(path.read_bytes()))
        return rows


class UploadWriter:
    """See DocumentStore.begin_upload. Usable as a context manager: leaving it without a
    commit aborts."""

    def __init__(self, store: DocumentStore, tenant: str, max_bytes: int | None) -> None:
        self.store, self.tenant, self.max_bytes = store, tenant, max_bytes
        self.size = 0
        self._digest = document_hasher(tenant)
        tmp_dir = store.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=UPLOAD_PREFIX)
        # Held while this process writes it: a sweep never takes a live upload.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._tmp = Path(tmp)
        self._sink = os.fdopen(fd, "wb")

    def write(self, block: bytes) -> None:
        self.size += len(block)
        if self.max_bytes is not None and self.size > self.max_bytes:
            self.abort()
            raise TooLarge(self.max_bytes)
        self._digest.update(block)
        self._sink.write(block)

    def commit(self) -> str:
        self._sink.flush()
        os.fsync(self._sink.fileno())
        try:  # renamed into place while still locked: a sweep never takes it meanwhile
            return self.store._adopt(self._tmp, self._digest.hexdigest(), self.tenant)
        finally:
            self._sink.close()
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._sink.closed:
            self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> UploadWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()
