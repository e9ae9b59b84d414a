"""The PDFium engine (pypdfium2, the `pdfium` extra): the same contract and failure reasons
as the pypdf one, and its use as a second opinion on files pypdf cannot parse."""

import re
import sys
from pathlib import Path

import pytest

from doc_runs.core.extract import (
    ExtractionLimits,
    extract_document_text,
    extract_pdf_pages,
    normalize_text,
)
from doc_runs.core.extract_pdfium import PdfEngineMissing, extract_pdf_pages_pdfium
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs.core.sniff import PDF, TEXT
from doc_runs.core.stages import DocumentText, describe_document, extract_stage
from doc_runs.core.store import DocumentStore
from doc_runs_tests.documents import (
    encrypt_pdf,
    make_compression_bomb_pdf,
    make_image_only_pdf,
    make_pdf,
    ten_page_pdf,
)

PDFIUM = ExtractionLimits(pdf_engine="pdfium")
SECOND_OPINION = ExtractionLimits(second_opinion=True)


def write(tmp_path: Path, data: bytes, name: str = "doc.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejection(call) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as caught:
        call()
    return caught.value


def collapsed(text: str | None) -> str:
    return " ".join(normalize_text(text or "").split())


def short_xref(pdf: bytes) -> bytes:
    """The xref table claims one entry where it holds all of them: pypdf cannot read the
    table, PDFium rebuilds it by scanning the file for objects."""
    damaged = re.sub(rb"\nxref\n0 \d+\n", b"\nxref\n0 1\n", pdf)
    assert damaged != pdf
    return damaged


def misspelt_xref(pdf: bytes) -> bytes:
    """The table's `xref` keyword damaged: the same for pypdf and PDFium as above."""
    damaged = pdf.replace(b"\nxref\n", b"\nxreg\n")
    assert damaged != pdf
    return damaged


def broken_page_tree(pdf: bytes) -> bytes:
    """The page tree's root no longer says /Pages: pypdf finds no pages, PDFium still does."""
    return pdf.replace(b"/Type /Pages", b"/Type /Nonsense")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_text_as_pypdf_page_by_page(tmp_path, seed: int) -> None:
    path = str(write(tmp_path, ten_page_pdf(seed)))
    ours, warnings, error = extract_pdf_pages_pdfium(path, 100)
    theirs, _, _ = extract_pdf_pages(path, 100)
    assert (warnings, error) == (0, None)
    assert len(ours) == len(theirs) == 10
    assert [collapsed(t) for t in ours] == [collapsed(t) for t in theirs]


def test_escaped_text_and_line_ends_match_pypdf(tmp_path) -> None:
    words = "A (parenthesised) remark, a back\\slash and 100% of the costs. " * 6
    path = str(write(tmp_path, make_pdf([words, "Second page."])))
    ours, _, _ = extract_pdf_pages_pdfium(path, 100)
    theirs, _, _ = extract_pdf_pages(path, 100)
    assert [collapsed(t) for t in ours] == [collapsed(t) for t in theirs]
    assert all("\r" not in (t or "") for t in ours)  # PDFium's CRLF became LF
    assert "\n" in (ours[0] or "")  # the wrapped lines are still lines


@pytest.mark.processes
def test_pdfium_engine_through_extract_document_text(tmp_path, text_pdf: bytes) -> None:
    path = write(tmp_path, text_pdf)
    result = extract_document_text(path, PDF, PDFIUM)
    assert result.engine == "pdfium" and result.engine_note is None
    assert [p.number for p in result.pages] == [1, 2]
    assert "quarterly report" in result.pages[0].text and "audit" in result.pages[1].text
    assert extract_document_text(path, PDF, ExtractionLimits()).engine == "pypdf"
    text_file = write(tmp_path, b"Plain words.", "notes.txt")
    assert extract_document_text(text_file, TEXT, PDFIUM).engine is None


@pytest.mark.processes
@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
def test_user_password_is_encrypted(tmp_path, text_pdf: bytes, algorithm: str) -> None:
    path = write(tmp_path, encrypt_pdf(text_pdf, "secret", algorithm))
    assert rejection(lambda: extract_pdf_pages_pdfium(str(path), 100)).reason == (
        Reason.ENCRYPTED
    )
    assert rejection(lambda: extract_document_text(path, PDF, PDFIUM)).reason == (
        Reason.ENCRYPTED
    )


@pytest.mark.processes
def test_owner_password_only_is_read(tmp_path, text_pdf: bytes) -> None:
    path = write(tmp_path, encrypt_pdf(text_pdf, ""))
    assert "quarterly" in extract_document_text(path, PDF, PDFIUM).pages[0].text


@pytest.mark.processes
@pytest.mark.parametrize(
    "make",
    [lambda pdf: pdf[: len(pdf) // 3], lambda pdf: b"%PDF-1.4\n" + bytes(range(256)) * 8,
     lambda pdf: b""],
    ids=["truncated", "garbage", "empty"],
)
def test_unreadable_files_are_corrupt(tmp_path, text_pdf: bytes, make) -> None:
    path = write(tmp_path, make(text_pdf))
    assert rejection(lambda: extract_pdf_pages_pdfium(str(path), 100)).reason == Reason.CORRUPT
    assert rejection(lambda: extract_document_text(path, PDF, PDFIUM)).reason == Reason.CORRUPT


@pytest.mark.processes
def test_an_encrypted_file_then_one_without_pages(tmp_path, text_pdf: bytes) -> None:
    """PDFium keeps the last load error: a later file must not be called encrypted for it."""
    encrypted = write(tmp_path, encrypt_pdf(text_pdf, "secret"), "encrypted.pdf")
    no_pages = write(tmp_path, make_pdf([]), "no_pages.pdf")
    assert rejection(lambda: extract_pdf_pages_pdfium(str(encrypted), 100)).reason == (
        Reason.ENCRYPTED
    )
    assert extract_pdf_pages_pdfium(str(no_pages), 100) == ([], 0, None)
    assert "no pages" in rejection(lambda: extract_document_text(no_pages, PDF, PDFIUM)).detail


@pytest.mark.processes
def test_more_pages_than_the_limit_is_too_large(tmp_path) -> None:
    path = write(tmp_path, make_pdf(["one", "two", "three"]))
    assert rejection(lambda: extract_pdf_pages_pdfium(str(path), 2)).reason == Reason.TOO_LARGE
    limited = ExtractionLimits(pdf_engine="pdfium", max_pages=2)
    assert rejection(lambda: extract_document_text(path, PDF, limited)).reason == (
        Reason.TOO_LARGE
    )


@pytest.mark.processes
def test_image_only_has_no_text(tmp_path) -> None:
    path = write(tmp_path, make_image_only_pdf())
    assert rejection(lambda: extract_document_text(path, PDF, PDFIUM)).reason == Reason.NO_TEXT


@pytest.mark.processes
@pytest.mark.parametrize("damage", [short_xref, misspelt_xref, broken_page_tree])
def test_second_opinion_reads_what_pypdf_calls_corrupt(tmp_path, text_pdf: bytes,
                                                       damage) -> None:
    path = write(tmp_path, damage(text_pdf))
    pypdf_says = rejection(lambda: extract_document_text(path, PDF, ExtractionLimits()))
    assert pypdf_says.reason == Reason.CORRUPT
    result = extract_document_text(path, PDF, SECOND_OPINION)
    assert result.engine == "pdfium"
    assert result.engine_note is not None and pypdf_says.detail in result.engine_note
    assert "quarterly report" in result.pages[0].text and "audit" in result.pages[1].text


@pytest.mark.processes
def test_second_opinion_keeps_pypdfs_reason_when_pdfium_fails_too(tmp_path,
                                                                  text_pdf: bytes) -> None:
    path = write(tmp_path, text_pdf[: len(text_pdf) // 3])
    alone = rejection(lambda: extract_document_text(path, PDF, ExtractionLimits()))
    seconded = rejection(lambda: extract_document_text(path, PDF, SECOND_OPINION))
    assert seconded.reason == alone.reason == Reason.CORRUPT
    assert seconded.detail.startswith(alone.detail) and "pdfium: corrupt" in seconded.detail


@pytest.mark.processes
def test_pdfium_past_its_memory_cap_is_too_large(tmp_path) -> None:
    """Past the memory cap PDFium aborts its process instead of raising MemoryError; the
    document is quarantined as too large, as with pypdf, not retried."""
    path = write(tmp_path, make_compression_bomb_pdf(70 * 1024 * 1024))
    capped = ExtractionLimits(pdf_engine="pdfium", memory_bytes=140 * 1024 * 1024)
    refused = rejection(lambda: extract_document_text(path, PDF, capped))
    assert refused.reason == Reason.TOO_LARGE and "memory cap" in refused.detail


@pytest.mark.processes
def test_second_opinion_past_pdfiums_memory_cap_keeps_pypdfs_reason(tmp_path) -> None:
    path = write(tmp_path, short_xref(make_compression_bomb_pdf(70 * 1024 * 1024)))
    capped = ExtractionLimits(second_opinion=True, memory_bytes=140 * 1024 * 1024)
    refused = rejection(lambda: extract_document_text(path, PDF, capped))
    assert refused.reason == Reason.CORRUPT and "pdfium: too_large" in refused.detail
    # Under the default cap PDFium reads it: the cap made the difference.
    assert extract_document_text(path, PDF, SECOND_OPINION).engine == "pdfium"


@pytest.mark.processes
def test_second_opinion_is_only_for_corrupt_files(tmp_path, text_pdf: bytes) -> None:
    path = write(tmp_path, encrypt_pdf(text_pdf, "secret"))
    refused = rejection(lambda: extract_document_text(path, PDF, SECOND_OPINION))
    assert refused.reason == Reason.ENCRYPTED and "pdfium" not in refused.detail
    readable = write(tmp_path, text_pdf, "readable.pdf")
    assert extract_document_text(readable, PDF, SECOND_OPINION).engine == "pypdf"


@pytest.mark.processes
def test_without_pypdfium2(tmp_path, text_pdf: bytes, monkeypatch) -> None:
    # None in sys.modules makes the import fail here as if the package were not installed.
    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    broken = write(tmp_path, short_xref(text_pdf))
    refused = rejection(lambda: extract_document_text(broken, PDF, SECOND_OPINION))
    assert refused.reason == Reason.CORRUPT and "pdfium" not in refused.detail
    readable = write(tmp_path, text_pdf, "readable.pdf")
    with pytest.raises(PdfEngineMissing, match=r"pip install 'doc_runs\[pdfium\]'"):
        extract_document_text(readable, PDF, PDFIUM)
    with pytest.raises(PdfEngineMissing):
        extract_pdf_pages_pdfium(str(readable), 100)


@pytest.mark.processes
def test_the_stage_records_the_engine_it_kept(tmp_path, text_pdf: bytes) -> None:
    store = DocumentStore(tmp_path / "store")
    document_id = store.put_bytes(short_xref(text_pdf))
    store.add_source_name(document_id, "report.pdf")
    document = describe_document(store, document_id, SECOND_OPINION)
    text = extract_stage(store, document, SECOND_OPINION)
    assert text.outcome.ok and text.pdf_engine == "pdfium"
    assert text.pdf_engine_note is not None and "pypdf" in text.pdf_engine_note
    # An artifact written before the engine was recorded still reads.
    old = text.model_dump(exclude={"pdf_engine", "pdf_engine_note"})
    assert DocumentText.model_validate(old).pdf_engine is None


def test_the_resource_refuses_an_unknown_engine() -> None:
    # Imported here: the rest of this module is core and runs without Dagster loaded.
    from doc_runs.defs.resources import ExtractionResource

    with pytest.raises(ValueError, match="pypdf or pdfium"):
        ExtractionResource(pdf_engine="mupdf").limits()
    limits = ExtractionResource(pdf_engine="pdfium", pdf_second_opinion=True).limits()
    assert (limits.pdf_engine, limits.second_opinion) == ("pdfium", True)
