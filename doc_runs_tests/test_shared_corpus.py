"""`doc-runs process ../shared/corpus --json`: every file ends as its MANIFEST.tsv row says."""

import csv
import json
import time
from pathlib import Path

import pytest

from doc_runs_tests.conftest import SHARED_CORPUS
from doc_runs_tests.helpers import doc_runs

# exc_class in the manifest -> the reason doc_runs gives. Files that pypdf reads, or reads
# with the crypto extra installed, must succeed; pages without text layer are no_text.
_REASON_OF = {
    "pypdf.errors.EmptyFileError": "empty_file",
    "pypdf.errors.FileNotDecryptedError": "encrypted",
    "pypdf.errors.PdfReadError": "corrupt",
    "pypdf.errors.PdfStreamError": "corrupt",
    "pypdf.errors.DeprecationError": "corrupt",
    "AttributeError": "corrupt",
}


def expected_outcome(row: dict[str, str]) -> tuple[str, str | None]:
    if row["category"] == "other" and row["file_name"].startswith("notpdf"):
        return ("quarantined", "not_pdf")
    outcome = row["pypdf_outcome"]
    if outcome == "ok" or row["rerun_with_cryptography"].startswith("ok"):
        return ("succeeded", None)
    if outcome == "ok_no_text":
        return ("quarantined", "no_text")
    return ("quarantined", _REASON_OF[row["exc_class"]])


@pytest.mark.skipif(
    not (SHARED_CORPUS / "MANIFEST.tsv").exists(),
    reason=f"the shared corpus is not on this machine ({SHARED_CORPUS}); CI always has it",
)
def test_every_corpus_file_ends_as_its_manifest_says(project) -> None:
    with open(SHARED_CORPUS / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    started = time.monotonic()
    done = doc_runs(project, "process", str(SHARED_CORPUS), "--json")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {Path(j["path"]).name: j for j in map(json.loads, done.stdout.splitlines())}
    assert set(lines) >= {row["file_name"] for row in rows}
    got = {row["file_name"]: (lines[row["file_name"]]["status"], lines[row["file_name"]]["reason"])
           for row in rows}
    assert got == {row["file_name"]: expected_outcome(row) for row in rows}
    for row in rows:
        line = lines[row["file_name"]]
        if line["status"] == "succeeded":
            # r6 has no page count in the manifest (plain pypdf could not open it).
            assert line["pages"] == int(row["pages"] or 1) and line["chunks"] >= 1
            assert line["summary"]
        else:
            assert line["detail"]
    assert elapsed < 300

    # Ligature glyphs (U+FB00..FB06) come out as letters.
    lig = lines["lig__tracemonkey.pdf"]["document_id"]
    text = json.loads(
        next((project / "data" / "store" / "artifacts" / "document_text").rglob(f"{lig}.json"))
        .read_text()
    )
    joined = "".join(page["text"] for page in text["pages"])
    assert "efficient" in joined or "first" in joined
    assert not any("\ufb00" <= ch <= "\ufb06" for ch in joined)
