import pytest

from doc_runs.core.extract import ExtractionLimits, extract_document_text, normalize_text
from doc_runs.core.outcomes import DocumentRejected, Reason
from doc_runs.core.sniff import MARKDOWN, PDF, TEXT, sniff_media_type
from doc_runs_tests.documents import (
    encrypt_pdf,
    make_compression_bomb_pdf,
    make_image_only_pdf,
    make_pdf,
)


def rejected_reason(call) -> Reason:
    with pytest.raises(DocumentRejected) as caught:
        call()
    return caught.value.reason


def test_media_type_comes_from_bytes_not_name(text_pdf: bytes) -> None:
    assert sniff_media_type(text_pdf, "report.txt") == PDF
    assert sniff_media_type(b"junk before\n" + text_pdf, None) == PDF
    assert sniff_media_type(b"plain words here\n", "notes.bin") == TEXT
    assert sniff_media_type(b"# Title\n\n- item one\n- item two\n", None) == MARKDOWN


@pytest.mark.parametrize(
    ("head", "name", "reason"),
    [
        (b"", "empty.pdf", Reason.EMPTY_FILE),
        (b"   \n\t\n", "blank.txt", Reason.EMPTY_FILE),
        (b"not even a pdf file.\n", "bad.pdf", Reason.NOT_PDF),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "scan.png", Reason.UNSUPPORTED_TYPE),
        (b"PK\x03\x04" + bytes(100), "letter.docx", Reason.UNSUPPORTED_TYPE),
        (bytes(range(256)) * 4, "blob", Reason.UNSUPPORTED_TYPE),
    ],
)
def test_bad_heads_are_rejected_with_their_reason(head: bytes, name: str, reason: Reason) -> None:
    assert rejected_reason(lambda: sniff_media_type(head, name)) == reason


def test_utf8_cut_mid_character_is_still_text() -> None:
    head = ("résumé " * 10000).encode()[: 64 * 1024 - 1]
    assert sniff_media_type(head, None) == TEXT


def write(tmp_path, data: bytes, name: str = "doc.pdf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.processes
def test_pdf_pages_are_extracted_in_order(tmp_path, text_pdf: bytes) -> None:
    result = extract_document_text(write(tmp_path, text_pdf), PDF, ExtractionLimits())
    assert [p.number for p in result.pages] == [1, 2]
    assert "quarterly report" in result.pages[0].text
    assert "audit" in result.pages[1].text
    assert result.pages_without_text == []


def test_ligatures_are_normalized() -> None:
    assert normalize_text("e\ufb03cient \ufb01le o\ufb00er") == "efficient file offer"
    assert normalize_text("x\u00b2 \u00bd") == "x\u00b2 \u00bd"  # not presentation forms


@pytest.mark.processes
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda pdf: encrypt_pdf(pdf, "secret"), Reason.ENCRYPTED),
        (lambda pdf: encrypt_pdf(pdf, "secret", "RC4-128"), Reason.ENCRYPTED),
        (lambda pdf: pdf[: len(pdf) // 3], Reason.CORRUPT),
        (lambda pdf: pdf.replace(b"/Type /Pages", b"/Type /Nonsense"), Reason.CORRUPT),
        (lambda pdf: make_image_only_pdf(), Reason.NO_TEXT),
        (lambda pdf: make_compression_bomb_pdf(), Reason.TOO_LARGE),
    ],
    ids=["aes-password", "rc4-password", "truncated", "broken-tree", "image-only", "bomb"],
)
def test_bad_pdfs_are_rejected_with_their_reason(tmp_path, text_pdf, make, reason) -> None:
    path = write(tmp_path, make(text_pdf))
    assert rejected_reason(
        lambda: extract_document_text(path, PDF, ExtractionLimits())
    ) == reason


@pytest.mark.processes
def test_empty_user_password_is_opened(tmp_path, text_pdf: bytes) -> None:
    path = write(tmp_path, encrypt_pdf(text_pdf, ""))
    assert "quarterly" in extract_document_text(path, PDF, ExtractionLimits()).pages[0].text


@pytest.mark.processes
def test_limits_are_enforced(tmp_path, text_pdf: bytes) -> None:
    path = write(tmp_path, text_pdf)
    too_small = ExtractionLimits(max_bytes=100)
    assert rejected_reason(lambda: extract_document_text(path, PDF, too_small)) == (
        Reason.TOO_LARGE
    )
    one_page = ExtractionLimits(max_pages=1)
    assert rejected_reason(lambda: extract_document_text(path, PDF, one_page)) == (
        Reason.TOO_LARGE
    )


@pytest.mark.processes
def test_deadline_really_stops_the_work(tmp_path) -> None:
    import time

    big = make_pdf([f"Sentence number {i} of a long document." * 40 for i in range(1500)])
    path = write(tmp_path, big)
    started = time.monotonic()
    reason = rejected_reason(
        lambda: extract_document_text(path, PDF, ExtractionLimits(deadline_s=0.3))
    )
    assert reason == Reason.TIMEOUT
    assert time.monotonic() - started < 5
    # The killed worker is replaced: the next document extracts normally.
    small = write(tmp_path, make_pdf(["After the timeout."]), "small.pdf")
    assert extract_document_text(small, PDF, ExtractionLimits()).pages[0].text.strip()


@pytest.mark.processes
def test_the_deadline_counts_the_workers_own_time_not_waiting_for_a_core(tmp_path) -> None:
    """A stopped worker uses no CPU, like one waiting behind other runs for a core: held
    past its deadline, it still finishes its document."""
    import os
    import signal
    import threading
    import time

    from doc_runs.core.extract import extract_pdf_pages
    from doc_runs.core.isolation import IsolatedWorker

    path = write(tmp_path, make_pdf([f"Page {i} of a patient document." for i in range(20)]))
    worker = IsolatedWorker(0)
    try:
        # Warm: the first call pays for the worker's start-up.
        worker.call(extract_pdf_pages, (str(path), 100), 30)
        os.kill(worker.process.pid, signal.SIGSTOP)
        threading.Timer(2.5, os.kill, (worker.process.pid, signal.SIGCONT)).start()
        started = time.monotonic()
        kind, (pages, _, _) = worker.call(extract_pdf_pages, (str(path), 100), 1.0)
        held = time.monotonic() - started
    finally:
        worker.kill()
    assert kind == "ok" and len(pages) == 20
    assert held >= 2.5  # held for over twice its deadline, and not stopped for it


@pytest.mark.processes
def test_memory_cap_turns_a_bomb_into_too_large(tmp_path) -> None:
    # Under pypdf's own 75 MB inflation limit, so only the address-space cap can stop it.
    path = write(tmp_path, make_compression_bomb_pdf(70 * 1024 * 1024))
    capped = ExtractionLimits(memory_bytes=140 * 1024 * 1024)
    assert rejected_reason(lambda: extract_document_text(path, PDF, capped)) == Reason.TOO_LARGE
    # The same file under the default cap is read: the cap, not the file, made the difference.
    assert extract_document_text(path, PDF, ExtractionLimits()).pages[0].text.strip() == "bomb"


def test_text_files_pass_through_with_form_feed_pages(tmp_path) -> None:
    path = write(tmp_path, b"First page.\fSecond page.", "notes.txt")
    result = extract_document_text(path, TEXT, ExtractionLimits())
    assert [p.text for p in result.pages] == ["First page.", "Second page."]
