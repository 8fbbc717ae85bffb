from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile

import pytest
from PIL import Image

from helpline.core.errors import Invalid
from helpline.evidence.sniff import MediaType, Unsupported, sniff


def pillow(format: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 90)).save(out, format=format, **options)
    return out.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    box = struct.pack(">I", 8 + len(body)) + b"ftyp" + body
    return box + struct.pack(">I", 8) + b"free" + struct.pack(">I", 16) + b"mdat" + bytes(8)


def ebml(doctype: bytes) -> bytes:
    # EBML header: EBMLVersion 1, ReadVersion 1, MaxIDLength 4, MaxSizeLength 8, DocType
    body = (
        b"\x42\x86\x81\x01"
        + b"\x42\xf7\x81\x01"
        + b"\x42\xf2\x81\x04"
        + b"\x42\xf3\x81\x08"
        + b"\x42\x82"
        + bytes([0x80 | len(doctype)])
        + doctype
        + b"\x42\x87\x81\x04\x42\x85\x81\x02"
    )
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67\x01"


def zipped(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, "content")
    return out.getvalue()


def tarred() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    return out.getvalue()


PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"


@pytest.mark.parametrize(
    ("head", "mime", "kind", "extension"),
    [
        (pillow("JPEG"), "image/jpeg", "image", ".jpg"),
        (pillow("PNG"), "image/png", "image", ".png"),
        (pillow("WEBP"), "image/webp", "image", ".webp"),
        (pillow("WEBP", lossless=True), "image/webp", "image", ".webp"),
        (pillow("GIF"), "image/gif", "image", ".gif"),
        (b"GIF87a" + bytes(20), "image/gif", "image", ".gif"),
        (ftyp(b"heic", b"mif1", b"heic"), "image/heic", "image", ".heic"),
        (ftyp(b"heix", b"mif1"), "image/heic", "image", ".heic"),
        (ftyp(b"mif1", b"mif1", b"heic"), "image/heic", "image", ".heic"),
        (ftyp(b"mif1", b"mif1"), "image/heif", "image", ".heif"),
        (ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4", "video", ".mp4"),
        (ftyp(b"mp42", b"mp42", b"isom"), "video/mp4", "video", ".mp4"),
        (ftyp(b"avc1"), "video/mp4", "video", ".mp4"),
        (ftyp(b"M4V ", b"M4V ", b"mp42"), "video/x-m4v", "video", ".m4v"),
        (ftyp(b"3gp4", b"3gp4", b"isom"), "video/3gpp", "video", ".3gp"),
        (ftyp(b"qt  ", b"qt  "), "video/quicktime", "video", ".mov"),
        (struct.pack(">I", 8) + b"wide" + struct.pack(">I", 100) + b"mdat", "video/quicktime",
         "video", ".mov"),
        (ebml(b"webm"), "video/webm", "video", ".webm"),
        (PDF_HEAD, "application/pdf", "pdf", ".pdf"),
        (b"He threatened to post the photos on Friday.\n", "text/plain; charset=utf-8", "text",
         ".txt"),
        ("Hij zei: \u201cbetaal of ik publiceer\u201d \U0001f622\r\n".encode(),
         "text/plain; charset=utf-8", "text", ".txt"),
        (b"\xef\xbb\xbfchat log with a BOM\n", "text/plain; charset=utf-8", "text", ".txt"),
        (b"I love you <3 <b>bold</b> and 2 < 3\n", "text/plain; charset=utf-8", "text", ".txt"),
    ],
)  # fmt: skip
def test_accepted_types(head: bytes, mime: str, kind: str, extension: str) -> None:
    assert sniff(head) == MediaType(mime, kind, extension)  # type: ignore[arg-type]


def test_text_cut_in_the_middle_of_a_character_is_still_text() -> None:
    head = ("\u00e9" * 4096).encode()[:8191]  # ends with half of a two-byte character
    assert sniff(head).kind == "text"


def test_type_comes_from_the_bytes_whatever_the_file_is_called() -> None:
    # there is nothing else to go on: sniff sees bytes only
    assert sniff(pillow("PNG")).mime == "image/png"


def refused(head: bytes) -> str:
    with pytest.raises(Unsupported) as caught:
        sniff(head)
    assert caught.value.code == "unsupported_type"
    assert caught.value.status == 422
    assert isinstance(caught.value, Invalid)
    return caught.value.message


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(50), "Windows program"),
        (b"\x7fELF\x02\x01\x01" + bytes(50), "Linux program"),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(50), "macOS program"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(50), "program"),
        (b"#!/bin/sh\nrm -rf ~\n", "script"),
        (b"#!/usr/bin/env python3\nprint('hi')\n", "script"),
        (zipped("notes.txt"), "zip archive"),
        (zipped("[Content_Types].xml", "word/document.xml"), "Word document"),
        (zipped("META-INF/MANIFEST.MF", "Main.class"), "Java program"),
        (b"PK\x05\x06" + bytes(18), "zip archive"),
        (b"Rar!\x1a\x07\x01\x00" + bytes(20), "RAR archive"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(20), "7-Zip archive"),
        (gzip.compress(b"hello"), "gzip archive"),
        (tarred(), "tar archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(50), "Office document"),
        (b"{\\rtf1\\ansi hello}", "RTF document"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "web page"),
        (b"<html><script>alert(1)</script></html>", "web page"),
        (b"  \r\n\t<HTML>", "web page"),
        (b"<ScRiPt>alert(1)</script>", "web page"),
        (b"\xef\xbb\xbf<!doctype HTML>\n<title>x</title>", "web page"),
        (b"\xef\xbb\xbf \n <script src=//evil></script>", "web page"),
        ("\ufeff<html><body>".encode("utf-16-le"), "web page"),
        (b"<!-- comment -->\n<p>hi", "web page"),
        (b"<?php system($_GET['c']); ?>", "web page"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "SVG"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
         "SVG"),
        (b"\xef\xbb\xbf  <SVG>", "SVG"),
        (b'<?xml version="1.0"?><note/>', "XML document"),
        (b"dear diary\n<script>steal()</script>\n", "<script"),
        (ftyp(b"avif", b"avif", b"mif1"), "AVIF"),
        (ftyp(b"M4A ", b"M4A ", b"isom"), "audio"),
        (ebml(b"matroska"), "Matroska"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "RIFF WAVE"),
    ],
)  # fmt: skip
def test_refused_types_are_named(head: bytes, named: str) -> None:
    assert named in refused(head)


@pytest.mark.parametrize(
    "head",
    [
        b"\x00\x01\x02\x03\x04" * 20,
        bytes(range(256)),
        b"\xff\xfe\x00\x00" + bytes(40),
        "plain text in UTF-16".encode("utf-16"),
        b"caf\xe9 latin-1 is not UTF-8",
        b"BM" + bytes(60),  # BMP: not accepted
        b"II*\x00" + bytes(60),  # TIFF
        b"text with a NUL\x00 byte",
        ftyp(b"zzzz", b"zzzz"),
        b"\x1a\x45\xdf\xa3\x80",  # EBML without a doctype
    ],
)
def test_unknown_types_are_refused_with_what_to_send(head: bytes) -> None:
    message = refused(head)
    assert "send a photo, video, PDF or text" in message


@pytest.mark.parametrize(
    "marker", [b"<script>alert(1)</script>", b"<HTML>", b"<svg onload=x>", b"<!doctype html>"]
)
@pytest.mark.parametrize("format", ["JPEG", "PNG", "GIF"])
def test_polyglots_are_refused(format: str, marker: bytes) -> None:
    image = pillow(format)
    head = image[:4] + image[4:] + marker  # markup in the same head as the image's magic
    message = refused(head)
    assert "polyglot" in message


def test_jpeg_with_markup_in_its_comment_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="JPEG", comment=b"<script>alert(1)</script>")
    assert "polyglot" in refused(out.getvalue())


def test_pdf_with_a_script_tag_is_refused() -> None:
    assert "polyglot" in refused(PDF_HEAD + b"<script>alert(1)</script>")


def test_empty_is_invalid() -> None:
    with pytest.raises(Invalid, match="the file is empty"):
        sniff(b"")
