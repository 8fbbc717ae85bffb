"""Delivering a handover: seal, issue a one-time link, tell the partner by e-mail.

`queue_delivery` writes one outbox entry (kind `handover.deliver`, idempotency key and key
scope `handover:<id>`, payload: the id only) in the caller's transaction; `stop_delivery`
cancels it, revokes the links and destroys a sealed packet. The worker hands the entry to
`deliver`, which goes step by step, committing after each, so a crash anywhere resumes from
the last committed step:

1. `gate.authorise`; refused ⇒ a history note, and nothing is built or sent;
2. build and seal the packet (unless sealed already) ⇒ `sealed`;
3. the link: a `handover_links` row whose token is derived from the handover's key (HMAC of
   the row id), so a retry finds the same row and sends the same link; only its SHA-256 is
   stored;
4. `gate.authorise` again, then the notification e-mail (no case data; a Message-ID fixed
   per handover, so a mail sent again after a crash is recognisably the same);
5. ⇒ `delivered`.

A permanent SMTP refusal is a history note and a dead letter; other failures are retried.
Each committed step is announced on the bus (`announce`: the case's channel and the
consoles'), so the chat card and the console update live.

A supervisor may reissue the link of a `delivered` handover (`queue_reissue`, checked by
`authorise_delivered`): the old links are revoked, a new link row is made in the request's
transaction and an outbox entry `handover.reissue` (key `handover:<id>:link:<n>`) mails it
(`deliver_reissue`); its token, too, is derived from the row's id, so a retry mails the same
link. The packet is not built again.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.service import channel
from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher
from helpline.core.errors import Conflict
from helpline.core.ids import new_id
from helpline.core.models import OutboxEntry
from helpline.core.outbox import (
    CANCELLED,
    DEAD,
    PENDING,
    Delivery,
    DeliveryError,
    PermanentFailure,
    cancel,
    enqueue,
)
from helpline.core.services import Services
from helpline.handover import gate, packet, state
from helpline.handover import packet_texts as texts
from helpline.handover.models import (
    Handover,
    HandoverConsent,
    HandoverLink,
    Partner,
    handover_scope,
)
from helpline.handover.states import HandoverStatus
from helpline.intake.email import tokens
from helpline.intake.email.outbound import is_permanent_refusal, smtp_refusal
from helpline.intake.email.outbound import send as send_mail
from helpline.triage.service import CONSOLE_CHANNEL

KIND = "handover.deliver"
REISSUE_KIND = "handover.reissue"
LINK_PATH = "/handover/"
H = HandoverStatus


def idempotency_key(handover_id: str) -> str:
    return f"handover:{handover_id}"


def reissue_key(handover_id: str, number: int) -> str:
    """The idempotency key of the `number`-th link of a handover (the first is the delivery's
    own, `handover:<id>`; a reissue makes the 2nd, 3rd, …)."""
    return f"handover:{handover_id}:link:{number}"


class NotReissuable(Conflict):
    code = "not_reissuable"


class PacketGone(Conflict):
    code = "packet_gone"


async def announce(found: Services, case_id: str | None) -> None:
    """After a commit: the case's chat (victim and staff) and the consoles fetch again, as
    `routes_staff.announce` does for a request. The bus is a doorbell: never raises."""
    for where, message in changed(case_id):
        await found.bus.publish(where, message)


def changed(case_id: str | None) -> list[tuple[str, dict[str, str]]]:
    """Where a change of one of the case's handovers is announced, and with what: the case's
    chat channel (victim and staff) and the consoles'. Nothing for a case that is gone."""
    if case_id is None:
        return []
    message = {"type": "handover", "case_id": case_id}
    return [(channel(case_id), message), (CONSOLE_CHANNEL, message)]


# ---------------------------------------------------------------- links


def link_token(cipher: FieldCipher, link_id: str) -> str:
    """The token of one `handover_links` row (`cipher`: the handover scope's)."""
    return hmac.new(
        cipher.derive("handover-link-token"), link_id.encode(), hashlib.sha256
    ).hexdigest()[:32]


def token_hash(token: str) -> str:
    return tokens.token_hash(token)


def link_url(found: Services, token: str) -> str:
    return found.settings.base_url.rstrip("/") + LINK_PATH + token


async def current_link(session: AsyncSession, handover_id: str) -> HandoverLink | None:
    """The newest link of a handover that is neither revoked nor used."""
    rows = await session.execute(
        select(HandoverLink)
        .where(
            col(HandoverLink.handover_id) == handover_id,
            col(HandoverLink.revoked_at).is_(None),
            col(HandoverLink.used_at).is_(None),
        )
        .order_by(col(HandoverLink.created_at).desc())
    )
    return rows.scalars().first()


async def issue_link(
    session: AsyncSession, found: Services, handover: Handover
) -> tuple[HandoverLink, str]:
    """The handover's open link (made, expiring after HELPLINE_HANDOVER_LINK_HOURS, if it has
    none yet) and its token."""
    cipher = await found.keyring.cipher(session, handover_scope(handover.id), create=False)
    link = await current_link(session, handover.id)
    if link is None:
        now = found.clock.now()
        link = HandoverLink(
            id=new_id(),
            handover_id=handover.id,
            token_hash="",
            created_at=now,
            expires_at=now + timedelta(hours=found.settings.handover_link_hours),
        )
        link.token_hash = token_hash(link_token(cipher, link.id))
        session.add(link)
        await session.flush()
    return link, link_token(cipher, link.id)


async def revoke_links(session: AsyncSession, found: Services, handover_id: str) -> int:
    result = await session.execute(
        update(HandoverLink)
        .where(col(HandoverLink.handover_id) == handover_id, col(HandoverLink.revoked_at).is_(None))
        .values(revoked_at=found.clock.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def destroy_packet(found: Services, handover: Handover) -> bool:
    """Destroy the sealed packet's blob (if any) and forget it; the caller commits."""
    if handover.blob_name is None:
        return False
    await packet.vault_for(found.settings).destroy(handover.blob_name)
    handover.blob_name = None
    return True


# ---------------------------------------------------------------- queueing and stopping


async def queue_delivery(session: AsyncSession, services: Services, handover: Handover) -> None:
    """Queue the delivery of `handover` (idempotent: one outbox entry per handover)."""
    key = idempotency_key(handover.id)
    entry = (
        await session.execute(select(OutboxEntry).where(col(OutboxEntry.idempotency_key) == key))
    ).scalar_one_or_none()
    if entry is None:
        entry = await enqueue(
            session,
            services.keyring,
            services.clock,
            kind=KIND,
            payload={"handover_id": handover.id},
            key_scope=handover_scope(handover.id),
            idempotency_key=key,
        )
    elif entry.status in (CANCELLED, DEAD):
        # queued again (consent given again after a dead letter): a fresh set of attempts;
        # the handler checks the consent again before anything happens
        now = services.clock.now()
        entry.status, entry.attempts, entry.next_attempt_at = PENDING, 0, now
        entry.updated_at, entry.last_error = now, None
        await session.flush()
    handover.outbox_id = entry.id
    await session.flush()


async def stop_delivery(session: AsyncSession, services: Services, handover: Handover) -> None:
    """Stop a handover's delivery in the caller's transaction: cancel its outbox entry (a
    worker that holds it right now finds the status changed and sends nothing), revoke its
    links and destroy a sealed packet. Call it with the handover's row locked."""
    if handover.outbox_id is not None:
        await cancel(session, services.clock, handover.outbox_id)
    await revoke_links(session, services, handover.id)
    await destroy_packet(services, handover)
    await session.flush()


# ---------------------------------------------------------------- the e-mail


def message_id(found: Services, handover: Handover, key: str | None = None) -> str:
    """The Message-ID of a notification: fixed per idempotency key (`key`, by default the
    first delivery's), so a mail sent again after a crash is recognisably the same."""
    digest = hashlib.sha256((key or idempotency_key(handover.id)).encode()).hexdigest()[:32]
    return f"<hl-h{digest}@{tokens.domain_of(found.settings.mail_from)}>"


def notification_mail(
    found: Services,
    *,
    to: str,
    handover: Handover,
    link: str,
    expires_at: datetime,
    key: str | None = None,
) -> EmailMessage:
    """The partner's notification, in the handover's language: that a packet waits, where,
    until when, and how to open it. No case data: no category, no names, no summary. `key`:
    the idempotency key of this sending (a reissued link has its own)."""
    settings = found.settings
    reference = handover.reference
    key = key or idempotency_key(handover.id)
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = formataddr((settings.mail_from_name, settings.mail_from))
    mail["To"] = to
    mail["Subject"] = texts.mail_subject(reference, handover.language)
    mail["Date"] = format_datetime(found.clock.now())
    mail["Message-ID"] = message_id(found, handover, key)
    mail["X-Helpline-Handover"] = reference
    mail["X-Helpline-Idempotency-Key"] = key
    mail.set_content(texts.mail_body(reference, link, expires_at, handover.language))
    return mail


def _smtp_failure(exc: Exception) -> DeliveryError:
    if isinstance(exc, DeliveryError):
        return exc
    code, _ = smtp_refusal(exc)
    if is_permanent_refusal(exc, code):
        return PermanentFailure(f"SMTP {code}")
    return DeliveryError(f"SMTP {code}" if code else type(exc).__name__)


# ---------------------------------------------------------------- the outbox handler


async def _refused(found: Services, handover_id: str, exc: gate.ConsentMissing) -> None:
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None:
            return
        case_id = handover.case_id
        await state.note(
            session,
            found.clock,
            handover,
            actor="system",
            event="delivery_refused",
            details={"reason": exc.reason},
        )
    await announce(found, case_id)


async def _failed(found: Services, handover_id: str, delivery: Delivery, exc: Exception) -> None:
    final = isinstance(exc, PermanentFailure) or delivery.attempt >= found.outbox.max_attempts
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None:
            return
        case_id = handover.case_id
        await state.note(
            session,
            found.clock,
            handover,
            actor="system",
            event="delivery_failed" if final else "delivery_retry",
            details={"attempt": delivery.attempt, "reason": str(exc)[:200]},
        )
    await announce(found, case_id)


async def _authorise_and_seal(
    found: Services, handover_id: str
) -> tuple[gate.ConsentMissing | None, str | None]:
    """Steps 1-2 in one transaction holding the handover's row: a withdrawal waits for the
    seal to commit, then destroys it. Returns the gate's refusal, if it refused, and the case
    to announce, if this call sealed the packet."""
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None or HandoverStatus(handover.status) not in (
            H.consented,
            H.approved,
            H.sealed,
        ):
            return None, None  # withdrawn, expired, or delivered earlier (step 3 sees)
        try:
            authorised = await gate.authorise(session, handover, found.clock.now())
        except gate.ConsentMissing as exc:
            return exc, None
        if handover.status == H.sealed:
            return None, None
        await packet.build_and_seal(found, authorised, session=session)
        sealed_case = handover.case_id
    return None, sealed_case


async def deliver(found: Services, delivery: Delivery) -> None:
    """The handler of `handover.deliver` (see the module docstring). Every committed step
    that changes the handover is announced on the bus (`announce`)."""
    handover_id = str(delivery.payload["handover_id"])
    # 1-2: authorise, then build and seal (unless an earlier attempt did)
    try:
        refusal, sealed_case = await _authorise_and_seal(found, handover_id)
    except packet.PacketError as exc:  # an item gone since the consent: retrying cannot help
        failure = PermanentFailure(f"the packet cannot be built ({exc.code})")
        await _failed(found, handover_id, delivery, failure)
        raise failure from None
    if refusal is not None:
        await _refused(found, handover_id, refusal)
        return
    await announce(found, sealed_case)
    # 3: the link (the same one on every retry)
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None or handover.status != H.sealed:
            return
        link, token = await issue_link(session, found, handover)
        expires_at = as_utc(link.expires_at)
    # 4: authorise again, right before anything leaves
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id)
        if handover is None or handover.status != H.sealed:
            return
        try:
            await gate.authorise(session, handover, found.clock.now())
        except gate.ConsentMissing as exc:
            refusal = exc
        partner = await session.get(Partner, handover.partner_id)
        contact = partner.contact_email if partner is not None else None
    if refusal is not None:
        await _refused(found, handover_id, refusal)
        return
    await _send(found, handover_id, delivery, contact, handover, token, expires_at)
    # 5: delivered
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None or handover.status != H.sealed:
            return
        handover.link_expires_at = expires_at
        await state.move(
            session,
            found.clock,
            handover,
            H.delivered,
            actor="system",
            details={"attempt": delivery.attempt},
        )
        case_id = handover.case_id
    await announce(found, case_id)


async def _send(
    found: Services,
    handover_id: str,
    delivery: Delivery,
    contact: str | None,
    handover: Handover,
    token: str,
    expires_at: datetime,
) -> None:
    """The notification e-mail of one link; a failure is noted and raised for the outbox."""
    try:
        if not contact:
            raise PermanentFailure("the partner has no contact e-mail")
        mail = notification_mail(
            found,
            to=contact,
            handover=handover,
            link=link_url(found, token),
            expires_at=expires_at,
            key=delivery.idempotency_key,
        )
        try:
            await send_mail(found, mail)
        except Exception as exc:
            raise _smtp_failure(exc) from None
    except DeliveryError as exc:
        await _failed(found, handover_id, delivery, exc)
        raise


# ---------------------------------------------------------------- a new link (reissue)


async def authorise_delivered(
    session: AsyncSession, handover: Handover, now: datetime
) -> gate.Authorised:
    """The gate's rule for a handover that was delivered already (a new link to the same
    packet): every condition of `gate.authorise` must still hold — consent accepted,
    confirmed, not withdrawn, not expired, the same scope and partner key, the police's
    approval. Raises `gate.ConsentMissing` (409 `consent_required`) otherwise."""
    if handover.status != H.delivered:
        raise gate.ConsentMissing("status", f"a handover that is {handover.status} has no link")
    return await gate.authorise(session, handover, now, relink=True)


def reissue_possible(handover: Handover, consent: HandoverConsent | None, now: datetime) -> bool:
    """Whether a new link could still be issued some day: delivered, its case and packet
    still there, and a consent that has neither run out nor been withdrawn. The expiry job
    keeps a delivered handover whose link ran out (and its packet) only while this holds."""
    return (
        handover.status == H.delivered
        and handover.case_id is not None
        and handover.blob_name is not None
        and consent is not None
        and consent.withdrawn_at is None
        and as_utc(now) < as_utc(consent.expires_at)
    )


async def packet_exists(found: Services, handover: Handover) -> bool:
    if handover.blob_name is None:
        return False
    try:
        await packet.vault_for(found.settings).backend.size(handover.blob_name)
    except FileNotFoundError:
        return False
    return True


async def queue_reissue(
    session: AsyncSession, found: Services, handover: Handover, *, actor: str
) -> HandoverLink:
    """A new one-time link for a delivered handover, in the caller's transaction (which holds
    the handover's row lock and checked the consent): the old links are revoked, a link row
    is made (its token is derived from its id, so every retry mails the same link) and one
    outbox entry `handover.reissue` (key `handover:<id>:link:<n>`) mails it. A reissue that
    is still waiting in the outbox is cancelled: its link is revoked anyway."""
    now = found.clock.now()
    if handover.outbox_id is not None:
        await cancel(session, found.clock, handover.outbox_id)
    await revoke_links(session, found, handover.id)
    count = await session.execute(
        select(func.count()).where(col(HandoverLink.handover_id) == handover.id)
    )
    number = int(count.scalar_one()) + 1
    link = HandoverLink(
        id=new_id(),
        handover_id=handover.id,
        token_hash="",
        created_at=now,
        expires_at=now + timedelta(hours=found.settings.handover_link_hours),
    )
    cipher = await found.keyring.cipher(session, handover_scope(handover.id), create=False)
    link.token_hash = token_hash(link_token(cipher, link.id))
    session.add(link)
    await session.flush()
    entry = await enqueue(
        session,
        found.keyring,
        found.clock,
        kind=REISSUE_KIND,
        payload={"handover_id": handover.id, "link_id": link.id, "number": number},
        key_scope=handover_scope(handover.id),
        idempotency_key=reissue_key(handover.id, number),
    )
    handover.outbox_id = entry.id
    handover.link_expires_at = link.expires_at
    handover.updated_at = now
    await state.note(
        session, found.clock, handover, actor=actor, event="link_reissued", details={"link": number}
    )
    await session.flush()
    return link


async def deliver_reissue(found: Services, delivery: Delivery) -> None:
    """The handler of `handover.reissue`: mail the link of the payload, unless it was
    superseded, used, revoked or ran out, or the consent no longer holds (then nothing
    leaves). A retry mails the same link with the same Message-ID."""
    handover_id = str(delivery.payload["handover_id"])
    link_id = str(delivery.payload["link_id"])
    number = int(delivery.payload["number"])
    refusal: gate.ConsentMissing | None = None
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id)
        link = await session.get(HandoverLink, link_id)
        now = found.clock.now()
        if (
            handover is None
            or handover.status != H.delivered
            or handover.blob_name is None
            or link is None
            or link.handover_id != handover.id
            or link.revoked_at is not None
            or link.used_at is not None
            or as_utc(link.expires_at) <= now
        ):
            return
        try:
            await authorise_delivered(session, handover, now)
        except gate.ConsentMissing as exc:
            refusal = exc
        partner = await session.get(Partner, handover.partner_id)
        contact = partner.contact_email if partner is not None else None
        cipher = await found.keyring.cipher(session, handover_scope(handover.id), create=False)
        token, expires_at = link_token(cipher, link.id), as_utc(link.expires_at)
    if refusal is not None:
        await _refused(found, handover_id, refusal)
        return
    await _send(found, handover_id, delivery, contact, handover, token, expires_at)
    async with found.db.transaction() as session:
        sent = await session.get(Handover, handover_id, with_for_update=True)
        if sent is None:
            return
        await state.note(
            session,
            found.clock,
            sent,
            actor="system",
            event="link_sent",
            details={"link": number, "attempt": delivery.attempt},
        )
        case_id = sent.case_id
    await announce(found, case_id)


def register_delivery(services: Services) -> None:
    """Register the outbox handlers (once per Services)."""

    async def handler(delivery: Delivery) -> None:
        await deliver(services, delivery)

    async def reissue_handler(delivery: Delivery) -> None:
        await deliver_reissue(services, delivery)

    if KIND not in services.outbox.handlers:
        services.outbox.register(KIND, handler)
    if REISSUE_KIND not in services.outbox.handlers:
        services.outbox.register(REISSUE_KIND, reissue_handler)
