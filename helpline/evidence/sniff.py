"""What kind of file evidence is, from its first bytes only.

A client's content type and file name are claims; the magic bytes are what a viewer will act
on. `sniff` accepts images (JPEG, PNG, WebP, GIF, HEIC/HEIF), video (MP4, MOV, WebM), PDF and
plain UTF-8 text, and refuses everything else with `Unsupported`, naming what the file is when
it is recognisable (a program, an archive, a web page, an SVG drawing). A file that starts like
an accepted type but also carries markup a browser would run (a polyglot) is refused too.

Only the head of a file is seen (the vault keeps the first 8 KiB); a polyglot whose second
format sits at the end (a zip appended to a JPEG) is not detected here, which is one reason
files are always served with the sniffed type, as attachments, with `nosniff`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from helpline.core.errors import Invalid

Kind = Literal["image", "video", "pdf", "text"]

ACCEPTED = "send a photo, video, PDF or text"


class Unsupported(Invalid):
    """A file of a type the helpline does not accept."""

    code = "unsupported_type"


@dataclass(frozen=True, slots=True)
class MediaType:
    """A sniffed type: its MIME type, broad kind, and usual extension (with the dot)."""

    mime: str
    kind: Kind
    extension: str


JPEG = MediaType("image/jpeg", "image", ".jpg")
PNG = MediaType("image/png", "image", ".png")
WEBP = MediaType("image/webp", "image", ".webp")
GIF = MediaType("image/gif", "image", ".gif")
HEIC = MediaType("image/heic", "image", ".heic")
HEIF = MediaType("image/heif", "image", ".heif")
MP4 = MediaType("video/mp4", "video", ".mp4")
M4V = MediaType("video/x-m4v", "video", ".m4v")
THREE_GP = MediaType("video/3gpp", "video", ".3gp")
MOV = MediaType("video/quicktime", "video", ".mov")
WEBM = MediaType("video/webm", "video", ".webm")
PDF = MediaType("application/pdf", "pdf", ".pdf")
TEXT = MediaType("text/plain; charset=utf-8", "text", ".txt")

# ISO base media file format (the `ftyp` box): brand -> type
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2"}
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9",
    b"mp41", b"mp42", b"avc1", b"dash", b"mmp4", b"MSNV", b"NDAS", b"F4V ", b"f4v ",
    b"XAVC", b"hvc1", b"av01",
}  # fmt: skip
_M4V_BRANDS = {b"M4V ", b"M4VH", b"M4VP"}
_3GP_BRANDS = {b"3gp4", b"3gp5", b"3gp6", b"3gp7", b"3gg6", b"3g2a", b"3g2b", b"3g2c"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_AVIF_BRANDS = {b"avif", b"avis"}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"pnot"}  # old .mov files have no ftyp

# refused, by what they start with
_PROGRAMS: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"\xfe\xed\xfa\xce", "a macOS program"),
    (b"\xfe\xed\xfa\xcf", "a macOS program"),
    (b"\xce\xfa\xed\xfe", "a macOS program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"\xca\xfe\xba\xbe", "a program (macOS or Java)"),
    (b"\x00asm", "a WebAssembly program"),
    (b"dex\n", "an Android program"),
    (b"#!", "a script"),
)
_ARCHIVES: tuple[tuple[bytes, str], ...] = (
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"MSCF", "a cabinet archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Office document"),
    (b"{\\rtf", "an RTF document"),
)
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

# markup a browser would run; looked for after a BOM and whitespace, case-insensitively
_HTML_STARTS = (
    b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<!--",
    b"<meta", b"<style", b"<title", b"<a ", b"<div", b"<p>", b"<img", b"<object", b"<embed",
    b"<?php",
)  # fmt: skip
# anywhere in the head of any accepted file: a polyglot, or a "text" file that is a web page
_ACTIVE_MARKUP = (b"<script", b"<html", b"<!doctype html", b"<?php", b"<iframe", b"<svg")
_BOMS = (b"\xef\xbb\xbf",)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _refuse(what: str) -> Unsupported:
    return Unsupported(f"this file is {what}, which is not accepted; {ACCEPTED}", detected=what)


def sniff(head: bytes) -> MediaType:
    """The type of a file from its first bytes (at least the first 8 KiB when the file is that
    long). Raises `Unsupported` for refused or unknown types, `Invalid` for an empty file."""
    if not head:
        raise Invalid("the file is empty")
    media = _binary_type(head)
    if media is not None:
        marker = _active_markup(head)
        if marker is not None:
            raise _refuse(f"a {media.mime} file that also contains {marker} (a polyglot)")
        return media
    markup = _markup(head)
    if markup is not None:
        raise _refuse(markup)
    if _is_text(head):
        return TEXT
    raise Unsupported(f"this kind of file is not accepted; {ACCEPTED}")


def _binary_type(head: bytes) -> MediaType | None:
    """An accepted binary type, None when it is none of them; raises for refused ones."""
    for magic, what in _PROGRAMS:
        if head.startswith(magic):
            raise _refuse(what)
    if head.startswith(_ZIP_MAGICS):
        raise _refuse(_zip_kind(head))
    for magic, what in _ARCHIVES:
        if head.startswith(magic):
            raise _refuse(what)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise _refuse("a tar archive")

    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF":
        raise _refuse(f"a RIFF {head[8:12].decode('latin-1').strip() or 'file'} (not WebP)")
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(head)
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    if head[4:8] in _QUICKTIME_ATOMS and not 2 <= int.from_bytes(head[:4], "big") < 8:
        return MOV  # an atom's size is 0 (to the end), 1 (64-bit size follows) or >= 8
    return None


def _zip_kind(head: bytes) -> str:
    if b"word/" in head:
        return "a Word document (a zip archive)"
    if b"xl/" in head:
        return "an Excel workbook (a zip archive)"
    if b"ppt/" in head:
        return "a PowerPoint presentation (a zip archive)"
    if b"AndroidManifest.xml" in head or b"classes.dex" in head:
        return "an Android app (a zip archive)"
    if b"META-INF/" in head:
        return "a Java program (a zip archive)"
    if b"mimetypeapplication/vnd.oasis" in head:
        return "an OpenDocument file (a zip archive)"
    if b"mimetypeapplication/epub" in head:
        return "an e-book (a zip archive)"
    return "a zip archive"


def _iso_media(head: bytes) -> MediaType:
    """MP4, MOV, 3GP or HEIC/HEIF, by the brands of the `ftyp` box."""
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    end = min(len(head), box_size if box_size >= 16 else 16)
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and brands & _AVIF_BRANDS):
        raise _refuse("an AVIF image")
    if major in _HEIC_BRANDS:
        return HEIC
    if major in _HEIF_BRANDS:
        return HEIC if brands & _HEIC_BRANDS else HEIF
    if major == b"qt  ":
        return MOV
    if major in _AUDIO_BRANDS:
        raise _refuse("an audio file")
    if major in _M4V_BRANDS:
        return M4V
    if major in _3GP_BRANDS:
        return THREE_GP
    if major in _MP4_BRANDS or brands & (_MP4_BRANDS | {b"mp41", b"mp42"}):
        return MP4
    raise Unsupported(f"this kind of video or image is not accepted; {ACCEPTED}")


def _ebml(head: bytes) -> MediaType:
    """WebM; other Matroska files are refused. The DocType element (ID 0x4282) names it."""
    at = head.find(b"\x42\x82", 4, 64)
    if at >= 0 and at + 3 < len(head):
        length_byte = head[at + 2]
        if length_byte & 0x80:  # a one-byte size, which is what every muxer writes
            doctype = head[at + 3 : at + 3 + (length_byte & 0x7F)]
            if doctype == b"webm":
                return WEBM
            if doctype == b"matroska":
                raise _refuse("a Matroska (MKV) video; send it as MP4 or WebM instead")
    raise Unsupported(f"this kind of video is not accepted; {ACCEPTED}")


def _stripped_lower(head: bytes) -> bytes:
    """The head as lower-case ASCII-ish bytes, without a BOM or leading whitespace; UTF-16
    text (with a BOM) is decoded first so `<\\0h\\0t\\0m\\0l` is seen as `<html`."""
    if head.startswith(_UTF16_BOMS):
        text = head.decode("utf-16", errors="ignore")
        head = text.encode("utf-8", errors="ignore")
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
    return head.lstrip(b" \t\r\n\f\v\x00").lower()


def _markup(head: bytes) -> str | None:
    """What kind of web content this is, if it is any."""
    start = _stripped_lower(head)
    if start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in start):
        return "an SVG drawing"
    if start.startswith(_HTML_STARTS):
        return "a web page (HTML)"
    if start.startswith(b"<?xml"):
        return "an XML document"
    marker = _active_markup(head)
    if marker is not None:
        return f"text that contains {marker}, like a web page"
    return None


def _active_markup(head: bytes) -> str | None:
    lowered = _stripped_lower(head)
    for marker in _ACTIVE_MARKUP:
        if marker in lowered:
            return marker.decode()
    return None


def _is_text(head: bytes) -> bool:
    """Valid UTF-8 without NUL bytes and with few control characters. The head may end in the
    middle of a character, so an incomplete sequence at its very end is fine."""
    if b"\x00" in head:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f" or c == "\x7f")
    return controls <= len(text) // 100
