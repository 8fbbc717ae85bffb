"""Reading a raw mail defensively: what it says, who to answer, what it carries.

Anything may arrive: broken MIME, unknown charsets, broken base64, raw 8-bit headers, absurd
header blocks. `read_mail` either returns a `Mail` that represents the message faithfully or
raises `Unreadable` with a reason (the caller quarantines the raw mail: nothing is lost). With
`lenient=True` (a supervisor releases a quarantined mail) it makes the best of what is there.

The structure is parsed with `email.policy.default`; where that policy raises on a defect the
lenient `compat32` parser reads it instead. Headers are taken raw and decoded here, so a
header that cannot be decoded is one problem, not an exception somewhere later.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import errors, policy
from email.message import Message
from email.parser import BytesParser

from helpline.evidence.upload import clean_filename
from helpline.intake.email.models import QuarantineReason
from helpline.intake.email.text import clean, html_to_text

MAX_HEADER_BYTES = 256 * 1024
MAX_HEADER_FIELDS = 500
MAX_HEADER_FIELD_BYTES = 32 * 1024
MAX_PARTS = 200
MAX_DEPTH = 12
MAX_SUBJECT = 300
MAX_IDS = 50

# headers that say where a mail came from (addresses, host names): never stored, not even in
# the quarantine
TRACE_HEADERS = frozenset(
    {
        "received",
        "x-received",
        "received-spf",
        "authentication-results",
        "arc-authentication-results",
        "arc-seal",
        "arc-message-signature",
        "x-originating-ip",
        "x-sender-ip",
        "x-client-ip",
        "x-forwarded-for",
        "x-real-ip",
        "x-peer",
        "x-host",
        "x-mailfrom",
        "x-originating-host",
        "x-source-ip",
        "x-apparently-from",
    }
)

# defects after which the text or the attachments cannot be trusted to be what was sent
SERIOUS_DEFECTS: tuple[type[errors.MessageDefect], ...] = (
    errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect,
    errors.NoBoundaryInMultipartDefect,
    errors.MultipartInvariantViolationDefect,
    errors.FirstHeaderLineIsContinuationDefect,
    errors.MissingHeaderBodySeparatorDefect,
    errors.InvalidBase64PaddingDefect,
    errors.InvalidBase64CharactersDefect,
    errors.InvalidBase64LengthDefect,
)
_HEADER_NAME = re.compile(rb"^[!-9;-~]+:")
_MSG_ID = re.compile(r"<[^<>\s]{1,250}>")
_ADDRESS = re.compile(r"^[^@\s<>()\[\]\\,;:\"]{1,64}@[A-Za-z0-9.\-\[\]:]{1,253}$")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


class Unreadable(Exception):
    """This mail cannot be read faithfully; `detail` names what is wrong (no content)."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail[:200]


@dataclass
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class Mail:
    from_address: str | None = None
    reply_address: str | None = None  # Reply-To, else From
    subject: str = ""
    message_id: str | None = None
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    content_type: str = "text/plain"
    auto_submitted: str | None = None
    precedence: str | None = None
    x_loop: list[str] = field(default_factory=list)
    autoreply_headers: bool = False  # X-Autoreply, X-Autorespond, X-Auto-Response-Suppress
    defects: list[str] = field(default_factory=list)  # what lenient reading glossed over


# ---------------------------------------------------------------- the raw header block


def split_header_block(raw: bytes) -> tuple[bytes, bytes]:
    """The header block (with the line break of its last field) and the rest (the blank line
    and the body)."""
    match = re.search(rb"\r?\n(\r?\n)", raw)
    if match is None:
        return raw, b""
    return raw[: match.start(1)], raw[match.start(1) :]


def _fields(block: bytes) -> list[bytes]:
    """The header fields of a block, each with its continuation lines."""
    fields: list[bytes] = []
    for line in re.split(rb"(?<=\n)", block):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def check_headers(raw: bytes, *, lenient: bool = False) -> None:
    """Refuse header blocks that are absurd (too big, too many fields, a field too long),
    missing, or (unless `lenient`) 8-bit but not UTF-8 (RFC 6532 allows UTF-8 only)."""
    if not raw.strip():
        raise Unreadable(QuarantineReason.malformed, "empty message")
    block, _ = split_header_block(raw)
    if len(block) > MAX_HEADER_BYTES:
        raise Unreadable(QuarantineReason.absurd_headers, f"header block of {len(block)} bytes")
    fields = _fields(block)
    if len(fields) > MAX_HEADER_FIELDS:
        raise Unreadable(QuarantineReason.absurd_headers, f"{len(fields)} header fields")
    if any(len(f) > MAX_HEADER_FIELD_BYTES for f in fields):
        raise Unreadable(QuarantineReason.absurd_headers, "a header field is too long")
    if not fields or not _HEADER_NAME.match(fields[0]):
        raise Unreadable(QuarantineReason.malformed, "no header fields")
    if not lenient:
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(
                QuarantineReason.malformed, "8-bit headers that are not UTF-8"
            ) from None


def strip_trace_headers(raw: bytes) -> bytes:
    """The mail without the headers that say where it came from (`TRACE_HEADERS`)."""
    block, rest = split_header_block(raw)
    kept = [
        f
        for f in _fields(block)
        if f.split(b":", 1)[0].strip().lower().decode("latin-1") not in TRACE_HEADERS
    ]
    return b"".join(kept) + rest


# ---------------------------------------------------------------- headers of a parsed part


def _text_of(value: str, lenient: bool) -> str:
    """A raw header value as text: unfolded, 8-bit bytes read as UTF-8."""
    value = _UNFOLD.sub("", value).strip()
    if any("\udc80" <= c <= "\udcff" for c in value):
        data = value.encode("ascii", "surrogateescape")
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            if not lenient:
                raise Unreadable(QuarantineReason.malformed, "8-bit header not UTF-8") from None
            value = data.decode("utf-8", "replace")
    return value


def _headers(part: Message, lenient: bool) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in part.raw_items():
        found.setdefault(str(name).strip().lower(), []).append(_text_of(str(value), lenient))
    return found


def _decoded(name: str, value: str, defects: list[str]) -> str:
    """RFC 2047 encoded-words decoded (policy.default does it best; when it cannot, the text
    stays as it came)."""
    try:
        return str(policy.default.header_factory(name, value))
    except Exception:
        defects.append(f"header_encoding:{name}")
        return value


def _address(text: str | None) -> str | None:
    """The first plausible address in an address header, or None."""
    if not text:
        return None
    found = re.findall(r"<([^<>\s]+)>", text) or re.findall(r"[^\s<>,;\"()]+@[^\s<>,;\"()]+", text)
    for candidate in found:
        address = str(candidate).strip().rstrip(".")
        if _ADDRESS.match(address) and len(address) <= 254:
            return address
    return None


def _ids(values: list[str]) -> list[str]:
    return _MSG_ID.findall(" ".join(values))[-MAX_IDS:]


# ---------------------------------------------------------------- bodies


def _charset_of(part: Message) -> str | None:
    try:
        charset = part.get_param("charset")
    except Exception:
        return None
    if isinstance(charset, tuple):  # RFC 2231 form
        charset = charset[2]
    return str(charset).strip().strip('"').lower() if charset else None


def _decode_text(data: bytes, charset: str | None, lenient: bool, defects: list[str]) -> str:
    if charset is None or charset in ("us-ascii", "ascii"):
        # undeclared or "ascii" while 8-bit: UTF-8 if it is, else the usual Windows charset
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            defects.append("undeclared_8bit")
            return data.decode("cp1252", "replace")
    try:
        codecs.lookup(charset)
        return data.decode(charset)
    except LookupError:
        if not lenient:
            raise Unreadable(QuarantineReason.malformed, "unknown charset") from None
        defects.append("unknown_charset")
    except UnicodeDecodeError:
        if not lenient:
            raise Unreadable(
                QuarantineReason.malformed, "text not in its declared charset"
            ) from None
        defects.append("bad_charset")
    except Exception:  # a codec that is not a text encoding (zlib, base64, ...)
        if not lenient:
            raise Unreadable(QuarantineReason.malformed, "unknown charset") from None
        defects.append("unknown_charset")
    return data.decode("utf-8", "replace")


def _payload(part: Message, lenient: bool, defects: list[str]) -> bytes:
    before = len(part.defects)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = b""
    for defect in part.defects[before:]:
        if isinstance(defect, SERIOUS_DEFECTS) and not lenient:
            raise Unreadable(QuarantineReason.malformed, type(defect).__name__)
        defects.append(type(defect).__name__)
    return data


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """The parts that hold content, choosing one representation of each
    multipart/alternative and keeping attached mails (message/*) whole."""
    if depth > MAX_DEPTH:
        raise Unreadable(QuarantineReason.malformed, "MIME nested too deep")
    content_type = part.get_content_type()
    if content_type.startswith("message/") or not part.is_multipart():
        yield part
        return
    children = [c for c in part.get_payload() if isinstance(c, Message)]
    if content_type == "multipart/alternative" and children:
        for wanted in ("text/plain", "text/html"):
            chosen = [c for c in children if c.get_content_type() == wanted]
            if chosen:
                yield from _leaves(chosen[0], depth + 1)
                return
        yield from _leaves(children[-1], depth + 1)
        return
    for child in children:
        yield from _leaves(child, depth + 1)


def _attached_message(part: Message) -> bytes:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        try:
            return inner.as_bytes(policy=policy.compat32)
        except Exception:
            return str(inner).encode("utf-8", "surrogateescape")
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# ---------------------------------------------------------------- the whole mail


def _read(message: Message, lenient: bool) -> Mail:
    mail = Mail()
    defects = mail.defects
    for defect in message.defects:
        if isinstance(defect, SERIOUS_DEFECTS) and not lenient:
            raise Unreadable(QuarantineReason.malformed, type(defect).__name__)
        defects.append(type(defect).__name__)
    headers = _headers(message, lenient)

    def first(name: str) -> str | None:
        values = headers.get(name)
        return _decoded(name, values[0], defects) if values else None

    mail.from_address = _address(first("from"))
    mail.reply_address = _address(first("reply-to")) or mail.from_address
    mail.subject = " ".join(clean(first("subject") or "").split())[:MAX_SUBJECT]
    message_ids = _ids(headers.get("message-id", []))
    mail.message_id = message_ids[0] if message_ids else None
    mail.in_reply_to = _ids(headers.get("in-reply-to", []))
    mail.references = _ids(headers.get("references", []))
    mail.content_type = message.get_content_type()
    mail.auto_submitted = next(iter(headers.get("auto-submitted", [])), None)
    mail.precedence = next(iter(headers.get("precedence", [])), None)
    mail.x_loop = headers.get("x-loop", [])
    mail.autoreply_headers = any(
        name in headers for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
    )
    texts: list[str] = []
    parts = 0
    for part in _leaves(message):
        parts += 1
        if parts > MAX_PARTS:
            raise Unreadable(QuarantineReason.malformed, f"more than {MAX_PARTS} MIME parts")
        content_type = part.get_content_type()
        for defect in part.defects:
            if isinstance(defect, SERIOUS_DEFECTS) and not lenient:
                raise Unreadable(QuarantineReason.malformed, type(defect).__name__)
        try:
            raw_name = part.get_filename()
        except Exception:
            raw_name = None
        filename = clean_filename(_text_of(str(raw_name), True)) if raw_name else None
        disposition = (part.get_content_disposition() or "").lower()
        if content_type.startswith("message/"):
            if content_type in ("message/delivery-status", "message/disposition-notification"):
                continue  # the machine-readable half of a report; the text half is kept
            data = _attached_message(part)
            if data:
                mail.attachments.append(
                    Attachment(filename or "attached-message.eml", "message/rfc822", data)
                )
            continue
        is_text = content_type in ("text/plain", "text/html")
        if is_text and disposition != "attachment" and filename is None:
            data = _payload(part, lenient, defects)
            text = _decode_text(data, _charset_of(part), lenient, defects)
            texts.append(html_to_text(text) if content_type == "text/html" else text)
            continue
        data = _payload(part, lenient, defects)
        if data:
            mail.attachments.append(Attachment(filename, content_type, data))
    mail.text = clean("\n\n".join(t.strip() for t in texts if t.strip()))
    return mail


def read_mail(raw: bytes, *, lenient: bool = False) -> Mail:
    """Read a mail, or raise `Unreadable`. Never raises anything else for bad input."""
    check_headers(raw, lenient=lenient)
    try:
        parsed: Message = BytesParser(policy=policy.default).parsebytes(raw)
        return _read(parsed, lenient)
    except Unreadable:
        raise
    except Exception as exc:  # policy.default gave up on something: the lenient parser
        first_error = type(exc).__name__
    try:
        parsed = BytesParser(policy=policy.compat32).parsebytes(raw)
        mail = _read(parsed, lenient)
    except Unreadable:
        raise
    except Exception as exc:
        raise Unreadable(
            QuarantineReason.malformed, f"cannot be parsed ({first_error}, {type(exc).__name__})"
        ) from None
    mail.defects.append(f"parsed_leniently:{first_error}")
    return mail
