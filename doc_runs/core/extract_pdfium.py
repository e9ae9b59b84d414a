"""Per-page text from PDFs with PDFium (pypdfium2), the optional second PDF engine.

Same contract and failure reasons as extract.extract_pdf_pages, so the two are interchangeable
in the isolated worker. pypdfium2 is an optional dependency (the `pdfium` extra): it is
imported only when a PDF is read, so this module imports without it.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

from doc_runs.core.outcomes import DocumentRejected, Reason

PDFIUM_MISSING = "the pdfium engine needs pypdfium2: pip install 'doc_runs[pdfium]'"


class PdfEngineMissing(RuntimeError):
    """The configured PDF engine is not installed: the setup is at fault, not the document."""


def pdfium_installed() -> bool:
    # Found without importing it: the caller's process need not load PDFium to ask.
    return importlib.util.find_spec("pypdfium2") is not None


def _import_pdfium() -> ModuleType:
    try:
        import pypdfium2
    except ImportError:
        raise PdfEngineMissing(PDFIUM_MISSING) from None
    return pypdfium2


def _open_pdf(pdfium: ModuleType, path: str) -> Any:
    """The open document, or None where it has no pages. PdfDocument(path) is not used: it
    turns a document without pages into a load error, reporting whatever error code an
    earlier failed load left behind in PDFium (an encrypted file's, say)."""
    raw = pdfium.raw
    # An empty password opens files that only have an owner password, as pypdf's decrypt("").
    handle = raw.FPDF_LoadDocument(os.fsencode(path) + b"\0", b"\0")
    if not handle:
        code = raw.FPDF_GetLastError()
        if code == raw.FPDF_ERR_PASSWORD:
            raise DocumentRejected(Reason.ENCRYPTED, "encrypted and needs a password")
        if code == raw.FPDF_ERR_SECURITY:
            raise DocumentRejected(Reason.ENCRYPTED, "cannot decrypt: unsupported security")
        known = {raw.FPDF_ERR_FILE: "file access error", raw.FPDF_ERR_FORMAT: "format error"}
        raise DocumentRejected(Reason.CORRUPT,
                               f"PDFium cannot load it: {known.get(code, f'error {code}')}")
    pdf = pdfium.PdfDocument(handle)  # owns the handle from here: its close() frees it
    if len(pdf) < 1:
        pdf.close()
        return None
    return pdf


def _page_text(pdf: Any, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            # PDFium ends lines with CRLF; pypdf and text files with LF.
            return str(textpage.get_text_range()).replace("\r\n", "\n")
        finally:
            textpage.close()
    finally:
        page.close()


def extract_pdf_pages_pdfium(path: str, max_pages: int
                             ) -> tuple[list[str | None], int, str | None]:
    """Text of each page (None where the page itself could not be read), a warning count
    (always 0: PDFium reports none) and the first page error. Runs in the isolated worker."""
    pdfium = _import_pdfium()
    pdf = None
    try:
        pdf = _open_pdf(pdfium, path)
        if pdf is None:
            return [], 0, None
        count = len(pdf)
        if count > max_pages:
            raise DocumentRejected(Reason.TOO_LARGE, f"{count} pages, limit {max_pages}")
        texts: list[str | None] = []
        first_error: str | None = None
        for index in range(count):
            try:
                texts.append(_page_text(pdf, index))
            except MemoryError:
                raise
            except Exception as exc:
                texts.append(None)
                first_error = first_error or f"{type(exc).__name__}: {exc}"
        return texts, 0, first_error
    except DocumentRejected:
        raise
    except MemoryError:
        raise DocumentRejected(Reason.TOO_LARGE, "memory cap reached while parsing") from None
    except Exception as exc:
        raise DocumentRejected(Reason.CORRUPT, f"{type(exc).__name__}: {exc}") from None
    finally:
        # Closed now, not at garbage collection: the worker reads hundreds of files.
        if pdf is not None:
            pdf.close()
