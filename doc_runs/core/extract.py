"""Per-page text from PDFs (pypdf, or PDFium: see extract_pdfium.py) and text files, with
typed failure reasons.

PDF parsing runs in a child process (see isolation.py): malformed files raise arbitrary
exception classes, spin, or allocate without bound, and none of that may reach the caller.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from doc_runs.core.extract_pdfium import (
    PDFIUM_MISSING,
    PdfEngineMissing,
    extract_pdf_pages_pdfium,
    pdfium_installed,
)
from doc_runs.core.isolation import run_isolated
from doc_runs.core.outcomes import DocumentRejected, Reason, TransientStageError
from doc_runs.core.sniff import MARKDOWN, PDF, TEXT, decode_text

if TYPE_CHECKING:
    import pypdf

PdfEngine = Literal["pypdf", "pdfium"]


class ExtractionLimits(BaseModel):
    max_bytes: int = Field(100 * 1024 * 1024, gt=0)
    max_pages: int = Field(5000, gt=0)
    deadline_s: float = Field(60.0, gt=0)
    memory_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=0)  # 0: no cap
    pdf_engine: PdfEngine = "pypdf"
    # pdfium rereads a PDF that pypdf found unreadable (engine pypdf only; best effort).
    second_opinion: bool = False


class PageText(BaseModel):
    number: int  # 1-based, as a reader counts
    text: str


class ExtractedText(BaseModel):
    media_type: str
    pages: list[PageText]
    pages_without_text: list[int]
    pages_failed: list[int]
    warnings: int
    engine: PdfEngine | None = None  # the PDF engine whose text was kept; None for text
    engine_note: str | None = None  # why that is not the configured engine

    @property
    def chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


# Ligatures and Arabic presentation forms are glyph shapes, not letters: NFKC maps them back
# (U+FB01 -> "fi"). Applied to these blocks only, so superscripts, fractions and full-width
# CJK punctuation stay as written.
_PRESENTATION_FORMS = re.compile("[\ufb00-\ufdff\ufe70-\ufeff]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


def normalize_text(text: str) -> str:
    text = _PRESENTATION_FORMS.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = text.replace("\ufeff", "")
    return _CONTROL.sub("", text)


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _open_pdf(path: str) -> pypdf.PdfReader:
    import pypdf
    from pypdf.errors import DependencyError

    reader = pypdf.PdfReader(path)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except DependencyError as exc:
            raise DocumentRejected(Reason.ENCRYPTED, f"cannot decrypt: {exc}") from None
        if not opened:
            raise DocumentRejected(Reason.ENCRYPTED, "encrypted and needs a password")
    return reader


def extract_pdf_pages(path: str, max_pages: int) -> tuple[list[str | None], int, str | None]:
    """Text of each page (None where the page itself could not be read), the number of
    warnings pypdf logged and the first page error. Runs in the isolated worker, which alone
    imports pypdf (a run process starts without it)."""
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    logger = logging.getLogger("pypdf")
    logger.propagate = False  # pypdf's warnings on damaged files are counted, not printed
    counter = _CountingHandler()
    logger.addHandler(counter)
    try:
        reader = _open_pdf(path)
        count = len(reader.pages)
        if count > max_pages:
            raise DocumentRejected(Reason.TOO_LARGE, f"{count} pages, limit {max_pages}")
        texts: list[str | None] = []
        first_error: str | None = None
        for page in reader.pages:
            try:
                texts.append(page.extract_text() or "")
            except (LimitReachedError, MemoryError, DocumentRejected):
                raise
            except Exception as exc:
                texts.append(None)
                first_error = first_error or f"{type(exc).__name__}: {exc}"
        return texts, counter.count, first_error
    except DocumentRejected:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentRejected(Reason.ENCRYPTED, str(exc)) from None
    except DependencyError as exc:
        raise DocumentRejected(Reason.ENCRYPTED, str(exc)) from None
    except LimitReachedError as exc:
        raise DocumentRejected(Reason.TOO_LARGE, f"decompression limit: {exc}") from None
    except MemoryError:
        raise DocumentRejected(Reason.TOO_LARGE, "memory cap reached while parsing") from None
    except RecursionError:
        raise DocumentRejected(Reason.CORRUPT, "object graph nested too deeply") from None
    except Exception as exc:
        raise DocumentRejected(Reason.CORRUPT, f"{type(exc).__name__}: {exc}") from None
    finally:
        logger.removeHandler(counter)


def _split_text_pages(text: str) -> list[str]:
    # A form feed is the plain-text page break.
    return text.split("\f")


RawPages = tuple[list[str | None], int, str | None]

_PDF_ENGINES: dict[PdfEngine, Callable[[str, int], RawPages]] = {
    "pypdf": extract_pdf_pages,
    "pdfium": extract_pdf_pages_pdfium,
}


def _paged_text(media_type: str, raw: list[str | None], warnings: int,
                page_error: str | None, engine: str | None = None) -> ExtractedText:
    pages = [PageText(number=i, text=normalize_text(t or "")) for i, t in enumerate(raw, 1)]
    failed = [i for i, t in enumerate(raw, 1) if t is None]
    empty = [p.number for p in pages if not p.text.strip() and p.number not in failed]
    if pages and len(failed) == len(pages):
        raise DocumentRejected(Reason.CORRUPT, f"no page could be read ({page_error})")
    if not pages:
        raise DocumentRejected(Reason.CORRUPT, "the document has no pages")
    if len(empty) + len(failed) == len(pages):
        raise DocumentRejected(
            Reason.NO_TEXT,
            f"none of {len(pages)} page(s) has a text layer (scanned? needs OCR)",
        )
    return ExtractedText(
        media_type=media_type,
        pages=pages,
        pages_without_text=empty,
        pages_failed=failed,
        warnings=warnings,
        engine=engine,
    )


def _read_pdf(path: str, engine: PdfEngine, limits: ExtractionLimits) -> ExtractedText:
    if engine == "pdfium" and not pdfium_installed():
        raise PdfEngineMissing(PDFIUM_MISSING)
    raw, warnings, page_error = run_isolated(
        _PDF_ENGINES[engine],
        (path, limits.max_pages),
        deadline_s=limits.deadline_s,
        memory_bytes=limits.memory_bytes,
    )
    return _paged_text(PDF, raw, warnings, page_error, engine)


def _second_opinion(path: str, limits: ExtractionLimits,
                    rejected: DocumentRejected) -> ExtractedText:
    """pdfium's text of a PDF pypdf could not read. Best effort: where pdfium cannot read it
    either, or is not installed, pypdf's rejection stands."""
    if not pdfium_installed():
        raise rejected
    try:
        extracted = _read_pdf(path, "pdfium", limits)
    except DocumentRejected as second:
        pdfium_said = f"{second.reason}: {second.detail}"
    except (TransientStageError, RuntimeError) as failure:
        # Not retried: the document already has pypdf's verdict, which a retry would repeat.
        pdfium_said = f"failed: {failure}"
    else:
        extracted.engine_note = f"pypdf rejected it ({rejected.detail}); pdfium read it"
        return extracted
    raise DocumentRejected(rejected.reason, f"{rejected.detail}; pdfium: {pdfium_said}")


def _extract_pdf(path: str, limits: ExtractionLimits) -> ExtractedText:
    try:
        return _read_pdf(path, limits.pdf_engine, limits)
    except DocumentRejected as rejected:
        # Only a file pypdf could not parse gets a second opinion: its other verdicts
        # (encrypted, too large, no text layer) are about the document, not pypdf's parser.
        if (limits.second_opinion and limits.pdf_engine == "pypdf"
                and rejected.reason is Reason.CORRUPT):
            return _second_opinion(path, limits, rejected)
        raise


def extract_document_text(path: str | os.PathLike[str], media_type: str,
                          limits: ExtractionLimits) -> ExtractedText:
    """Per-page text of the stored document at `path`. Raises DocumentRejected, or
    PdfEngineMissing where the configured PDF engine is not installed."""
    size = Path(path).stat().st_size
    if size > limits.max_bytes:
        raise DocumentRejected(Reason.TOO_LARGE, f"{size} bytes, limit {limits.max_bytes}")
    if media_type == PDF:
        return _extract_pdf(str(path), limits)
    if media_type in (TEXT, MARKDOWN):
        decoded = decode_text(Path(path).read_bytes())
        if decoded is None:
            raise DocumentRejected(Reason.UNSUPPORTED_TYPE, "bytes do not decode as text")
        return _paged_text(media_type, list(_split_text_pages(decoded)), 0, None)
    raise DocumentRejected(Reason.UNSUPPORTED_TYPE, f"no extractor for {media_type}")
