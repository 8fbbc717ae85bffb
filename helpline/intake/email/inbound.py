"""From a received mail to a case: a new case, or the next message of an existing one.

`receive()` is what the SMTP listener calls. A mail that reads well becomes victim messages
(its text, cut into message-sized pieces) and evidence (its attachments) in a case: the one
its reply token names, else a new one. A mail that does not read well, an automatic mail
(bounce, auto-reply, our own) or one over the attachment limits is quarantined instead; if
processing fails for any other reason the mail is quarantined too. Only when even the
quarantine cannot be written does `receive()` raise, and the SMTP client is told to try again
later: a mail is never dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus, Channel, Sender
from helpline.cases.receipts import LANGUAGES, new_reference
from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.crypto import case_scope
from helpline.core.errors import Conflict, HelplineError
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence.service import Captor, capture_file
from helpline.intake.email import quarantine, tokens
from helpline.intake.email.models import (
    EmailReceived,
    EmailThread,
    EmailToken,
    QuarantineReason,
)
from helpline.intake.email.outbound import (
    THREAD_TABLE,
    note_bounce,
    queue_acknowledgement,
    read_references,
)
from helpline.intake.email.parse import Attachment, Mail, Unreadable, read_mail
from helpline.intake.email.text import guess_language, split_text, trim_quoted_reply
from helpline.stats import counters

log = logging.getLogger("helpline.email")

ACTOR = "email"
CAPTOR = Captor(ACTOR, "email")
MIB = 1024 * 1024
MAX_TEXT_MESSAGES = 10  # a longer mail is quarantined (a supervisor can release it whole)
MAX_RELEASED_MESSAGES = 250  # even a released mail: 1,000,000 characters at most
MAX_REFERENCES = 20
CHUNK = 64 * 1024
DEFAULT_LANGUAGE = "nl"
ACKNOWLEDGEMENTS_PER_ADDRESS = "3/day"
ACKNOWLEDGEMENTS_PER_HOUR = "500/hour"


@dataclass(frozen=True)
class Envelope:
    """What the SMTP transaction said: the envelope sender ('' for a bounce) and recipients.
    Nothing about the connection (client address, HELO name) is kept."""

    mail_from: str
    rcpt_tos: list[str]

    def to_json(self) -> str:
        return json.dumps({"mail_from": self.mail_from, "rcpt_tos": self.rcpt_tos})

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        data = json.loads(text)
        return cls(str(data.get("mail_from", "")), [str(r) for r in data.get("rcpt_tos", [])])


@dataclass
class Outcome:
    """What became of a mail; `notifications` are bus messages to publish once committed."""

    kind: str  # case, duplicate, quarantined
    case_id: str | None = None
    reference: str | None = None
    new_case: bool = False
    quarantine_id: str | None = None
    reason: str | None = None
    notifications: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class OverLimits(Exception):
    """A mail over the attachment or length limits: quarantined, for a person to decide."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# ---------------------------------------------------------------- mail that is not for a case

# A claimer takes a mail that answers something other than a case (a platform replying to a
# removal notice): given the mail and the reply tokens it names, it stores the mail in its
# own place and returns an Outcome, or returns None to leave the mail to the case path.
Claimer = Callable[[Services, Envelope, Mail, bytes, list[str]], Awaitable[Outcome | None]]
CLAIMERS = "email.claimers"
# automatic mail that nobody's claimer may take: our own mail coming back, and bounces
NEVER_CLAIMED = frozenset({"bounce", "report", "own_mail"})


def register_claimer(found: Services, name: str, claimer: Claimer) -> None:
    """Let `claimer` look at every readable mail before it becomes a case message."""
    found.extras.setdefault(CLAIMERS, {})[name] = claimer


async def claim(found: Services, envelope: Envelope, mail: Mail, raw: bytes) -> Outcome | None:
    claimers: dict[str, Claimer] = found.extras.get(CLAIMERS, {})
    if not claimers:
        return None
    candidates = tokens.candidate_tokens(envelope.rcpt_tos, mail.in_reply_to, mail.references)
    if not candidates:
        return None
    for claimer in claimers.values():
        outcome = await claimer(found, envelope, mail, raw, candidates)
        if outcome is not None:
            return outcome
    return None


# ---------------------------------------------------------------- cases and threads


async def open_email_case(session: AsyncSession, clock: Clock, *, language: str) -> Case:
    """A new case for a mail: in the queue, no passphrase (the victim answers by mail; a
    reply can give them reference and passphrase to continue in the chat)."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    now = clock.now()
    for _ in range(5):  # a reference collision is rare (40 bits); try another
        reference = new_reference()
        exists = await session.execute(select(col(Case.id)).where(col(Case.reference) == reference))
        if exists.first() is None:
            break
    else:  # pragma: no cover - astronomically unlikely
        raise Conflict("could not allocate a case reference")
    case = Case(
        id=new_id(),
        reference=reference,
        channel=Channel.email.value,
        language=language,
        created_at=now,
        queued_at=now,
        last_activity_at=now,
    )
    session.add(case)
    await session.flush()
    await counters.count_contact(session, None, case)
    await record(
        session,
        clock,
        actor=ACTOR,
        action="case.start",
        target=f"case:{case.id}",
        details={"channel": case.channel, "language": language},
    )
    return case


async def case_for_tokens(session: AsyncSession, candidates: list[str]) -> Case | None:
    for token in candidates:
        row = await session.get(EmailToken, tokens.token_hash(token))
        if row is not None:
            case = await session.get(Case, row.case_id)
            if case is not None:
                return case
    return None


def message_key(found: Services, mail: Mail, raw: bytes) -> str:
    """A keyed hash of the Message-ID (of the bytes, for a mail without one): recognises a
    re-delivered mail without storing anything that identifies it."""
    key = found.keyring.master.derive("email-message-ids")
    subject = mail.message_id.encode() if mail.message_id else hashlib.sha256(raw).digest()
    return hmac.new(key, subject, hashlib.sha256).hexdigest()


def loop_reason(found: Services, envelope: Envelope, mail: Mail) -> str | None:
    """Why this mail is automatic and must not be answered or become a case, if it is."""
    settings = found.settings
    if envelope.mail_from == "":
        return "bounce"  # the null sender: a delivery status notification
    if mail.content_type == "multipart/report":
        return "report"
    auto = (mail.auto_submitted or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return "auto_submitted"
    if (mail.precedence or "").strip().lower() in ("bulk", "junk", "list", "auto_reply"):
        return "precedence"
    if mail.autoreply_headers:
        return "autoreply"
    ours = tokens.own_addresses(settings)
    senders = [envelope.mail_from, mail.from_address or ""]
    if any(tokens.base_address(s) in ours for s in senders if s):
        return "own_mail"
    if any(tokens.base_address(v) in ours for v in mail.x_loop):
        return "own_mail"
    if mail.message_id and tokens.is_our_message_id(settings, mail.message_id):
        return "own_mail"
    return None


async def _may_acknowledge(found: Services, address: str) -> bool:
    """An auto-responder that does not say so (no Auto-Submitted) and starts a new thread
    each time would get an acknowledgement for every one of its answers: a few a day per
    address at most (the limiter keys on a keyed hash, not the address), and a cap on all."""
    limiter = found.limiter
    return await limiter.hit(
        "email-acknowledge", ACKNOWLEDGEMENTS_PER_ADDRESS, address.lower()
    ) and await limiter.hit("email-acknowledge-all", ACKNOWLEDGEMENTS_PER_HOUR)


# ---------------------------------------------------------------- one mail into one case


async def _bytes(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def check_limits(found: Services, mail: Mail) -> None:
    settings = found.settings
    if len(mail.attachments) > settings.email_max_attachments:
        raise OverLimits(f"{len(mail.attachments)} attachments")
    largest = max((len(a.data) for a in mail.attachments), default=0)
    if largest > settings.email_max_attachment_mb * MIB:
        raise OverLimits(f"an attachment of {largest} bytes")
    pieces = split_text(mail.text, service.MAX_MESSAGE_CHARS)
    if len(pieces) > MAX_TEXT_MESSAGES:
        raise OverLimits(f"text of {len(mail.text)} characters")


async def _capture(
    session: AsyncSession, found: Services, case: Case, attachment: Attachment, number: int
) -> tuple[str, str | None]:
    """Store one attachment as evidence; returns the line for the message and the item id."""
    name = attachment.filename or f"attachment-{number}"
    try:
        item = await capture_file(
            session,
            found,
            case_id=case.id,
            chunks=_bytes(attachment.data),
            filename=lambda: name,
            captor=CAPTOR,
        )
    except HelplineError as exc:  # the minor rule, the case's evidence quota, an empty file
        return f"- {name}: not stored ({exc.message})", None
    return f"- {name}: stored as evidence", item.id


async def ingest(
    session: AsyncSession,
    found: Services,
    envelope: Envelope,
    mail: Mail,
    raw: bytes,
    *,
    enforce_limits: bool = True,
) -> Outcome:
    """Put a readable mail into its case (or a new one), in the caller's transaction."""
    clock, keyring = found.clock, found.keyring
    key = message_key(found, mail, raw)
    seen = await session.get(EmailReceived, key)
    if seen is not None:
        return Outcome("duplicate", case_id=seen.case_id)
    candidates = tokens.candidate_tokens(envelope.rcpt_tos, mail.in_reply_to, mail.references)
    case = await case_for_tokens(session, candidates)
    if enforce_limits and not (case is not None and case.possible_minor):
        check_limits(found, mail)
    outcome = Outcome("case")
    reopened = False
    if case is None:
        language = guess_language(f"{mail.subject}\n{mail.text}", DEFAULT_LANGUAGE)
        case = await open_email_case(session, clock, language=language)
        outcome.new_case = True
    elif case.status == CaseStatus.closed:
        await service.reopen(session, clock, case)
        reopened = True
    cipher = await keyring.cipher(session, case_scope(case.id))
    now = clock.now()
    thread = await session.get(EmailThread, case.id)
    if thread is None:
        thread = EmailThread(case_id=case.id, created_at=now, updated_at=now)
        session.add(thread)
    if thread.address is None and mail.reply_address:
        thread.address = cipher.encrypt(
            mail.reply_address, table=THREAD_TABLE, row_id=case.id, field="address"
        )
    if thread.subject is None and mail.subject:
        thread.subject = cipher.encrypt(
            mail.subject, table=THREAD_TABLE, row_id=case.id, field="subject"
        )
    if mail.message_id and not tokens.is_our_message_id(found.settings, mail.message_id):
        chain = [r for r in read_references(cipher, thread) if r != mail.message_id]
        chain = [*chain, mail.message_id][-MAX_REFERENCES:]
        thread.reference_ids = cipher.encrypt(
            json.dumps(chain), table=THREAD_TABLE, row_id=case.id, field="reference_ids"
        )
    thread.updated_at = now
    await session.flush()

    lines: list[str] = []
    for number, attachment in enumerate(mail.attachments, 1):
        line, item_id = await _capture(session, found, case, attachment, number)
        lines.append(line)
        if item_id is not None:
            outcome.notifications.append(
                (service.channel(case.id), {"type": "evidence", "id": item_id})
            )
    text = trim_quoted_reply(mail.text) if not outcome.new_case else mail.text
    parts = [f"Subject: {mail.subject}" if mail.subject else "", text]
    if lines:
        parts.append("Attachments:\n" + "\n".join(lines))
    body = "\n\n".join(p for p in parts if p.strip()) or "(an e-mail without text)"
    pieces = split_text(body, service.MAX_MESSAGE_CHARS)
    if len(pieces) > MAX_RELEASED_MESSAGES:
        if not case.possible_minor:  # kept whole, where it is (a released mail: refused)
            raise OverLimits(f"text of {len(body)} characters")
        # a case whose material may not be kept anywhere: the text is cut, not quarantined
        cut = len(pieces) - MAX_RELEASED_MESSAGES + 1
        pieces = [
            *pieces[: MAX_RELEASED_MESSAGES - 1],
            f"[{cut} more parts of this e-mail were cut]",
        ]
    seq = 0
    for index, piece in enumerate(pieces):
        client_id = key if index == 0 else f"{key[:56]}-p{index:05d}"
        message, _ = await service.post_message(
            session,
            keyring,
            clock,
            case_id=case.id,
            sender=Sender.victim,
            text=piece,
            client_id=client_id,
            cipher=cipher,
        )
        seq = max(seq, message.seq)
    session.add(EmailReceived(message_key=key, case_id=case.id, received_at=now))
    await session.flush()
    await record(
        session,
        clock,
        actor=ACTOR,
        action="email.received",
        target=f"case:{case.id}",
        details={
            "new_case": outcome.new_case,
            "messages": len(pieces),
            "attachments": len(mail.attachments),
        },
    )
    if (
        outcome.new_case
        and found.settings.email_acknowledge
        and mail.reply_address
        and await _may_acknowledge(found, mail.reply_address)
    ):
        await queue_acknowledgement(session, found, case)
    outcome.case_id, outcome.reference = case.id, case.reference
    outcome.notifications += [
        (service.channel(case.id), {"type": "message", "seq": seq}),
        (service.ACTIVITY_CHANNEL, {"type": "queue_changed"}),
    ]
    if outcome.new_case or reopened:
        outcome.notifications.append((service.QUEUE_CHANNEL, {"type": "queue_changed"}))
    return outcome


# ---------------------------------------------------------------- the SMTP path


async def publish(found: Services, outcome: Outcome) -> None:
    for channel, message in outcome.notifications:
        await found.bus.publish(channel, message)


async def _hold(
    found: Services, envelope: Envelope, raw: bytes, reason: QuarantineReason, detail: str
) -> Outcome:
    row = await quarantine.hold_now(found, envelope.to_json(), raw, reason, detail)
    return Outcome("quarantined", quarantine_id=row.id, reason=reason.value)


async def receive(found: Services, envelope: Envelope, raw: bytes) -> Outcome:
    """Turn a received mail into case messages, or quarantine it. Raises only if the mail
    could be neither stored nor quarantined (the caller answers 451: try again later)."""
    try:
        # a large mail takes a while to parse: not on the event loop, which serves the chat
        mail = await asyncio.to_thread(read_mail, raw)
    except Unreadable as exc:
        return await _hold(found, envelope, raw, exc.reason, exc.detail)
    loop = loop_reason(found, envelope, mail)
    if loop not in NEVER_CLAIMED:
        try:
            claimed = await claim(found, envelope, mail, raw)
        except Exception as exc:
            log.error("storing an e-mail failed", extra={"error": type(exc).__name__})
            return await _hold(found, envelope, raw, QuarantineReason.error, type(exc).__name__)
        if claimed is not None:
            await publish(found, claimed)
            return claimed
    if loop is not None:
        outcome = await _hold(found, envelope, raw, QuarantineReason.loop, loop)
        if loop in ("bounce", "report"):
            await note_bounce(found, raw)
        return outcome
    try:
        async with found.db.transaction() as session:
            outcome = await ingest(session, found, envelope, mail, raw)
    except OverLimits as exc:
        return await _hold(found, envelope, raw, QuarantineReason.attachment_limit, exc.detail)
    except IntegrityError:
        # the same mail, delivered twice at the same moment, was stored by the other delivery
        async with found.db.transaction() as session:
            seen = await session.get(EmailReceived, message_key(found, mail, raw))
        if seen is not None:
            return Outcome("duplicate", case_id=seen.case_id)
        log.error("storing an e-mail failed", extra={"error": "IntegrityError"})
        return await _hold(found, envelope, raw, QuarantineReason.error, "IntegrityError")
    except Exception as exc:
        # never the exception's text in the log: it may quote the mail
        log.error("storing an e-mail failed", extra={"error": type(exc).__name__})
        return await _hold(found, envelope, raw, QuarantineReason.error, type(exc).__name__)
    await publish(found, outcome)
    return outcome


# ---------------------------------------------------------------- released by a supervisor


class CannotRelease(Conflict):
    code = "unreadable"


async def release(
    session: AsyncSession, found: Services, quarantine_id: str, *, actor: str
) -> Outcome:
    """Put a quarantined mail into a case after all (its token's case, else a new one),
    reading it as leniently as possible and without the attachment limits; the quarantine
    entry is then deleted. In the caller's transaction; publish `notifications` after it."""
    row = await quarantine.get(session, quarantine_id)
    raw = await quarantine.raw_of(session, found, row)
    envelope = Envelope.from_json(await quarantine.envelope_of(session, found, row))
    try:
        mail = await asyncio.to_thread(read_mail, raw, lenient=True)
    except Unreadable as exc:
        raise CannotRelease(
            f"this e-mail cannot be read ({exc.detail}); download it instead"
        ) from None
    try:
        outcome = await ingest(session, found, envelope, mail, raw, enforce_limits=False)
    except OverLimits as exc:
        raise CannotRelease(
            f"this e-mail is too long to show as messages ({exc.detail}); download it instead"
        ) from None
    await quarantine.discard(session, row)
    await record(
        session,
        found.clock,
        actor=actor,
        action="email.quarantine_release",
        target=f"email_quarantine:{quarantine_id}",
        details={"case": outcome.case_id, "reason": row.reason},
    )
    return outcome
