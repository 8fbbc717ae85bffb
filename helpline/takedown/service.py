"""What staff do with a notice, as plain functions on a session (the routes are thin):
send it (or submit it for four-eyes approval), approve or send it back, withdraw it, mark a
web-form notice submitted, confirm a receipt, record an outcome, and set which categories
need four eyes. Each is audited; each status change is in the notice's history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.errors import Conflict, Forbidden, Invalid
from helpline.core.services import Services
from helpline.takedown import delivery, state
from helpline.takedown.codes import notice_categories
from helpline.takedown.models import ApprovalRule, Notice, NoticeUrl, Platform
from helpline.takedown.states import AnswerVia, Delivery, NoticeStatus

S = NoticeStatus


class NotApproved(Conflict):
    code = "approval_required"


class OwnNotice(Forbidden):
    code = "four_eyes"


async def _platform(session: AsyncSession, notice: Notice) -> Platform:
    platform = await session.get(Platform, notice.platform_id)
    if platform is None or not platform.active:
        raise Conflict("the notice's platform is not active")
    return platform


async def send(session: AsyncSession, found: Services, notice: Notice, *, staff_id: str) -> None:
    """Send a draft: to `awaiting_approval` if its category needs four eyes, else queued."""
    actor = f"staff:{staff_id}"
    if notice.status != S.draft:
        raise state.BadTransition(f"only a draft can be sent; this notice is {notice.status}")
    platform = await _platform(session, notice)
    if notice.approval_required:
        urls = await state.urls_of(session, notice.id)
        await state.move_all(session, found.clock, notice, urls, S.awaiting_approval, actor=actor)
        await record(
            session,
            found.clock,
            actor=actor,
            action="notice.submit",
            target=f"notice:{notice.id}",
            details={"category": notice.category},
        )
        return
    await delivery.queue_notice(session, found, notice, platform, actor=actor)


async def approve(session: AsyncSession, found: Services, notice: Notice, *, staff_id: str) -> None:
    """The second pair of eyes: someone other than the author approves; the notice is queued."""
    if notice.status != S.awaiting_approval:
        raise state.BadTransition(f"this notice is {notice.status}, not awaiting approval")
    if notice.created_by == staff_id:
        raise OwnNotice("four eyes: a colleague must approve the notice you wrote")
    platform = await _platform(session, notice)
    notice.approved_by, notice.approved_at = staff_id, found.clock.now()
    actor = f"staff:{staff_id}"
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.approve",
        target=f"notice:{notice.id}",
        details={"author": notice.created_by},
    )
    await delivery.queue_notice(session, found, notice, platform, actor=actor)


async def reject(session: AsyncSession, found: Services, notice: Notice, *, staff_id: str) -> None:
    """Send a notice awaiting approval back to its author as a draft."""
    if notice.status != S.awaiting_approval:
        raise state.BadTransition(f"this notice is {notice.status}, not awaiting approval")
    actor = f"staff:{staff_id}"
    urls = await state.urls_of(session, notice.id)
    await state.move_all(session, found.clock, notice, urls, S.draft, actor=actor)
    await record(
        session, found.clock, actor=actor, action="notice.reject", target=f"notice:{notice.id}"
    )


async def withdraw(
    session: AsyncSession, found: Services, notice: Notice, *, staff_id: str
) -> None:
    """Withdraw a notice (and its undecided URLs). A queued notice is then not delivered."""
    actor = f"staff:{staff_id}"
    urls = await state.urls_of(session, notice.id)
    await state.move_all(session, found.clock, notice, urls, S.withdrawn, actor=actor)
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.withdraw",
        target=f"notice:{notice.id}",
        details={"sent": notice.sent_at is not None},
    )


async def mark_submitted(
    session: AsyncSession, found: Services, notice: Notice, *, staff_id: str
) -> None:
    """A web-form notice staff pasted into the platform's form: now it is sent."""
    if notice.delivery != Delivery.web_form:
        raise Conflict("only web-form notices are marked submitted by hand")
    if notice.status != S.queued:
        raise state.BadTransition(f"this notice is {notice.status}, not queued")
    platform = await _platform(session, notice)
    await delivery.mark_sent(
        session, found, notice, platform, actor=f"staff:{staff_id}", details={"via": "web_form"}
    )


async def confirm_receipt(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    *,
    actor: str,
    details: dict[str, str | int | None] | None = None,
) -> None:
    """The platform confirmed receipt (staff saw it, or the platform said so itself)."""
    urls = await state.urls_of(session, notice.id)
    await state.move_all(
        session, found.clock, notice, urls, S.receipt_confirmed, actor=actor, details=details
    )


async def staff_outcome(
    session: AsyncSession,
    found: Services,
    notice: Notice,
    url: NoticeUrl,
    answer: state.Answer,
    *,
    staff_id: str,
) -> NoticeStatus:
    """An outcome staff record themselves (a re-check showed a 404, the platform phoned)."""
    actor = f"staff:{staff_id}"
    result = await state.record_answer(
        session, found.clock, found.keyring, notice, url, answer, via=AnswerVia.staff, actor=actor
    )
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.outcome",
        target=f"notice:{notice.id}",
        details={"url": url.position, "status": answer.status.value},
    )
    return result


# ---------------------------------------------------------------- four eyes, per category


async def approval_rules(session: AsyncSession) -> dict[str, ApprovalRule]:
    rows = await session.execute(select(ApprovalRule))
    return {rule.category: rule for rule in rows.scalars().all() if rule.four_eyes}


async def set_approval_rules(
    session: AsyncSession, found: Services, categories: list[str], *, staff_id: str
) -> list[str]:
    """The categories whose notices need four eyes, replacing the earlier set. Applies to
    notices created from now on."""
    allowed = notice_categories()
    for category in categories:
        if category not in allowed:
            raise Invalid(f"categories: unknown category {category!r}")
    chosen = sorted(set(categories))
    before = sorted(await approval_rules(session))
    now: datetime = found.clock.now()
    await session.execute(delete(ApprovalRule))
    for category in chosen:
        session.add(
            ApprovalRule(category=category, four_eyes=True, updated_by=staff_id, updated_at=now)
        )
    await session.flush()
    await record(
        session,
        found.clock,
        actor=f"staff:{staff_id}",
        action="notice.approval_rules",
        details={"before": ",".join(before), "after": ",".join(chosen)},
    )
    return chosen


async def notices_of_case(session: AsyncSession, case_id: str) -> list[Notice]:
    rows = await session.execute(
        select(Notice).where(col(Notice.case_id) == case_id).order_by(col(Notice.created_at))
    )
    return list(rows.scalars().all())
