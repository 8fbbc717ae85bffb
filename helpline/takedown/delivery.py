"""Delivering notices through the outbox, exactly once as far as the platform can tell.

`queue_notice` freezes and signs the notice (builder.sign_notice), moves it and its URLs to
`queued` and, for e-mail and API platforms, writes an outbox entry (kind `takedown.notice`)
in the same transaction, keyed by the notice's idempotency key. The worker hands it to
`deliver_notice`:

- e-mail: to the platform's DSA point of contact with aiosmtplib. A text part (summary, the
  portal link, how to answer), the signed HTML as the HTML part and the signed JSON and the
  signature envelope as attachments, all base64 so the bytes arrive exactly as signed. The
  Message-ID is fixed per notice, so a mail sent again after a crash is recognisably the same.
- API: an HTTPS POST of the signed JSON bytes with `Idempotency-Key: notice:<id>` and a
  `Helpline-Signature` header; a platform that honours the key acts on it once however often
  the worker retries.

Only after a successful delivery does the notice become `sent` (and its clock start:
due = sent + the platform's SLA). A notice withdrawn before the worker got to it is not sent.
Web-form platforms get no outbox entry: staff paste the prepared text and mark it submitted.

Tokens are never stored in the clear: the e-mail reply token and each portal link token are
derived from the notice's key (HMAC), and only their SHA-256 is stored, so they can be put in
any later mail again, and die with the notice's key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher, KeyShredded, canonical_json
from helpline.core.ids import new_id
from helpline.core.outbox import Delivery, DeliveryError, PermanentFailure, enqueue
from helpline.core.services import Services
from helpline.evidence import custody
from helpline.evidence.models import EvidenceItem
from helpline.intake.email import tokens
from helpline.intake.email.outbound import is_permanent_refusal, smtp_refusal
from helpline.intake.email.outbound import send as send_mail
from helpline.takedown import builder, state
from helpline.takedown.models import (
    Notice,
    NoticeItem,
    NoticeToken,
    Platform,
    notice_scope,
)
from helpline.takedown.states import Delivery as DeliveryKind
from helpline.takedown.states import NoticeStatus
from helpline.triage.service import CONSOLE_CHANNEL

log = logging.getLogger("helpline.takedown")

KIND_NOTICE = "takedown.notice"
KIND_MAIL = "takedown.mail"  # reminders and escalation mails to a platform
PORTAL_PATH = "/portal/n/"
USER_AGENT = "Helpline-notices/1"
# answers that a retry can turn around; any other 4xx is the platform refusing the notice
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
S = NoticeStatus


# ---------------------------------------------------------------- tokens


def _derived(cipher: FieldCipher, purpose: str, subject: str) -> str:
    return hmac.new(cipher.derive(purpose), subject.encode(), hashlib.sha256).hexdigest()[:32]


def reply_token(cipher: FieldCipher) -> str:
    """The notice's e-mail reply token (the same shape as a case's, see intake/email/tokens)."""
    return _derived(cipher, "notice-reply-token", "reply")


def portal_token(cipher: FieldCipher, token_id: str) -> str:
    """The portal token of one `notice_tokens` row."""
    return _derived(cipher, "notice-portal-token", token_id)


def portal_link(found: Services, token: str) -> str:
    return found.settings.base_url.rstrip("/") + PORTAL_PATH + token


async def issue_portal_token(
    session: AsyncSession, found: Services, notice_id: str, *, days: int | None = None
) -> str:
    """A new portal link token for one notice (a `notice_tokens` row holding its hash),
    expiring after `days` (default: HELPLINE_NOTICE_PORTAL_DAYS). Returns the token."""
    cipher = await found.keyring.cipher(session, notice_scope(notice_id))
    now = found.clock.now()
    row_id = new_id()
    token = portal_token(cipher, row_id)
    session.add(
        NoticeToken(
            id=row_id,
            notice_id=notice_id,
            token_hash=tokens.token_hash(token),
            created_at=now,
            expires_at=now + timedelta(days=days or found.settings.notice_portal_days),
        )
    )
    await session.flush()
    return token


async def current_portal_token(
    session: AsyncSession, found: Services, notice: Notice, cipher: FieldCipher
) -> str | None:
    """The newest portal token of the notice that still works, if any."""
    now = found.clock.now()
    rows = await session.execute(
        select(NoticeToken)
        .where(col(NoticeToken.notice_id) == notice.id, col(NoticeToken.revoked_at).is_(None))
        .order_by(col(NoticeToken.created_at).desc())
    )
    for row in rows.scalars():
        if as_utc(row.expires_at) > now:
            return portal_token(cipher, row.id)
    return None


# ---------------------------------------------------------------- queueing


async def _custody_noticed(
    session: AsyncSession, found: Services, notice: Notice, actor: str
) -> None:
    """Each evidence item the notice uses gets a custody entry `noticed`."""
    item_ids = {
        u.evidence_item_id for u in await state.urls_of(session, notice.id) if u.evidence_item_id
    }
    rows = await session.execute(
        select(col(NoticeItem.evidence_item_id)).where(col(NoticeItem.notice_id) == notice.id)
    )
    item_ids |= {item_id for item_id in rows.scalars() if item_id}
    for item_id in sorted(item_ids):
        if await session.get(EvidenceItem, item_id) is not None:
            await custody.append(
                session,
                found.signer,
                found.clock,
                item_id=item_id,
                actor=actor,
                event="noticed",
                details={"notice": notice.reference},
            )


async def queue_notice(
    session: AsyncSession, found: Services, notice: Notice, platform: Platform, *, actor: str
) -> None:
    """Freeze, sign and queue the notice (see the module docstring)."""
    notice.delivery = platform.delivery
    signed = await builder.sign_notice(session, found, notice)
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    notice.reply_token_hash = tokens.token_hash(reply_token(cipher))
    urls = await state.urls_of(session, notice.id)
    await state.move_all(
        session,
        found.clock,
        notice,
        urls,
        S.queued,
        actor=actor,
        details={"delivery": notice.delivery, "document_sha256": signed.sha256},
    )
    await issue_portal_token(session, found, notice.id)
    await _custody_noticed(session, found, notice, actor)
    if notice.delivery != DeliveryKind.web_form:
        entry = await enqueue(
            session,
            found.keyring,
            found.clock,
            kind=KIND_NOTICE,
            payload={"notice_id": notice.id},
            key_scope=notice_scope(notice.id),
            idempotency_key=notice.idempotency_key,
        )
        notice.outbox_id = entry.id
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.queue",
        target=f"notice:{notice.id}",
        details={"delivery": notice.delivery, "document_sha256": signed.sha256},
    )


async def mark_sent(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    platform: Platform,
    *,
    actor: str,
    details: dict[str, str | int | None],
) -> None:
    """queued → sent (notice and URLs); the clock starts."""
    urls = await state.urls_of(session, notice.id)
    await state.move_all(session, found.clock, notice, urls, S.sent, actor=actor, details=details)
    assert notice.sent_at is not None
    notice.due_at = as_utc(notice.sent_at) + timedelta(hours=platform.sla_hours)
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.sent",
        target=f"notice:{notice.id}",
        details={"delivery": notice.delivery, **details},
    )


async def announce(found: Services, notice: Notice) -> None:
    """Tell consoles: `notice_changed` (the notices view) and `case_changed` (the case shows
    its notices)."""
    await found.bus.publish(
        CONSOLE_CHANNEL,
        {"type": "notice_changed", "notice_id": notice.id, "case_id": notice.case_id},
    )
    if notice.case_id:
        await found.bus.publish(
            CONSOLE_CHANNEL, {"type": "case_changed", "case_id": notice.case_id}
        )


# ---------------------------------------------------------------- the e-mail


def notice_mail(
    found: Services,
    *,
    to: str,
    signed: builder.Signed,
    document: dict[str, Any],
    reply: str,
    portal: str | None,
    due_at: datetime | None,
    idempotency_key: str,
) -> EmailMessage:
    settings = found.settings
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = formataddr((settings.notice_notifier_name, builder.notifier_email(found)))
    mail["To"] = to
    mail["Reply-To"] = tokens.reply_address(settings, reply)
    mail["Subject"] = builder.subject_of(document)
    mail["Date"] = format_datetime(found.clock.now())
    mail["Message-ID"] = tokens.message_id_for(settings, reply)
    mail["X-Helpline-Notice"] = document["reference"]
    mail["X-Helpline-Idempotency-Key"] = idempotency_key
    mail.set_content(builder.render_text(document, portal_link=portal, due_at=due_at))
    # base64: the HTML and JSON bytes arrive exactly as signed (no line-ending rewrites)
    mail.add_alternative(
        signed.html_bytes,
        maintype="text",
        subtype="html",
        cte="base64",
        params={"charset": "utf-8"},
    )
    reference = document["reference"]
    mail.add_attachment(
        signed.json_bytes, maintype="application", subtype="json", filename=f"{reference}.json"
    )
    mail.add_attachment(
        canonical_json(signed.envelope(builder.keys_url(found))),
        maintype="application",
        subtype="json",
        filename=f"{reference}.sig.json",
    )
    return mail


def platform_mail(
    found: Services,
    *,
    to: str,
    subject: str,
    text: str,
    reply: str,
    message_key: str,
) -> EmailMessage:
    """A reminder or an escalation: threaded onto the notice mail, answerable like it."""
    settings = found.settings
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = formataddr((settings.notice_notifier_name, builder.notifier_email(found)))
    mail["To"] = to
    mail["Reply-To"] = tokens.reply_address(settings, reply)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(found.clock.now())
    digest = hashlib.sha256(message_key.encode()).hexdigest()[:32]
    mail["Message-ID"] = f"<hl-m{digest}@{tokens.domain_of(settings.mail_from)}>"
    mail["In-Reply-To"] = mail["References"] = tokens.message_id_for(settings, reply)
    mail.set_content(text)
    return mail


def _smtp_failure(exc: Exception) -> DeliveryError:
    """5xx for the recipient or the content: permanent; anything else is retried (the same
    rule as the e-mail channel's replies)."""
    if isinstance(exc, DeliveryError):
        return exc
    code, _ = smtp_refusal(exc)
    if is_permanent_refusal(exc, code):
        return PermanentFailure(f"SMTP {code}")
    return DeliveryError(f"SMTP {code}" if code else type(exc).__name__)


async def _send(found: Services, mail: EmailMessage) -> None:
    try:
        await send_mail(found, mail)
    except Exception as exc:
        raise _smtp_failure(exc) from None


# ---------------------------------------------------------------- the API


def signature_header(signed: builder.Signed) -> str:
    return f'kid="{signed.kid}", alg="Ed25519", sig="{signed.json_signature}"'


async def post_notice(
    found: Services, endpoint: str, signed: builder.Signed, *, idempotency_key: str, reference: str
) -> int:
    """POST the signed JSON to the platform; returns the status of a 2xx answer."""
    settings = found.settings
    schemes = ("https://", "http://") if settings.notice_api_allow_http else ("https://",)
    if not endpoint.lower().startswith(schemes):
        raise PermanentFailure("the platform's endpoint is not https://")
    try:
        async with httpx.AsyncClient(
            timeout=settings.notice_api_timeout_seconds, trust_env=False, follow_redirects=False
        ) as client:
            response = await client.post(
                endpoint,
                content=signed.json_bytes,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": idempotency_key,
                    "Helpline-Signature": signature_header(signed),
                    "Helpline-Keys": builder.keys_url(found),
                    "Helpline-Notice": reference,
                    "User-Agent": USER_AGENT,
                },
            )
    except httpx.TimeoutException:
        raise DeliveryError("the platform did not answer in time") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"no connection to the platform ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        raise PermanentFailure(f"the platform refused the notice: HTTP {status}")
    raise DeliveryError(f"the platform answered HTTP {status}")


# ---------------------------------------------------------------- the outbox handlers


async def deliver_notice(found: Services, delivery: Delivery) -> None:
    """The handler of `takedown.notice`."""
    notice_id = str(delivery.payload["notice_id"])
    async with found.db.transaction() as session:
        notice = await session.get(Notice, notice_id)
        if notice is None or notice.status != S.queued:
            return  # withdrawn meanwhile, or sent by an earlier attempt
        platform = await session.get(Platform, notice.platform_id)
        signed = await builder.stored_signed(session, found, notice)
        if platform is None or signed is None:
            raise PermanentFailure("the notice or its platform is incomplete")
        cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
        reply = reply_token(cipher)
        portal = await current_portal_token(session, found, notice, cipher)
        kind, key, reference = notice.delivery, notice.idempotency_key, notice.reference
        contact, endpoint, sla = platform.contact_email, platform.endpoint_url, platform.sla_hours
    details: dict[str, str | int | None] = {"attempt": delivery.attempt}
    try:
        if kind == DeliveryKind.email:
            if not contact:
                raise PermanentFailure("the platform has no contact e-mail")
            document = builder.document_of(signed)
            mail = notice_mail(
                found,
                to=contact,
                signed=signed,
                document=document,
                reply=reply,
                portal=portal_link(found, portal) if portal else None,
                due_at=found.clock.now() + timedelta(hours=sla),
                idempotency_key=key,
            )
            await _send(found, mail)
        elif kind == DeliveryKind.api:
            if not endpoint:
                raise PermanentFailure("the platform has no endpoint URL")
            details["http_status"] = await post_notice(
                found, endpoint, signed, idempotency_key=key, reference=reference
            )
        else:
            raise PermanentFailure(f"a {kind} notice is not delivered through the outbox")
    except DeliveryError as exc:
        await _delivery_failed(found, notice_id, delivery, exc)
        raise
    async with found.db.transaction() as session:
        notice = await session.get(Notice, notice_id, with_for_update=True)
        platform = await session.get(Platform, notice.platform_id) if notice else None
        if notice is None or platform is None or notice.status != S.queued:
            return
        await mark_sent(session, found, notice, platform, actor="system", details=details)
    await announce(found, notice)


async def _delivery_failed(
    found: Services, notice_id: str, delivery: Delivery, exc: DeliveryError
) -> None:
    final = isinstance(exc, PermanentFailure) or delivery.attempt >= found.outbox.max_attempts
    async with found.db.transaction() as session:
        notice = await session.get(Notice, notice_id)
        if notice is None:
            return
        await state.note(
            session,
            found.clock,
            notice,
            actor="system",
            details={
                "event": "delivery_failed" if final else "delivery_retry",
                "attempt": delivery.attempt,
                "reason": str(exc)[:200],
            },
        )
        if final:
            await record(
                session,
                found.clock,
                actor="system",
                action="notice.delivery_failed",
                target=f"notice:{notice_id}",
                details={"attempt": delivery.attempt, "reason": str(exc)[:200]},
            )
    if final:
        await announce(found, notice)


async def queue_platform_mail(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    *,
    to: str,
    subject: str,
    text: str,
    purpose: str,
) -> str:
    """Queue a reminder or escalation mail about a notice; returns the outbox entry's id.
    `purpose` (e.g. `reminder_before`, `escalation:<id>`) makes the idempotency key."""
    entry = await enqueue(
        session,
        found.keyring,
        found.clock,
        kind=KIND_MAIL,
        payload={"notice_id": notice.id, "to": to, "subject": subject, "text": text},
        key_scope=notice_scope(notice.id),
        idempotency_key=f"{KIND_MAIL}:{notice.id}:{purpose}",
    )
    return entry.id


async def deliver_platform_mail(found: Services, delivery: Delivery) -> None:
    """The handler of `takedown.mail`."""
    payload = delivery.payload
    async with found.db.transaction() as session:
        notice = await session.get(Notice, str(payload["notice_id"]))
        if notice is None:
            return
        try:
            cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
        except KeyShredded:
            return
        reply = reply_token(cipher)
    mail = platform_mail(
        found,
        to=str(payload["to"]),
        subject=str(payload["subject"]),
        text=str(payload["text"]),
        reply=reply,
        message_key=delivery.idempotency_key,
    )
    await _send(found, mail)


def register_delivery(services: Services) -> None:
    """Register the outbox handlers (once per Services)."""

    async def notice_handler(delivery: Delivery) -> None:
        await deliver_notice(services, delivery)

    async def mail_handler(delivery: Delivery) -> None:
        await deliver_platform_mail(services, delivery)

    if KIND_NOTICE not in services.outbox.handlers:
        services.outbox.register(KIND_NOTICE, notice_handler)
    if KIND_MAIL not in services.outbox.handlers:
        services.outbox.register(KIND_MAIL, mail_handler)
