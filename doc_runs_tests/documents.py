"""Documents the tests make themselves, good and bad, so the suite passes on any machine."""

from __future__ import annotations

import io
import zlib

from pypdf import PdfReader, PdfWriter


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _assemble(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def _stream(data: bytes, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + (
            b"\nendstream"
        )
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def make_pdf(pages: list[str], *, compress: bool = False) -> bytes:
    """A valid PDF with one page per string, in Helvetica, wrapped at about 90 characters."""
    count = len(pages)
    font_number = 3 + 2 * count
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (" ".join(f"{3 + 2 * i} 0 R" for i in range(count)).encode(), count),
    ]
    for i, text in enumerate(pages):
        lines, line = [], ""
        for word in text.split():
            if len(line) + len(word) > 90:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        content = "BT /F1 11 Tf 14 TL 50 760 Td " + " ".join(
            f"({_escape(t)}) Tj T*" for t in lines
        ) + " ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * i, font_number)
        )
        objects.append(_stream(content.encode("latin-1", "replace"), compress))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _assemble(objects)


def make_image_only_pdf(width: int = 64, height: int = 64) -> bytes:
    """A page holding only an image: what a scanner without OCR produces."""
    pixels = bytes((x * 4) % 256 for x in range(width * height))
    image = _stream(pixels, True).replace(
        b"<< /Length",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length" % (width, height),
        1,
    )
    content = _stream(b"q %d 0 0 %d 50 600 cm /Im1 Do Q" % (width, height), False)
    return _assemble([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /XObject << /Im1 5 0 R >> >> >>",
        content,
        image,
    ])


def make_compression_bomb_pdf(inflated_bytes: int = 200 * 1024 * 1024) -> bytes:
    """A page whose content stream inflates from a few hundred KB to `inflated_bytes`."""
    compressor = zlib.compressobj(9)
    block = b" " * (1 << 20)
    parts = [compressor.compress(b"BT /F1 11 Tf 50 700 Td (bomb) Tj ET\n")]
    parts += [compressor.compress(block) for _ in range(inflated_bytes // len(block))]
    data = b"".join(parts) + compressor.flush()
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + (
        b"\nendstream"
    )
    return _assemble([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])


def make_spinning_pdf(pages: int = 400, operators_per_page: int = 50_000) -> bytes:
    """A few kilobytes that keep pypdf busy for minutes: every page shows one shared content
    stream of `operators_per_page` text operators, each parsed in Python (about 25 us each
    on the machine this was written on), under pypdf's limit of tokens per stream."""
    content = zlib.compress(b"BT /F1 11 Tf " + b"(x) Tj 0 0 Td " * operators_per_page + b"ET")
    first_page = 5
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (" ".join(f"{first_page + i} 0 R" for i in range(pages)).encode(), pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
                b"/Resources << /Font << /F1 4 0 R >> >> >>"] * pages
    return _assemble(objects)


def encrypt_pdf(pdf: bytes, user_password: str, algorithm: str = "AES-256") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def ten_page_pdf(seed: int) -> bytes:
    """Ten pages of distinct, sentence-shaped text (for throughput measurements)."""
    return sentence_pages_pdf(seed, 10)


def sentence_pages_pdf(seed: int, page_count: int) -> bytes:
    """`page_count` pages of sentence-shaped text, distinct for each seed and page."""
    words = ("contract payment invoice delivery schedule revenue audit board budget report "
             "quarter customer supplier warranty liability notice term renewal price").split()
    pages = []
    for page in range(page_count):
        sentences = []
        for s in range(18):
            n = seed * 7919 + page * 131 + s * 17
            chosen = [words[(n + k * k) % len(words)] for k in range(12)]
            sentences.append(f"Clause {seed}.{page}.{s}: the " + " ".join(chosen) + ".")
        pages.append(" ".join(sentences))
    return make_pdf(pages, compress=True)
