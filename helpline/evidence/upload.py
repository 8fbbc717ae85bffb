"""Reading an uploaded file as a stream, without ever writing it to disk in plaintext.

Starlette's `request.form()` spools large parts to temporary files: plaintext evidence on
disk. Instead, the body is fed to python-multipart's streaming parser and the file part's bytes
are handed on as they arrive, straight into the vault's encryption. One file part per request;
a body with many parts, or a part without a file, is refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from helpline.core.errors import Invalid

MAX_PARTS = 4
MAX_FILENAME = 200
FILE_FIELD = "file"


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None


def clean_filename(raw: str | None) -> str | None:
    """A file name as shown to staff: no path, no control characters, bounded. It is only ever
    displayed (and stored encrypted), never used as a path."""
    if not raw:
        return None
    name = re.split(r"[\\/]", raw)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    return name[:MAX_FILENAME] or None


@dataclass
class UploadStream:
    """The file part of a multipart body, as chunks; `filename` is known once the first
    chunk has been produced."""

    request: Request
    filename: str | None = None
    _parts: int = 0
    _current: _Part | None = None
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _file_seen: bool = False
    _ended: bool = False
    _pending: list[bytes] = field(default_factory=list)

    def _parser(self) -> MultipartParser:
        content_type, options = parse_options_header(self.request.headers.get("content-type"))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise Invalid("send the file as multipart/form-data with a 'file' field")

        def on_part_begin() -> None:
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise Invalid(f"too many parts in the upload (at most {MAX_PARTS})")
            self._current = _Part()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._header_name.extend(data[start:end])

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._header_value.extend(data[start:end])

        def on_header_end() -> None:
            assert self._current is not None
            self._current.headers[bytes(self._header_name).lower()] = bytes(self._header_value)
            self._header_name.clear()
            self._header_value.clear()

        def on_headers_finished() -> None:
            part = self._current
            assert part is not None
            _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
            part.name = options.get(b"name", b"").decode("utf-8", "replace")
            raw_filename = options.get(b"filename")
            part.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
            if part.name == FILE_FIELD and part.filename is not None:
                if self._file_seen:
                    raise Invalid("send one file per upload")
                self._file_seen = True
                self.filename = clean_filename(part.filename)

        def on_part_data(data: bytes, start: int, end: int) -> None:
            part = self._current
            if part is not None and part.name == FILE_FIELD and part.filename is not None:
                self._pending.append(bytes(data[start:end]))

        def on_end() -> None:
            self._ended = True

        return MultipartParser(
            boundary,
            {
                "on_end": on_end,
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
            },
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        parser = self._parser()
        async for received in self.request.stream():
            try:
                parser.write(received)
            except Invalid:
                raise
            except Exception:  # the parser's own errors: a malformed body
                raise Invalid("the upload is not a well-formed multipart body") from None
            while self._pending:
                yield self._pending.pop(0)
        try:
            parser.finalize()
        except Exception:
            raise Invalid("the upload ended before it was complete") from None
        if not self._ended:  # no closing boundary: the body was cut off
            raise Invalid("the upload ended before it was complete")
        while self._pending:
            yield self._pending.pop(0)
        if not self._file_seen:
            raise Invalid("no file in the upload (the field must be called 'file')")
