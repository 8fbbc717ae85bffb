"""The notice clock: due = sent + the platform's SLA, reminders, and the escalation ladder.

The job `notice-clock` runs every minute (one instance at a time, under the scheduler's
lease) and, against the injected clock, for each notice that waits on the platform:

- `notice_reminder_before_hours` before the deadline: a reminder mail to the platform;
- at the deadline: the notice and its undecided URLs become `no_response`;
- `notice_reminder_after_hours` after it: an "overdue" reminder;
- `notice_escalation_after_hours` after it: the first escalation step is drafted for staff
  (escalation.py), and each next step `notice_escalation_step_hours` after the previous one
  was approved or dismissed, while the platform still has not decided.

Each reminder is sent once (`reminded_before_at` / `reminded_after_at`, and an idempotency key
per reminder in the outbox); a notice that is decided, withdrawn or waiting on our answer to a
question (`more_info_requested`) is left alone. Every step is in the notice's history.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import as_utc
from helpline.core.services import Services
from helpline.takedown import builder, delivery, escalation, state
from helpline.takedown.models import Notice, Platform, notice_scope
from helpline.takedown.states import NoticeStatus

log = logging.getLogger("helpline.takedown")

JOB_NAME = "notice-clock"
JOB_INTERVAL = timedelta(minutes=1)
S = NoticeStatus
WAITING = (S.sent, S.receipt_confirmed)  # before the deadline
RUNNING = (S.sent, S.receipt_confirmed, S.no_response)  # the clock runs on these


def clock_json(notice: Notice, now: datetime) -> dict[str, Any]:
    """A notice's clock for the console: due, overdue, seconds left (negative when late)."""
    if notice.due_at is None:
        return {"due_at": None, "overdue": False, "seconds_left": None, "running": False}
    due = as_utc(notice.due_at)
    running = notice.status in RUNNING
    left = int((due - now).total_seconds())
    return {
        "due_at": builder.iso(due),
        "overdue": running and left <= 0,
        "seconds_left": left if running else None,
        "running": running,
    }


async def _links(session: AsyncSession, found: Services, notice: Notice) -> str:
    words = builder.texts(notice.language)["labels"]
    cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
    token = await delivery.current_portal_token(session, found, notice, cipher)
    if token is None:
        token = await delivery.issue_portal_token(session, found, notice.id)
    return f"{words['portal']} {delivery.portal_link(found, token)}\n{words['reply']}"


async def _remind(
    session: AsyncSession, found: Services, notice: Notice, platform: Platform, which: str
) -> None:
    now = found.clock.now()
    if which == "before":
        notice.reminded_before_at = now
    else:
        notice.reminded_after_at = now
    if not platform.contact_email:
        await state.note(
            session,
            found.clock,
            notice,
            actor="system",
            details={"event": f"reminder_{which}_skipped", "reason": "no_contact_email"},
        )
        return
    reminders = builder.texts(notice.language)["reminders"]
    values = {
        "reference": notice.reference,
        "sent": escalation.when(notice.sent_at),
        "due": escalation.when(notice.due_at),
        "links": await _links(session, found, notice),
    }
    await delivery.queue_platform_mail(
        session,
        found,
        notice,
        to=platform.contact_email,
        subject=str(reminders[f"{which}_subject"]).format(**values),
        text=str(reminders[f"{which}_body"]).format(**values),
        purpose=f"reminder_{which}",
    )
    await state.note(
        session, found.clock, notice, actor="system", details={"event": f"reminder_{which}"}
    )


async def tick(found: Services, now: datetime) -> list[Notice]:
    """One run of the clock at `now`; returns the notices it changed."""
    settings = found.settings
    before = timedelta(hours=settings.notice_reminder_before_hours)
    after = timedelta(hours=settings.notice_reminder_after_hours)
    ladder_after = timedelta(hours=settings.notice_escalation_after_hours)
    changed: list[Notice] = []
    async with found.db.transaction() as session:
        query = (
            select(Notice)
            .where(col(Notice.status).in_([s.value for s in RUNNING]))
            .where(col(Notice.due_at).is_not(None))
            .order_by(col(Notice.due_at))
        )
        if found.db.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        notices = list((await session.execute(query)).scalars().all())
        for notice in notices:
            platform = await session.get(Platform, notice.platform_id)
            if platform is None or notice.due_at is None:
                continue
            due = as_utc(notice.due_at)
            touched = False
            if (
                before
                and notice.reminded_before_at is None
                and notice.status in WAITING
                and due - before <= now < due
            ):
                await _remind(session, found, notice, platform, "before")
                touched = True
            if now >= due and notice.status in WAITING:
                urls = await state.urls_of(session, notice.id)
                await state.move_all(
                    session,
                    found.clock,
                    notice,
                    urls,
                    S.no_response,
                    actor="system",
                    details={"due_at": builder.iso(due)},
                )
                touched = True
            if (
                notice.status == S.no_response
                and notice.reminded_after_at is None
                and now >= due + after
            ):
                await _remind(session, found, notice, platform, "after")
                touched = True
            if notice.status == S.no_response and now >= due + ladder_after:
                step = escalation.next_step(
                    await escalation.escalations_of(session, notice.id),
                    platform,
                    now,
                    settings.notice_escalation_step_hours,
                )
                if step is not None:
                    await escalation.draft_step(
                        session, found, notice, platform, step, actor="system"
                    )
                    touched = True
            if touched:
                changed.append(notice)
    for notice in changed:
        await delivery.announce(found, notice)
    if changed:
        found.outbox.wake()
    return changed


def clock_job(found: Services) -> Callable[[datetime], Awaitable[None]]:
    async def run(now: datetime) -> None:
        await tick(found, now)

    return run
