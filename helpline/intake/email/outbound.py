"""Mail to victims: staff replies (and, if configured, an acknowledgement of a new case).

A reply is a staff message in the case plus an outbox entry (kind `email.reply`), written in
the same transaction; the outbox worker hands the entry to `deliver`, which sends it through
the relay with aiosmtplib. Each mail gets a fresh reply token (see `tokens`). A refusal for
good (5xx to the recipient or the content) dead-letters the entry at once; other failures
are retried with the outbox's back-off. Either kind of final failure, and a bounce that comes
back later, marks the mail `failed`, adds an `email_failed` event to the case and tells the
console over the bus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, NoReturn

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases import service
from helpline.cases.models import Case, CaseEvent, CaseStatus, Message, Sender
from helpline.cases.receipts import hash_passphrase, new_passphrase
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher, KeyShredded, case_scope
from helpline.core.errors import Conflict
from helpline.core.ids import new_id
from helpline.core.outbox import Delivery, DeliveryError, PermanentFailure, enqueue
from helpline.core.services import Services
from helpline.intake.email import tokens
from helpline.intake.email.models import (
    EmailOutgoing,
    EmailThread,
    EmailToken,
    OutgoingStatus,
)
from helpline.intake.email.quarantine import purge_job

log = logging.getLogger("helpline.email")

KIND = "email.reply"
THREAD_TABLE = "email_threads"
EVENT_TABLE = "case_events"
MAX_REFERENCES_SENT = 10

SUBJECTS = {"nl": "Je bericht aan de hulplijn", "en": "Your message to the helpline"}
ACKNOWLEDGEMENTS = {
    "nl": (
        "We hebben je e-mail ontvangen. Een medewerker leest hem en antwoordt je zo snel "
        "mogelijk, per e-mail. Je gesprekscode is {reference}.\n\n"
        "Dit is een automatisch bericht. Je kunt gewoon op deze e-mail antwoorden."
    ),
    "en": (
        "We have received your e-mail. A member of staff will read it and answer you as soon "
        "as possible, by e-mail. Your conversation code is {reference}.\n\n"
        "This is an automatic message. You can simply reply to this e-mail."
    ),
}
CHAT_ACCESS = {
    "nl": (
        "Liever chatten? Dat kan ook. Ga naar {url}, kies 'Verder met mijn gesprek' en vul "
        "in:\nGesprekscode: {reference}\nWachtwoord: {passphrase}\n"
        "Iedereen met deze twee kan het gesprek lezen: bewaar ze goed, of verwijder deze "
        "e-mail als je ze hebt onthouden."
    ),
    "en": (
        "Would you rather chat? You can. Go to {url}, choose 'Continue my conversation' and "
        "fill in:\nConversation code: {reference}\nPassphrase: {passphrase}\n"
        "Anyone with these two can read the conversation: keep them safe, or delete this "
        "e-mail once you remember them."
    ),
}
PASSPHRASE_SHOWN_TO_STAFF = "•••• (only in the e-mail)"


class NotEmail(Conflict):
    code = "not_email"


class NoAddress(Conflict):
    code = "no_address"


class Ended(Conflict):
    code = "ended"


def read_references(cipher: FieldCipher, thread: EmailThread) -> list[str]:
    """The victim's Message-IDs in this thread, newest last."""
    if thread.reference_ids is None:
        return []
    text = cipher.decrypt_text(
        thread.reference_ids, table=THREAD_TABLE, row_id=thread.case_id, field="reference_ids"
    )
    return [str(r) for r in json.loads(text)]


def chat_access_paragraph(language: str, *, url: str, reference: str, passphrase: str) -> str:
    template = CHAT_ACCESS.get(language, CHAT_ACCESS["en"])
    return template.format(url=url, reference=reference, passphrase=passphrase)


# ---------------------------------------------------------------- queueing


async def _queue(
    session: AsyncSession,
    found: Services,
    case: Case,
    *,
    message_id: str,
    text: str,
    automatic: bool,
) -> EmailOutgoing:
    now = found.clock.now()
    token = tokens.new_token()
    outgoing = EmailOutgoing(
        id=new_id(),
        case_id=case.id,
        message_id=message_id,
        automatic=automatic,
        created_at=now,
        updated_at=now,
    )
    session.add(outgoing)
    session.add(
        EmailToken(
            token_hash=tokens.token_hash(token),
            case_id=case.id,
            outgoing_id=outgoing.id,
            created_at=now,
        )
    )
    await session.flush()
    await enqueue(
        session,
        found.keyring,
        found.clock,
        kind=KIND,
        # the token and the text travel encrypted under the case key; only the token's hash
        # is stored anywhere else
        payload={
            "case_id": case.id,
            "outgoing_id": outgoing.id,
            "token": token,
            "text": text,
            "automatic": automatic,
        },
        key_scope=case_scope(case.id),
        idempotency_key=f"{KIND}:{outgoing.id}",
    )
    return outgoing


async def _thread(session: AsyncSession, case: Case) -> EmailThread:
    thread = await session.get(EmailThread, case.id)
    if thread is None:
        raise NotEmail("this case did not come in by e-mail")
    if thread.address is None:
        raise NoAddress("the e-mail of this case named no address to answer")
    return thread


@dataclass(frozen=True)
class Queued:
    outgoing: EmailOutgoing
    message: Message
    created: bool


async def queue_reply(
    session: AsyncSession,
    found: Services,
    case: Case,
    *,
    staff_id: str,
    text: str,
    client_id: str,
    chat_access: bool = False,
) -> Queued:
    """A staff reply: the message in the case and the mail in the outbox. The same
    `client_id` again returns what the first call queued. With `chat_access` the mail ends
    with the case reference and a new passphrase (replacing any earlier one) to continue in
    the chat; the stored message shows the passphrase masked."""
    await _thread(session, case)
    existing = (
        await session.execute(
            select(Message).where(
                col(Message.case_id) == case.id, col(Message.client_id) == client_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        outgoing = (
            await session.execute(
                select(EmailOutgoing).where(col(EmailOutgoing.message_id) == existing.id)
            )
        ).scalar_one_or_none()
        if outgoing is None:
            raise Conflict("this client_id was used for a message that is not an e-mail")
        return Queued(outgoing, existing, False)
    if case.status == CaseStatus.closed:
        raise Ended("this case is closed")
    text = text.strip()
    mailed = stored = text
    if chat_access:
        passphrase = new_passphrase(case.language)
        case.passphrase_hash = await asyncio.to_thread(hash_passphrase, passphrase)
        url = f"{found.settings.base_url}/"
        mailed += "\n\n" + chat_access_paragraph(
            case.language, url=url, reference=case.reference, passphrase=passphrase
        )
        stored += "\n\n" + chat_access_paragraph(
            case.language, url=url, reference=case.reference, passphrase=PASSPHRASE_SHOWN_TO_STAFF
        )
    message, _ = await service.post_message(
        session,
        found.keyring,
        found.clock,
        case_id=case.id,
        sender=Sender.staff,
        text=stored,
        client_id=client_id,
        staff_id=staff_id,
    )
    outgoing = await _queue(
        session, found, case, message_id=message.id, text=mailed, automatic=False
    )
    await record(
        session,
        found.clock,
        actor=f"staff:{staff_id}",
        action="email.reply",
        target=f"case:{case.id}",
        details={"outgoing": outgoing.id, "chat_access": chat_access},
    )
    return Queued(outgoing, message, True)


async def queue_acknowledgement(session: AsyncSession, found: Services, case: Case) -> None:
    """The automatic answer to a new e-mail case (`HELPLINE_EMAIL_ACKNOWLEDGE`), shown in
    the case as a system message."""
    text = ACKNOWLEDGEMENTS.get(case.language, ACKNOWLEDGEMENTS["en"]).format(
        reference=case.reference
    )
    message, _ = await service.post_message(
        session,
        found.keyring,
        found.clock,
        case_id=case.id,
        sender=Sender.system,
        text=text,
        client_id=f"email-acknowledgement-{case.id}",
    )
    await _queue(session, found, case, message_id=message.id, text=text, automatic=True)


# ---------------------------------------------------------------- delivery


def build_message(
    found: Services,
    *,
    address: str,
    subject: str | None,
    references: list[str],
    token: str,
    text: str,
    automatic: bool,
    language: str,
) -> EmailMessage:
    settings = found.settings
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = formataddr((settings.mail_from_name, settings.mail_from))
    mail["To"] = address
    mail["Reply-To"] = tokens.reply_address(settings, token)
    if subject:
        mail["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    else:
        mail["Subject"] = SUBJECTS.get(language, SUBJECTS["en"])
    mail["Date"] = format_datetime(found.clock.now())
    mail["Message-ID"] = tokens.message_id_for(settings, token)
    if references:
        mail["In-Reply-To"] = references[-1]
        mail["References"] = " ".join(references[-MAX_REFERENCES_SENT:])
    if automatic:
        mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: not to be answered automatically
    mail["X-Loop"] = settings.mail_from
    mail.set_content(text)
    return mail


def _tls_context(found: Services) -> ssl.SSLContext | None:
    ca_file = found.settings.smtp_out_ca_file
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else None


async def send(found: Services, mail: EmailMessage) -> None:
    settings = found.settings
    if not settings.smtp_out_host:
        raise DeliveryError("no outbound SMTP relay is configured (HELPLINE_SMTP_OUT_HOST)")
    password = settings.smtp_out_password
    await aiosmtplib.send(
        mail,
        sender=settings.mail_from,
        recipients=[str(mail["To"])],
        hostname=settings.smtp_out_host,
        port=settings.smtp_out_port,
        username=settings.smtp_out_username or None,
        password=password.get_secret_value() if password else None,
        use_tls=settings.smtp_out_security == "tls",
        start_tls=True if settings.smtp_out_security == "starttls" else False,
        tls_context=_tls_context(found),
        timeout=settings.smtp_out_timeout_seconds,
    )


def smtp_refusal(exc: Exception) -> tuple[int | None, str]:
    """The SMTP code and the server's text of a failure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return first.code, first.message
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code, exc.message
    return None, ""


def is_permanent_refusal(exc: Exception, code: int | None) -> bool:
    """A 5xx for this recipient or this content: sending it again cannot help. A 5xx to our
    login or our sender address is our configuration, and is retried until someone fixes it."""
    message_specific = (
        aiosmtplib.SMTPRecipientsRefused,
        aiosmtplib.SMTPRecipientRefused,
        aiosmtplib.SMTPDataError,
    )
    return isinstance(exc, message_specific) and code is not None and 500 <= code < 600


async def record_failure(
    session: AsyncSession,
    found: Services,
    outgoing: EmailOutgoing,
    *,
    reason: str,
    code: int | None,
    server_text: str,
) -> None:
    """Mark a mail failed for good and put that on the case's timeline; the server's text
    (it may quote the address) is stored encrypted under the case key."""
    now = found.clock.now()
    outgoing.status, outgoing.updated_at = OutgoingStatus.failed.value, now
    outgoing.last_error = f"{reason} {code}" if code else reason
    event_id = new_id()
    text = None
    if server_text:
        cipher = await found.keyring.cipher(session, case_scope(outgoing.case_id))
        text = cipher.encrypt(server_text[:1000], table=EVENT_TABLE, row_id=event_id, field="text")
    session.add(
        CaseEvent(
            id=event_id,
            case_id=outgoing.case_id,
            at=now,
            actor="system",
            kind="email_failed",
            details=json.dumps(
                {"outgoing_id": outgoing.id, "reason": reason, "code": code},
                sort_keys=True,
                separators=(",", ":"),
            ),
            text=text,
        )
    )
    await session.flush()
    await record(
        session,
        found.clock,
        actor="system",
        action="email.failed",
        target=f"case:{outgoing.case_id}",
        details={"outgoing": outgoing.id, "reason": reason, "code": code},
    )


async def _announce(found: Services, outgoing_id: str, case_id: str, status: str) -> None:
    """Tell whoever has the case open (`case:<id>`) and every console (`case_changed`)."""
    await found.bus.publish(
        service.channel(case_id),
        {"type": "email_status", "outgoing_id": outgoing_id, "status": status},
    )
    await found.bus.publish(service.ACTIVITY_CHANNEL, {"type": "case_changed", "case_id": case_id})


async def deliver(found: Services, delivery: Delivery) -> None:
    """The outbox handler of `email.reply`."""
    payload = delivery.payload
    outgoing_id, case_id = str(payload["outgoing_id"]), str(payload["case_id"])
    async with found.db.transaction() as session:
        outgoing = await session.get(EmailOutgoing, outgoing_id)
        thread = await session.get(EmailThread, case_id)
        case = await session.get(Case, case_id)
        if outgoing is None or thread is None or case is None or thread.address is None:
            return  # the case was deleted meanwhile: nothing to send, nobody to tell
        try:
            cipher = await found.keyring.cipher(session, case_scope(case_id), create=False)
        except KeyShredded:
            return
        address = cipher.decrypt_text(
            thread.address, table=THREAD_TABLE, row_id=case_id, field="address"
        )
        subject = (
            cipher.decrypt_text(thread.subject, table=THREAD_TABLE, row_id=case_id, field="subject")
            if thread.subject is not None
            else None
        )
        references = read_references(cipher, thread)
        language = case.language
    mail = build_message(
        found,
        address=address,
        subject=subject,
        references=references,
        token=str(payload["token"]),
        text=str(payload["text"]),
        automatic=bool(payload.get("automatic")),
        language=language,
    )
    try:
        await send(found, mail)
    except Exception as exc:
        await _failed(found, delivery, outgoing_id, case_id, exc)
    async with found.db.transaction() as session:
        row = await session.get(EmailOutgoing, outgoing_id)
        if row is not None:
            row.status, row.attempts = OutgoingStatus.sent.value, delivery.attempt
            row.sent_at = row.updated_at = found.clock.now()
            row.last_error = None
    await _announce(found, outgoing_id, case_id, OutgoingStatus.sent)


async def _failed(
    found: Services, delivery: Delivery, outgoing_id: str, case_id: str, exc: Exception
) -> NoReturn:
    code, server_text = smtp_refusal(exc)
    permanent = is_permanent_refusal(exc, code)
    last_try = delivery.attempt >= found.outbox.max_attempts
    if code:
        what = f"SMTP {code}"
    elif isinstance(exc, DeliveryError):  # our own, without personal data
        what = str(exc)
    else:
        what = type(exc).__name__
    async with found.db.transaction() as session:
        row = await session.get(EmailOutgoing, outgoing_id)
        if row is not None:
            row.attempts = delivery.attempt
            if permanent or last_try:
                await record_failure(
                    session,
                    found,
                    row,
                    reason="refused" if permanent else "retries_exhausted",
                    code=code,
                    server_text=server_text,
                )
            else:
                row.status, row.updated_at = OutgoingStatus.retrying.value, found.clock.now()
                row.last_error = what
    if row is not None:
        final = permanent or last_try
        status = OutgoingStatus.failed if final else OutgoingStatus.retrying
        await _announce(found, outgoing_id, case_id, status)
    if permanent:
        raise PermanentFailure(what) from None
    raise DeliveryError(what) from None


async def note_bounce(found: Services, raw: bytes) -> None:
    """A bounce that quotes one of our Message-IDs: that mail did not arrive after all."""
    announced: list[tuple[str, str]] = []
    async with found.db.transaction() as session:
        for token in tokens.tokens_quoted_in(raw):
            row = await session.get(EmailToken, tokens.token_hash(token))
            if row is None or row.outgoing_id is None:
                continue
            outgoing = await session.get(EmailOutgoing, row.outgoing_id)
            if outgoing is None or outgoing.status == OutgoingStatus.failed:
                continue
            await record_failure(
                session, found, outgoing, reason="bounced", code=None, server_text=""
            )
            announced.append((outgoing.id, outgoing.case_id))
    for outgoing_id, case_id in announced:
        await _announce(found, outgoing_id, case_id, OutgoingStatus.failed)


# ---------------------------------------------------------------- for the console


def outgoing_json(row: EmailOutgoing, seq: int | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "seq": seq,
        "automatic": row.automatic,
        "status": row.status,
        "attempts": row.attempts,
        "error": row.last_error,
        "created_at": as_utc(row.created_at).isoformat(),
        "sent_at": as_utc(row.sent_at).isoformat() if row.sent_at else None,
    }


def register_email(services: Services) -> None:
    """Register the e-mail outbox handler and the quarantine purge (once per Services)."""

    async def handler(delivery: Delivery) -> None:
        await deliver(services, delivery)

    if KIND not in services.outbox.handlers:
        services.outbox.register(KIND, handler)
    if "email-quarantine-purge" not in services.scheduler.jobs:
        services.scheduler.register(
            "email-quarantine-purge",
            timedelta(hours=1),
            purge_job(services, services.settings.retention_quarantine_days),
        )
