"""Media type from the bytes, not the file name; the name only says what the sender claimed."""

from __future__ import annotations

import codecs
from pathlib import PurePath

from doc_runs.core.outcomes import DocumentRejected, Reason

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"

# The PDF spec lets a header sit after some leading junk; readers look in the first KiB.
_PDF_HEADER_WINDOW = 1024
_TEXT_PROBE_BYTES = 64 * 1024
_CLAIMS = {".pdf": PDF, ".txt": TEXT, ".text": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN}
# Magic numbers of formats people drop by mistake, named in the rejection.
_KNOWN_BINARY = {
    b"\x89PNG": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"PK\x03\x04": "ZIP archive (or an Office document)",
    b"\xd0\xcf\x11\xe0": "legacy Office document",
    b"\x1f\x8b": "gzip archive",
    b"II*\x00": "TIFF image",
    b"MM\x00*": "TIFF image",
    b"\x7fELF": "ELF executable",
}


def claimed_media_type(file_name: str | None) -> str | None:
    if not file_name:
        return None
    return _CLAIMS.get(PurePath(file_name).suffix.lower())


def decode_text(data: bytes, *, partial: bool = False) -> str | None:
    """The text of `data` if it reads as text (UTF-8, UTF-16 with BOM, or clean Latin-1).

    With `partial`, `data` is a prefix: a multi-byte character cut at its end is not an error.
    """
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    if b"\x00" in data[:_TEXT_PROBE_BYTES]:
        return None
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not partial)
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    probe = text[:_TEXT_PROBE_BYTES]
    controls = sum(1 for ch in probe if ord(ch) < 32 and ch not in "\t\n\r\f")
    controls += sum(1 for ch in probe if 0x7F <= ord(ch) < 0xA0)
    return None if controls > len(probe) * 0.01 else text


def _looks_like_markdown(text: str) -> bool:
    lines = text[:_TEXT_PROBE_BYTES].splitlines()
    marks = sum(
        1
        for line in lines
        if line.startswith(("# ", "## ", "### ", "- ", "* ", "> ", "```")) or "](" in line
    )
    return marks >= 2 and marks >= len(lines) * 0.05


def sniff_media_type(head: bytes, file_name: str | None = None) -> str:
    """Media type of a document whose first bytes are `head` (pass at least 64 KiB).

    Raises DocumentRejected for empty files, non-PDF bytes named as a PDF, and binary formats
    the pipeline does not read.
    """
    if not head:
        raise DocumentRejected(Reason.EMPTY_FILE, "the file has zero bytes")
    if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
        return PDF
    claimed = claimed_media_type(file_name)
    if claimed == PDF:
        raise DocumentRejected(
            Reason.NOT_PDF, f"named {file_name!r} but the bytes carry no %PDF- header"
        )
    for magic, kind in _KNOWN_BINARY.items():
        if head.startswith(magic):
            raise DocumentRejected(Reason.UNSUPPORTED_TYPE, f"the bytes are a {kind}")
    text = decode_text(head, partial=True)
    if text is None or not text.strip():
        if text is not None:
            raise DocumentRejected(Reason.EMPTY_FILE, "the file holds only whitespace")
        raise DocumentRejected(Reason.UNSUPPORTED_TYPE, "binary content of an unknown format")
    if claimed == MARKDOWN or _looks_like_markdown(text):
        return MARKDOWN
    return TEXT
