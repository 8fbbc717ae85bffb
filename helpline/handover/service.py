"""What staff and victims do with a handover, as plain functions on a session (the routes are
thin): propose, answer (victim in the chat, or staff recording a verbal/written answer that a
colleague confirms), approve (police), withdraw or cancel; and the JSON of a handover for staff
(`Handover`) and for the victim (`VictimHandover`), docs/api/handover.md.

Sharing is off by default: a proposal shares nothing. Only when consent is valid (and, for the
police, a supervisor approved) is the delivery queued (`delivery.queue_delivery`); it checks
`gate.authorise` again before anything is sealed or sent. A withdrawal or cancellation stops it
(`delivery.stop_delivery`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.cases.receipts import new_reference
from helpline.core.clock import as_utc
from helpline.core.errors import Conflict, HelplineError, Invalid, NotFound
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence.models import EvidenceItem, ItemStatus
from helpline.handover import consent, gate, partners, state
from helpline.handover.models import (
    Handover,
    HandoverConsent,
    HandoverHistory,
    HandoverLink,
    Partner,
    handover_scope,
)
from helpline.handover.states import (
    PART_ORDER,
    ConsentDecision,
    ConsentMethod,
    ContactMethod,
    HandoverStatus,
    Part,
    PartnerKind,
)
from helpline.staff.console import staff_names
from helpline.stats import counters
from helpline.triage.events import add_event

H = HandoverStatus
MAX_SUMMARY = 4000


class InvalidParts(HelplineError):
    status = 400
    code = "invalid_parts"


class SummaryRequired(HelplineError):
    status = 400
    code = "summary_required"


class EvidenceRequired(HelplineError):
    status = 400
    code = "evidence_required"


class UnknownEvidence(HelplineError):
    status = 400
    code = "unknown_evidence"


class PartnerNotReady(Conflict):
    code = "partner_not_ready"


class NotPolice(Conflict):
    code = "not_police"


class NotConsented(Conflict):
    code = "not_consented"


def new_handover_reference() -> str:
    """`H-7K3Q-M9PX`: like a case reference, never mistaken for one."""
    return f"H-{new_reference()}"


# ---------------------------------------------------------------- propose


async def propose(
    session: AsyncSession,
    found: Services,
    case: Case,
    *,
    staff_id: str,
    partner_id: str,
    parts: list[str],
    summary: str | None = None,
    evidence_ids: list[str] | None = None,
    contact_method: str | None = None,
    language: str | None = None,
) -> Handover:
    """A proposal to share exactly these parts of `case` with one partner. Shares nothing."""
    if not parts:
        raise InvalidParts("choose at least one part")
    try:
        chosen = {Part(value) for value in parts}
    except ValueError:
        raise InvalidParts(f"parts: each one of {', '.join(p.value for p in Part)}") from None
    ordered = [part for part in PART_ORDER if part in chosen]
    text = (summary or "").strip()
    if Part.summary in chosen:
        if not text:
            raise SummaryRequired("write the summary the partner will receive")
        if len(text) > MAX_SUMMARY:
            raise Invalid(f"summary: at most {MAX_SUMMARY} characters")
    ids: list[str] = []
    if Part.evidence in chosen:
        ids = sorted(set(evidence_ids or []))
        if not ids:
            raise EvidenceRequired("choose the evidence items to share")
        rows = await session.execute(
            select(col(EvidenceItem.id)).where(
                col(EvidenceItem.id).in_(ids),
                col(EvidenceItem.case_id) == case.id,
                col(EvidenceItem.status) != ItemStatus.destroyed,
            )
        )
        if set(rows.scalars().all()) != set(ids):
            raise UnknownEvidence("some evidence items are not of this case (or were destroyed)")
    method: str | None = None
    if Part.contact in chosen:
        try:
            method = ContactMethod(contact_method or "").value
        except ValueError:
            raise Invalid(
                f"contact_method: one of {', '.join(m.value for m in ContactMethod)}"
            ) from None
    if language is not None and language not in consent.LANGUAGES:
        raise Invalid(f"language: one of {', '.join(consent.LANGUAGES)}")
    partner = await session.get(Partner, partner_id)
    if partner is None:
        raise Invalid("partner_id: no such partner")
    if not partners.is_ready(partner):
        raise PartnerNotReady("the partner is not active or its key is not confirmed")
    now = found.clock.now()
    handover = Handover(
        id=new_id(),
        reference=new_handover_reference(),
        case_id=case.id,
        partner_id=partner.id,
        partner_kind=partner.kind,
        language=language or consent.language_of(case.language),
        parts=",".join(part.value for part in ordered),
        evidence_ids=",".join(ids),
        contact_method=method,
        scope_sha256="",
        status=H.proposed.value,
        approval_required=partner.kind == PartnerKind.police,
        created_by=staff_id,
        created_at=now,
        updated_at=now,
    )
    if Part.summary in chosen:
        cipher = await found.keyring.cipher(session, handover_scope(handover.id))
        handover.summary = cipher.encrypt(
            text, table=consent.HANDOVERS, row_id=handover.id, field="summary"
        )
    handover.scope_sha256 = gate.scope_hash(gate.scope_of(handover, partner))
    session.add(handover)
    await session.flush()
    # a proposal does not go through state.move (it is the first status, not a transition),
    # so it is counted here, as move counts every later status
    await counters.count_handover_moved(session, handover, at=now)
    actor = f"staff:{staff_id}"
    await state.note(
        session,
        found.clock,
        handover,
        actor=actor,
        event="proposed",
        details={"partner": partner.id, "parts": handover.parts, "evidence": len(ids)},
    )
    await add_event(
        session,
        found.clock,
        case,
        actor=actor,
        kind=state.EVENT_KIND,
        action="handover.proposed",
        details={
            "handover": handover.id,
            "reference": handover.reference,
            "partner": partner.name,
            "partner_kind": partner.kind,
            "status": H.proposed.value,
        },
    )
    return handover


# ---------------------------------------------------------------- after a change


def ready_to_deliver(handover: Handover) -> bool:
    status = HandoverStatus(handover.status)
    if handover.approval_required:
        return status is H.approved
    return status is H.consented


async def deliver_if_ready(session: AsyncSession, found: Services, handover: Handover) -> bool:
    """Queue the delivery once consent is valid (and, for the police, approved)."""
    if not ready_to_deliver(handover):
        return False
    from helpline.handover import delivery  # imported here: delivery reads this package

    await delivery.queue_delivery(session, found, handover)
    return True


async def answer(
    session: AsyncSession,
    found: Services,
    handover: Handover,
    *,
    method: ConsentMethod,
    decision: ConsentDecision,
    text_sha256: str,
    recorded_by: str,
    contact_details: str | None = None,
) -> HandoverConsent:
    given = await consent.record_answer(
        session,
        found,
        handover,
        method=method,
        decision=decision,
        text_sha256=text_sha256,
        recorded_by=recorded_by,
        contact_details=contact_details,
    )
    await deliver_if_ready(session, found, handover)
    return given


async def confirm(
    session: AsyncSession, found: Services, handover: Handover, *, staff_id: str
) -> HandoverConsent:
    confirmed = await consent.confirm(session, found, handover, staff_id=staff_id)
    await deliver_if_ready(session, found, handover)
    return confirmed


async def approve(
    session: AsyncSession, found: Services, handover: Handover, *, staff_id: str
) -> None:
    """A supervisor approves a consented handover to the police; the delivery is queued."""
    if not handover.approval_required and handover.partner_kind != PartnerKind.police:
        raise NotPolice("only a handover to the police needs approval")
    if handover.status != H.consented:
        raise NotConsented(f"this handover is {handover.status}, not consented")
    handover.approved_by = staff_id
    await state.move(session, found.clock, handover, H.approved, actor=f"staff:{staff_id}")
    await deliver_if_ready(session, found, handover)


async def lock(session: AsyncSession, handover: Handover) -> Handover:
    """Take the handover's row lock and read the row again as it is now: a worker that sealed
    the packet meanwhile committed a status and a blob that a copy read earlier (before it
    waited for the lock) does not show. Returns the same object, refreshed."""
    locked = await session.get(Handover, handover.id, with_for_update=True, populate_existing=True)
    if locked is None:
        raise NotFound("no such handover")
    return locked


async def withdraw(session: AsyncSession, found: Services, handover: Handover, *, by: str) -> None:
    """The victim withdraws (`victim`) or staff cancel (`staff:<id>`); the delivery stops:
    its outbox entry cancelled, links revoked and a sealed packet destroyed, all under the
    row lock (a seal in progress commits first, then its packet is destroyed here)."""
    from helpline.handover import delivery  # imported here: delivery reads this package

    handover = await lock(session, handover)
    await consent.withdraw(session, found, handover, by=by)
    await delivery.stop_delivery(session, found, handover)


async def reissue(
    session: AsyncSession, found: Services, handover: Handover, *, staff_id: str
) -> HandoverLink:
    """A supervisor issues a new one-time link for a delivered handover whose link ran out or
    was never used (docs/api/handover.md, "Reissuing a link"). Refused: 409
    `not_reissuable` (not delivered, or downloaded), `packet_gone` (expired: the packet was
    destroyed; or the packet is missing), `consent_required` (the consent no longer holds)."""
    from helpline.handover import delivery  # imported here: delivery reads this package

    handover = await lock(session, handover)
    status = HandoverStatus(handover.status)
    if status is H.expired:
        raise delivery.PacketGone(
            "this handover expired and its packet was destroyed: propose it again"
        )
    if status is H.downloaded:
        raise delivery.NotReissuable("the partner downloaded the packet already")
    if status is not H.delivered:
        raise delivery.NotReissuable(f"a handover that is {status.value} has no link to reissue")
    await delivery.authorise_delivered(session, handover, found.clock.now())
    if not await delivery.packet_exists(found, handover):
        raise delivery.PacketGone("the sealed packet is no longer there: propose it again")
    return await delivery.queue_reissue(session, found, handover, actor=f"staff:{staff_id}")


# ---------------------------------------------------------------- reading


async def handovers_of_case(session: AsyncSession, case_id: str) -> list[Handover]:
    rows = await session.execute(
        select(Handover)
        .where(col(Handover.case_id) == case_id)
        .order_by(col(Handover.created_at).desc(), col(Handover.id).desc())
    )
    return list(rows.scalars().all())


AWAITING_LIMIT = 200


async def awaiting_confirmation(
    session: AsyncSession, now: datetime, *, staff_id: str
) -> list[dict[str, Any]]:
    """The recorded (verbal/written) yeses a second staff member may confirm now, oldest first:
    `consent.is_pending`, not expired, and not recorded by `staff_id` (who cannot confirm
    their own). Trimmed to what a list shows: nothing of the case, the summary or the evidence.
    """
    rows = await session.execute(
        select(Handover, HandoverConsent, Partner)
        .join(HandoverConsent, col(HandoverConsent.id) == col(Handover.consent_id))
        .outerjoin(Partner, col(Partner.id) == col(Handover.partner_id))
        .where(
            col(Handover.status) == HandoverStatus.proposed.value,
            col(HandoverConsent.handover_id) == col(Handover.id),
            col(HandoverConsent.decision) == ConsentDecision.accepted.value,
            col(HandoverConsent.method) != ConsentMethod.chat.value,
            col(HandoverConsent.confirmed_by).is_(None),
            col(HandoverConsent.withdrawn_at).is_(None),
            col(HandoverConsent.expires_at) > now,
            col(HandoverConsent.recorded_by) != f"staff:{staff_id}",
        )
        .order_by(col(HandoverConsent.recorded_at), col(Handover.id))
        .limit(AWAITING_LIMIT)
    )
    found = list(rows.all())
    names = await _names(session, [_staff_in(c.recorded_by) for _, c, _ in found])
    return [
        {
            "id": h.id,
            "reference": h.reference,
            "partner": {
                "id": h.partner_id,
                "name": p.name if p is not None else None,
                "kind": h.partner_kind,
            },
            "recorded_by": _person(_staff_in(c.recorded_by), names),
            "recorded_at": _iso(c.recorded_at),
            "expires_at": _iso(c.expires_at),
        }
        for h, c, p in found
    ]


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def _person(staff_id: str | None, names: dict[str, str]) -> dict[str, str] | None:
    return {"id": staff_id, "name": names.get(staff_id, "")} if staff_id else None


def _actor(actor: str, names: dict[str, str]) -> dict[str, str | None]:
    kind, _, ident = actor.partition(":")
    if kind == "staff":
        return {"kind": "staff", "id": ident, "name": names.get(ident, "")}
    return {"kind": kind, "id": None, "name": None}


def _staff_in(actor: str | None) -> str | None:
    if actor and actor.startswith("staff:"):
        return actor.split(":", 1)[1]
    return None


async def _names(session: AsyncSession, ids: list[str | None]) -> dict[str, str]:
    return await staff_names(session, ids)


async def _latest_link(session: AsyncSession, handover_id: str) -> HandoverLink | None:
    rows = await session.execute(
        select(HandoverLink)
        .where(col(HandoverLink.handover_id) == handover_id)
        .order_by(col(HandoverLink.created_at).desc(), col(HandoverLink.id).desc())
        .limit(1)
    )
    return rows.scalars().first()


async def _evidence_of(
    session: AsyncSession, found: Services, handover: Handover
) -> list[dict[str, Any]]:
    ids = gate.evidence_ids_of(handover)
    if Part.evidence not in gate.parts_of(handover) or not ids:
        return []
    lines = {e.id: e for e in await consent.evidence_lines(session, found, handover.case_id, ids)}
    hashes: dict[str, str | None] = {}
    rows = await session.execute(
        select(col(EvidenceItem.id), col(EvidenceItem.sha256)).where(col(EvidenceItem.id).in_(ids))
    )
    for item_id, sha in rows.all():
        hashes[item_id] = sha
    result = []
    latest = datetime.max.replace(tzinfo=UTC)  # an item gone since: last

    def captured(item_id: str) -> tuple[datetime, str]:
        line = lines.get(item_id)
        return (as_utc(line.captured_at) if line else latest, item_id)

    # in the order they were captured, as in the consent text
    for item_id in sorted(ids, key=captured):
        line = lines.get(item_id)
        result.append(
            {
                "id": item_id,
                "kind": line.kind if line else None,
                "label": (line.name or line.url) if line else None,
                "sha256": hashes.get(item_id),
            }
        )
    return result


async def render_handovers(
    session: AsyncSession,
    found: Services,
    handovers: list[Handover],
    *,
    with_text: bool = False,
) -> list[dict[str, Any]]:
    """`Handover` of docs/api/handover.md, for staff (summary and evidence labels included)."""
    if not handovers:
        return []
    ids = [h.id for h in handovers]
    partner_rows = await session.execute(
        select(Partner).where(col(Partner.id).in_({h.partner_id for h in handovers}))
    )
    partner_of = {p.id: p for p in partner_rows.scalars().all()}
    consent_ids = [h.consent_id for h in handovers if h.consent_id]
    consents: dict[str, HandoverConsent] = {}
    if consent_ids:
        rows = await session.execute(
            select(HandoverConsent).where(col(HandoverConsent.id).in_(consent_ids))
        )
        consents = {c.id: c for c in rows.scalars().all()}
    history_rows = await session.execute(
        select(HandoverHistory)
        .where(col(HandoverHistory.handover_id).in_(ids))
        .order_by(col(HandoverHistory.handover_id), col(HandoverHistory.seq))
    )
    histories: dict[str, list[HandoverHistory]] = {}
    for row in history_rows.scalars().all():
        histories.setdefault(row.handover_id, []).append(row)
    wanted: list[str | None] = []
    for h in handovers:
        wanted += [h.created_by, h.approved_by]
        c = consents.get(h.consent_id or "")
        if c is not None:
            wanted += [c.confirmed_by, _staff_in(c.recorded_by)]
        wanted += [_staff_in(row.actor) for row in histories.get(h.id, [])]
    names = await _names(session, wanted)
    result = []
    for h in handovers:
        partner = partner_of.get(h.partner_id)
        c = consents.get(h.consent_id or "")
        link = await _latest_link(session, h.id)
        rendered: dict[str, Any] = {
            "id": h.id,
            "reference": h.reference,
            "case_id": h.case_id,
            "partner": {
                "id": h.partner_id,
                "name": partner.name if partner else None,
                "kind": h.partner_kind,
            },
            "status": h.status,
            "language": h.language,
            "parts": [p.value for p in gate.parts_of(h)],
            "evidence": await _evidence_of(session, found, h),
            "contact_method": h.contact_method,
            "contact_details_added": h.contact_details is not None,
            "summary": await consent.read_summary(session, found, h),
            "approval_required": h.approval_required,
            "approved": {"by": _person(h.approved_by, names), "at": _iso(h.approved_at)}
            if h.approved_by
            else None,
            "consent": None
            if c is None
            else {
                "id": c.id,
                "method": c.method,
                "decision": c.decision,
                "recorded_by": _actor(c.recorded_by, names),
                "recorded_at": _iso(c.recorded_at),
                "confirmed": gate.consent_is_confirmed(c),
                "confirmed_by": _person(c.confirmed_by, names),
                "confirmed_at": _iso(c.confirmed_at),
                "expires_at": _iso(c.expires_at),
                "withdrawn_at": _iso(c.withdrawn_at),
                "text_sha256": c.text_sha256,
            },
            "packet": None
            if h.sealed_at is None
            else {
                "size": h.packet_size,
                "sha256": h.packet_sha256,
                "manifest_sha256": h.manifest_sha256,
                "sealed_at": _iso(h.sealed_at),
                "recipient_fingerprint": h.recipient_fingerprint,
            },
            "link": None
            if link is None
            else {"expires_at": _iso(link.expires_at), "used_at": _iso(link.used_at)},
            "created_by": _person(h.created_by, names),
            "created_at": _iso(h.created_at),
            "delivered_at": _iso(h.delivered_at),
            "downloaded_at": _iso(h.downloaded_at),
            "closed_at": _iso(h.closed_at),
            "history": [
                {
                    "at": _iso(row.at),
                    "actor": _actor(row.actor, names),
                    "from": row.from_status,
                    "to": row.to_status,
                    "event": json.loads(row.details).get("event"),
                }
                for row in histories.get(h.id, [])
            ],
        }
        if with_text and partner is not None:
            text = await consent.text_of(session, found, h, partner)
            rendered["consent_text"] = text.text
            rendered["consent_text_sha256"] = text.sha256
            rendered["will_receive"] = text.will_receive
            rendered["will_not_receive"] = text.will_not_receive
        result.append(rendered)
    return result


async def cancelled_by_staff(session: AsyncSession, handover: Handover) -> bool:
    """Withdrawn by staff (not by the victim): not shown to the victim any more."""
    if handover.status != H.withdrawn:
        return False
    rows = await session.execute(
        select(col(HandoverHistory.actor))
        .where(
            col(HandoverHistory.handover_id) == handover.id,
            col(HandoverHistory.to_status) == H.withdrawn,
        )
        .order_by(col(HandoverHistory.seq).desc())
        .limit(1)
    )
    actor = rows.scalar_one_or_none()
    return actor is not None and actor.startswith("staff:")


async def victim_handovers(
    session: AsyncSession, found: Services, case_id: str
) -> list[dict[str, Any]]:
    """The proposals of the victim's case, as the chat shows them (not those staff cancelled)."""
    shown = []
    for handover in await handovers_of_case(session, case_id):
        if await cancelled_by_staff(session, handover):
            continue
        shown.append(await render_for_victim(session, found, handover))
    return shown


async def render_for_victim(
    session: AsyncSession, found: Services, handover: Handover
) -> dict[str, Any]:
    """`VictimHandover`: no staff names, no internal ids but the handover's."""
    partner = await session.get(Partner, handover.partner_id)
    assert partner is not None
    text = await consent.text_of(session, found, handover, partner)
    given = await consent.current_consent(session, handover)
    status = HandoverStatus(handover.status)
    return {
        "id": handover.id,
        "partner": {
            "name": partner.name,
            "kind": partner.kind,
            "description": consent.partner_description(partner, handover.language),
        },
        "status": status.value,
        # a yes recorded on the phone waits for a colleague: to the victim it is still open
        "awaiting_confirmation": consent.is_pending(handover, given),
        "language": text.language,
        "title": text.title,
        "text": text.text,
        "text_sha256": text.sha256,
        "will_receive": text.will_receive,
        "will_not_receive": text.will_not_receive,
        "contact_method": handover.contact_method
        if Part.contact in gate.parts_of(handover)
        else None,
        "can_answer": status is H.proposed and not consent.is_pending(handover, given),
        "can_add_contact": status is H.proposed
        and Part.contact in gate.parts_of(handover)
        and handover.contact_method not in (None, ContactMethod.none, ContactMethod.chat),
        "can_withdraw": consent.can_withdraw(handover, given),
        "decision": given.decision if given is not None else None,
        "answered_at": _iso(given.recorded_at) if given is not None else None,
    }
