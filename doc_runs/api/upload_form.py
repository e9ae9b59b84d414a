"""Reading a multipart/form-data upload as it arrives: the `file` part goes straight into the
store's upload writer, block by block, so the size limit holds while receiving and nothing
but the limit's worth of bytes is ever written; the few text fields are kept in memory.

Starlette's UploadFile is not used: it spools the whole body before the endpoint can look at
it, which would defeat both the early 413 and the limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from doc_runs.api.errors import ApiError
from doc_runs.core.store import UploadWriter

FILE_FIELD = "file"
TEXT_FIELDS = ("idempotency_key", "extra_fields")
# Room for the boundaries, part headers and text fields around the file's own bytes.
FORM_OVERHEAD_BYTES = 64 * 1024
_MAX_TEXT_FIELD_BYTES = 32 * 1024


@dataclass
class UploadForm:
    file_name: bytes | None = None  # raw, as the client sent it: may not be UTF-8
    file_size: int = 0
    has_file: bool = False
    fields: dict[str, str] = field(default_factory=dict)


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body; 415 for any other media type."""
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        raise ApiError(415, "the body must be multipart/form-data with a `file` part")
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise ApiError(400, "the multipart/form-data Content-Type has no boundary")
    return boundary


def _bad(detail: str) -> ApiError:
    return ApiError(400, detail)


class _FormReader:
    """The parser's callbacks: route each part by its Content-Disposition name."""

    def __init__(self, writer: UploadWriter) -> None:
        self.writer = writer
        self.form = UploadForm()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._part: str | None = None
        self._text = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._part = [], None
        self._text = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._header_name).lower(), bytes(self._header_value)))
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), None)
        if disposition is None:
            raise _bad("a multipart part has no Content-Disposition header")
        # Bytes in, bytes out (latin-1 both ways): a file name keeps its exact bytes.
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise _bad("a multipart part is not `form-data` with a name")
        name = options[b"name"].decode("latin-1")
        if name == FILE_FIELD:
            if self.form.has_file:
                raise _bad("more than one `file` part: send one document per request")
            self.form.has_file = True
            self.form.file_name = (_extended_filename(disposition)
                                   or options.get(b"filename") or None)
        elif name in TEXT_FIELDS:
            if name in self.form.fields:
                raise _bad(f"the form field `{name}` is given twice")
        else:
            raise _bad(f"unknown form field `{name}`; the fields are `{FILE_FIELD}`, "
                       + ", ".join(f"`{n}`" for n in TEXT_FIELDS))
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        block = data[start:end]
        if self._part == FILE_FIELD:
            # A plain write into the page cache, in the event loop: blocks are at most what
            # one receive brings (about 64 KiB); the fsync comes at commit, in a thread.
            self.writer.write(block)  # raises TooLarge past the limit, leaving nothing
            self.form.file_size += len(block)
            return
        self._text += block
        if len(self._text) > _MAX_TEXT_FIELD_BYTES:
            raise _bad(f"the form field `{self._part}` is longer than "
                       f"{_MAX_TEXT_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._part is None or self._part == FILE_FIELD:
            return
        try:
            self.form.fields[self._part] = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"the form field `{self._part}` is not UTF-8 text") from None


async def receive_form(chunks: AsyncIterator[bytes], boundary: bytes, writer: UploadWriter,
                       max_body_bytes: int) -> UploadForm:
    """Parse the body from `chunks`, writing the file part into `writer`. Raises ApiError
    (400 malformed, 413 past `max_body_bytes`), `TooLarge` when the file passes the
    writer's limit, and whatever `chunks` raises (ClientDisconnect)."""
    reader = _FormReader(writer)
    parser = MultipartParser(boundary, callbacks=reader.callbacks())  # type: ignore[arg-type]
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        # Counts the text fields and part headers too: without it, a body of endless
        # small parts would never meet the file's limit.
        if received > max_body_bytes:
            raise ApiError(413, f"the body is larger than {max_body_bytes} bytes")
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise _bad(f"malformed multipart body: {exc}") from None
    # python-multipart's finalize() does not check this: a body cut short before its
    # closing boundary would otherwise pass as a complete, shorter file.
    if parser.state != MultipartState.END:
        raise _bad("the multipart body ended before its closing boundary")
    return reader.form


_EXTENDED_FILENAME = re.compile(rb"(?:^|;)\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)


def _extended_filename(disposition: bytes) -> bytes | None:
    """The RFC 6266 `filename*=charset'language'percent-encoded` name, which clients use for
    names that are not ASCII and which wins over `filename`; None when absent or malformed."""
    match = _EXTENDED_FILENAME.search(disposition)
    if match is None:
        return None
    charset, _, rest = match.group(1).strip().partition(b"'")
    _, _, encoded = rest.partition(b"'")
    raw = unquote_to_bytes(encoded)
    if not raw:
        return None
    if charset.lower() in (b"iso-8859-1", b"latin1", b"latin-1"):
        return raw.decode("latin-1").encode()
    return raw
