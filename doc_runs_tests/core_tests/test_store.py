import hashlib

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
