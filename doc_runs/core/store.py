"""Content-addressed storage: document bytes by their SHA-256, stage artifacts by
(stage, stage version, document id). Every write is atomic and writing again writes the same
bytes, so retries and re-execution never append or corrupt anything."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_CHUNK = 1024 * 1024


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_document_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class DocumentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------------------------
    def _atomic_write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file's bytes once, streaming (never whole in memory); return its document id."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        try:
            with open(path, "rb") as source, os.fdopen(fd, "wb") as sink:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    sink.write(block)
            return self._adopt(Path(tmp), digest.hexdigest())
        finally:
            Path(tmp).unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        document_id = hashlib.sha256(data).hexdigest()
        blob = self.blob_path(document_id)
        if not blob.exists():
            self._atomic_write(blob, data)
        return document_id

    def _adopt(self, tmp: Path, document_id: str) -> str:
        blob = self.blob_path(document_id)
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, blob)
        return document_id

    def add_source_name(self, document_id: str, name: str) -> None:
        """Remember a name the document arrived under; one file per name, so concurrent
        initiators never race on a shared list."""
        marker = self.root / "sources" / document_id / _sha256_hex(name)[:24]
        if not marker.exists():
            self._atomic_write(marker, name.encode())

    # -- reading -----------------------------------------------------------------------------
    def blob_path(self, document_id: str) -> Path:
        if not is_document_id(document_id):
            raise ValueError(f"not a document id: {document_id!r}")
        return self.root / "blobs" / document_id[:2] / document_id

    def read_head(self, document_id: str, size: int) -> bytes:
        with open(self.blob_path(document_id), "rb") as handle:
            return handle.read(size)

    def source_names(self, document_id: str) -> list[str]:
        folder = self.root / "sources" / document_id
        if not folder.is_dir():
            return []
        return sorted(p.read_text() for p in folder.iterdir() if not p.name.startswith("."))

    # -- stage artifacts and per-stage records -----------------------------------------------
    def artifact_path(self, stage: str, version: int, document_id: str) -> Path:
        return self.root / "artifacts" / stage / f"v{version}" / f"{document_id}.json"

    def write_artifact(self, stage: str, version: int, document_id: str, data: bytes) -> Path:
        path = self.artifact_path(stage, version, document_id)
        self._atomic_write(path, data)
        return path

    def read_artifact(self, stage: str, version: int, document_id: str) -> bytes:
        return self.artifact_path(stage, version, document_id).read_bytes()

    def write_record(self, document_id: str, stage: str, record: dict[str, Any]) -> None:
        path = self.root / "records" / document_id / f"{stage}.json"
        self._atomic_write(path, json.dumps(record, sort_keys=True).encode())

    def read_records(self, document_id: str) -> dict[str, dict[str, Any]]:
        folder = self.root / "records" / document_id
        if not folder.is_dir():
            return {}
        return {
            p.stem: json.loads(p.read_bytes())
            for p in sorted(folder.glob("*.json"))
        }

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

    # -- inbox bookkeeping -------------------------------------------------------------------
    def _seen_marker(self, fingerprint: str) -> Path:
        digest = _sha256_hex(fingerprint)
        return self.root / "seen" / digest[:2] / digest

    def was_seen(self, fingerprint: str) -> bool:
        return self._seen_marker(fingerprint).exists()

    def mark_seen(self, fingerprint: str, document_id: str) -> None:
        self._atomic_write(self._seen_marker(fingerprint), document_id.encode())
