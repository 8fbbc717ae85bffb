"""The escalation ladder: when a platform does not decide in time (or declines), staff take
it further, one step at a time, each drafted for them to approve:

1. `escalation_contact` — a mail to the platform's escalation contact (skipped if it has none);
2. `internal_complaint` — a complaint through the platform's internal complaint-handling
   system (DSA art. 20; by mail to its complaint address, or its point of contact);
3. `dsc_complaint` — a complaint dossier for the Digital Services Coordinator (in the
   Netherlands the ACM): the signed notice, its timeline and the earlier steps, as a signed
   JSON document staff file with the coordinator.

The SLA clock (`sla.py`) drafts the next step when the previous one was decided long enough
ago; staff can draft one themselves after a decline. Nothing leaves before staff approve it.
The drafted text (or dossier) is encrypted under the notice key.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher, canonical_json
from helpline.core.errors import Conflict, Invalid
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.takedown import builder, delivery, state
from helpline.takedown.models import (
    Notice,
    NoticeEscalation,
    NoticeHistory,
    Platform,
    notice_scope,
)
from helpline.takedown.states import (
    LADDER,
    EscalationStatus,
    EscalationStep,
    NoticeStatus,
)

TABLE = "notice_escalations"
S = NoticeStatus
# a notice can be escalated while the platform has not decided, or after it declined
ESCALATABLE = frozenset({S.no_response, S.declined, S.partly_honoured})
MAX_TEXT = 8000
DSC = {"name": "Autoriteit Consument & Markt (ACM)", "role": "Digital Services Coordinator (NL)"}


class StepExists(Conflict):
    code = "step_exists"


class NotEscalatable(Conflict):
    code = "not_escalatable"


def when(moment: datetime | None) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def recipient_for(step: EscalationStep, platform: Platform) -> str | None:
    if step is EscalationStep.escalation_contact:
        return platform.escalation_email
    if step is EscalationStep.internal_complaint:
        return platform.complaint_email or platform.contact_email
    return None  # the dossier is filed by staff


async def escalations_of(session: AsyncSession, notice_id: str) -> list[NoticeEscalation]:
    rows = await session.execute(
        select(NoticeEscalation)
        .where(col(NoticeEscalation.notice_id) == notice_id)
        .order_by(col(NoticeEscalation.drafted_at))
    )
    return list(rows.scalars().all())


def next_step(
    existing: list[NoticeEscalation], platform: Platform, now: datetime, step_hours: int
) -> EscalationStep | None:
    """The step the clock drafts now, if any: none while a draft waits for staff or the last
    decision is younger than `step_hours`; the escalation contact only if there is one."""
    if any(e.status == EscalationStatus.drafted for e in existing):
        return None
    decided = [as_utc(e.decided_at) for e in existing if e.decided_at is not None]
    if decided and max(decided) + timedelta(hours=step_hours) > now:
        return None
    taken = {e.step for e in existing}
    for step in LADDER:
        if step in taken:
            continue
        if step is EscalationStep.escalation_contact and not platform.escalation_email:
            continue
        return step
    return None


def _state_sentence(notice: Notice, words: dict[str, Any]) -> str:
    if notice.status in (S.declined, S.partly_honoured):
        return str(words["escalations"]["declined"])
    return str(words["escalations"]["no_decision"]).format(due=when(notice.due_at))


async def _dossier(
    session: AsyncSession, found: Services, notice: Notice, platform: Platform
) -> dict[str, Any]:
    """The complaint dossier for the Digital Services Coordinator, signed."""
    words = builder.texts(notice.language)
    signed = await builder.stored_signed(session, found, notice)
    positions = {u.id: u.position for u in await state.urls_of(session, notice.id)}
    history = await session.execute(
        select(NoticeHistory)
        .where(col(NoticeHistory.notice_id) == notice.id)
        .order_by(col(NoticeHistory.at), col(NoticeHistory.seq), col(NoticeHistory.id))
    )
    timeline = []
    for row in history.scalars():
        details = json.loads(row.details)
        timeline.append(
            {
                "at": builder.iso(row.at),
                "by": row.actor.split(":", 1)[0],  # system, staff, platform: no names
                "url": positions.get(row.url_id) if row.url_id else None,
                "from": row.from_status,
                "to": row.to_status,
                "event": details.get("event"),
            }
        )
    dossier = {
        "type": "helpline.dsc_complaint",
        "version": 1,
        "title": str(words["escalations"]["dsc_complaint_title"]).format(
            reference=notice.reference
        ),
        "authority": DSC,
        "complainant": {
            "name": found.settings.notice_notifier_name,
            "email": builder.notifier_email(found),
            "trusted_flagger": True,
        },
        "platform": {
            "name": platform.name,
            "slug": platform.slug,
            "contact_email": platform.contact_email,
            "flagger_reference": platform.flagger_reference,
        },
        "notice": {
            "reference": notice.reference,
            "status": notice.status,
            "sent_at": builder.iso(notice.sent_at) if notice.sent_at else None,
            "due_at": builder.iso(notice.due_at) if notice.due_at else None,
            "sla_hours": platform.sla_hours,
            "document_sha256": notice.document_sha256,
            "kid": notice.kid,
            "signature": notice.signature,
        },
        "notice_document": builder.document_of(signed) if signed else None,
        "timeline": timeline,
        "earlier_steps": [
            {
                "step": e.step,
                "status": e.status,
                "drafted_at": builder.iso(e.drafted_at),
                "decided_at": builder.iso(e.decided_at) if e.decided_at else None,
            }
            for e in await escalations_of(session, notice.id)
        ],
        "prepared_at": builder.iso(found.clock.now()),
    }
    return {"dossier": dossier, "signature": found.signer.sign_document(dossier)}


async def _draft_text(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    platform: Platform,
    step: EscalationStep,
) -> str:
    if step is EscalationStep.dsc_complaint:
        return canonical_json(await _dossier(session, found, notice, platform)).decode()
    words = builder.texts(notice.language)
    template = str(words["escalations"][f"{step.value}_body"])
    return template.format(
        reference=notice.reference,
        platform=platform.name,
        sent=when(notice.sent_at),
        due=when(notice.due_at),
        document_sha256=notice.document_sha256 or "-",
        state=_state_sentence(notice, words),
    )


def subject_for(notice: Notice, step: EscalationStep) -> str:
    words = builder.texts(notice.language)
    if step is EscalationStep.dsc_complaint:
        return str(words["escalations"]["dsc_complaint_title"]).format(reference=notice.reference)
    return str(words["escalations"][f"{step.value}_subject"]).format(reference=notice.reference)


async def draft_step(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    platform: Platform,
    step: EscalationStep,
    *,
    actor: str,
) -> NoticeEscalation:
    """Draft one step for staff to approve; `StepExists` if it was drafted before."""
    if notice.status not in ESCALATABLE:
        raise NotEscalatable(f"a notice that is {notice.status} is not escalated")
    if any(e.step == step for e in await escalations_of(session, notice.id)):
        raise StepExists(f"{step.value} was drafted before")
    now = found.clock.now()
    escalation = NoticeEscalation(
        id=new_id(),
        notice_id=notice.id,
        step=step.value,
        status=EscalationStatus.drafted.value,
        recipient=recipient_for(step, platform),
        drafted_at=now,
        drafted_by=actor,
    )
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    text = await _draft_text(session, found, notice, platform, step)
    escalation.body = cipher.encrypt(text, table=TABLE, row_id=escalation.id, field="body")
    session.add(escalation)
    await session.flush()
    await state.note(
        session,
        found.clock,
        notice,
        actor=actor,
        details={"event": "escalation_drafted", "step": step.value},
    )
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.escalation_drafted",
        target=f"notice:{notice.id}",
        details={"step": step.value},
    )
    return escalation


async def decide_step(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    escalation: NoticeEscalation,
    *,
    staff_id: str,
    approve: bool,
    text: str | None = None,
) -> NoticeEscalation:
    """Approve (optionally with edited text: the mail is sent through the outbox) or dismiss
    a drafted step. A dossier cannot be edited: it is signed."""
    if escalation.status != EscalationStatus.drafted:
        raise Conflict(f"this step was {escalation.status} already")
    step = EscalationStep(escalation.step)
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    if text is not None:
        if step is EscalationStep.dsc_complaint:
            raise Invalid("text: the dossier is signed and cannot be edited")
        text = text.strip()
        if not 1 <= len(text) <= MAX_TEXT:
            raise Invalid(f"text: 1-{MAX_TEXT} characters")
        escalation.body = cipher.encrypt(text, table=TABLE, row_id=escalation.id, field="body")
    now = found.clock.now()
    escalation.status = (EscalationStatus.approved if approve else EscalationStatus.dismissed).value
    escalation.decided_by, escalation.decided_at = staff_id, now
    if approve and escalation.recipient and step is not EscalationStep.dsc_complaint:
        escalation.outbox_id = await delivery.queue_platform_mail(
            session,
            found,
            notice,
            to=escalation.recipient,
            subject=subject_for(notice, step),
            text=body_of(cipher, escalation),
            purpose=f"escalation:{escalation.id}",
        )
    await session.flush()
    actor = f"staff:{staff_id}"
    await state.note(
        session,
        found.clock,
        notice,
        actor=actor,
        details={"event": f"escalation_{escalation.status}", "step": step.value},
    )
    await record(
        session,
        found.clock,
        actor=actor,
        action=f"notice.escalation_{escalation.status}",
        target=f"notice:{notice.id}",
        details={"step": step.value, "mailed": escalation.outbox_id is not None},
    )
    return escalation


def body_of(cipher: FieldCipher, escalation: NoticeEscalation) -> str:
    if escalation.body is None:
        return ""
    return cipher.decrypt_text(escalation.body, table=TABLE, row_id=escalation.id, field="body")


def escalation_json(escalation: NoticeEscalation, cipher: FieldCipher) -> dict[str, Any]:
    body = body_of(cipher, escalation)
    result: dict[str, Any] = {
        "id": escalation.id,
        "step": escalation.step,
        "status": escalation.status,
        "recipient": escalation.recipient,
        "drafted_at": builder.iso(escalation.drafted_at),
        "drafted_by": escalation.drafted_by.split(":", 1)[0],
        "decided_by": escalation.decided_by,
        "decided_at": builder.iso(escalation.decided_at) if escalation.decided_at else None,
        "mailed": escalation.outbox_id is not None,
    }
    if escalation.step == EscalationStep.dsc_complaint:
        result["dossier"] = json.loads(body) if body else None
    else:
        result["text"] = body
    return result
