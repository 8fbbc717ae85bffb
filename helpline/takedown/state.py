"""Moving notices and their URLs through the states of `states.py`, with history.

Every change of status goes through `move_notice` or `move_url`: they refuse a transition the
table does not allow (`BadTransition`, 409), stamp the notice's clock fields, and append a
`notice_history` row (and, for a notice of a case that still exists, a `case_events` row
`notice` for the case's timeline). History rows are only ever inserted.

`record_answer` is how a platform's decision on one URL lands (portal, API, e-mail confirmed
by staff, or staff themselves): the statement-of-reasons fields, the URL's new status, then
`settle_notice`, which derives the notice's status from its URLs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case, CaseEvent
from helpline.core.clock import Clock
from helpline.core.crypto import Keyring
from helpline.core.errors import Conflict
from helpline.core.ids import new_id
from helpline.stats import counters
from helpline.takedown.models import Notice, NoticeHistory, NoticeUrl, notice_scope
from helpline.takedown.states import (
    DECIDED,
    AnswerVia,
    NoticeStatus,
    can_move,
    notice_outcome,
)

S = NoticeStatus
Detail = str | int | float | bool | None
URLS_TABLE = "notice_urls"


class BadTransition(Conflict):
    code = "bad_transition"


def _details_json(details: Mapping[str, Detail] | None) -> str:
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))


async def _history(
    session: AsyncSession,
    *,
    notice: Notice,
    url_id: str | None,
    at: datetime,
    actor: str,
    from_status: str | None,
    to_status: str,
    details: Mapping[str, Detail] | None,
) -> NoticeHistory:
    last = await session.execute(
        select(func.max(col(NoticeHistory.seq))).where(col(NoticeHistory.notice_id) == notice.id)
    )
    row = NoticeHistory(
        id=new_id(),
        notice_id=notice.id,
        seq=(last.scalar_one() or 0) + 1,
        url_id=url_id,
        at=at,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        details=_details_json(details),
    )
    session.add(row)
    if url_id is None and notice.case_id is not None:
        # the case's timeline shows the notice's steps (values only)
        if await session.get(Case, notice.case_id) is not None:
            session.add(
                CaseEvent(
                    id=new_id(),
                    case_id=notice.case_id,
                    at=at,
                    actor=actor,
                    kind="notice",
                    details=_details_json(
                        {
                            "notice_id": notice.id,
                            "reference": notice.reference,
                            "from": from_status,
                            "to": to_status,
                        }
                    ),
                )
            )
    await session.flush()
    return row


async def record_created(
    session: AsyncSession, clock: Clock, notice: Notice, *, actor: str
) -> None:
    """The first history row of a new notice (and one per URL): nothing → draft."""
    now = clock.now()
    await _history(
        session,
        notice=notice,
        url_id=None,
        at=now,
        actor=actor,
        from_status=None,
        to_status=notice.status,
        details={"platform_id": notice.platform_id, "category": notice.category},
    )


async def note(
    session: AsyncSession,
    clock: Clock,
    notice: Notice,
    *,
    actor: str,
    details: Mapping[str, Detail],
) -> None:
    """A history row that is an event, not a change of status (a reminder sent, a delivery
    that failed, an escalation step): from and to are the current status."""
    await _history(
        session,
        notice=notice,
        url_id=None,
        at=clock.now(),
        actor=actor,
        from_status=notice.status,
        to_status=notice.status,
        details=details,
    )


def _stamp(notice: Notice, to: NoticeStatus, now: datetime) -> None:
    if to is S.queued:
        notice.queued_at = now
    elif to is S.sent and notice.sent_at is None:
        notice.sent_at = now
    elif to is S.receipt_confirmed and notice.receipt_confirmed_at is None:
        notice.receipt_confirmed_at = now
    if to in DECIDED:
        notice.decided_at = now
    if to in DECIDED or to is S.withdrawn:
        notice.closed_at = now
    elif notice.closed_at is not None:
        notice.closed_at = None  # reopened (a late question, say)


async def move_notice(
    session: AsyncSession,
    clock: Clock,
    notice: Notice,
    to: NoticeStatus | str,
    *,
    actor: str,
    details: Mapping[str, Detail] | None = None,
) -> None:
    """Move a notice to `to`, or raise `BadTransition` if the table does not allow it."""
    target = NoticeStatus(to)
    if not can_move(notice.status, target):
        raise BadTransition(
            f"a notice that is {notice.status} cannot become {target.value}",
            current=notice.status,
        )
    now = clock.now()
    before = notice.status
    notice.status, notice.updated_at = target.value, now
    _stamp(notice, target, now)
    await counters.count_notice_moved(session, notice, before, at=now)
    await _history(
        session,
        notice=notice,
        url_id=None,
        at=now,
        actor=actor,
        from_status=before,
        to_status=target.value,
        details=details,
    )


async def move_url(
    session: AsyncSession,
    clock: Clock,
    notice: Notice,
    url: NoticeUrl,
    to: NoticeStatus | str,
    *,
    actor: str,
    details: Mapping[str, Detail] | None = None,
) -> None:
    """Move one URL of `notice` to `to`, or raise `BadTransition`."""
    target = NoticeStatus(to)
    if not can_move(url.status, target):
        raise BadTransition(
            f"a URL that is {url.status} cannot become {target.value}", current=url.status
        )
    now = clock.now()
    before = url.status
    url.status, url.updated_at = target.value, now
    await _history(
        session,
        notice=notice,
        url_id=url.id,
        at=now,
        actor=actor,
        from_status=before,
        to_status=target.value,
        details={"position": url.position, **dict(details or {})},
    )


async def move_all(
    session: AsyncSession,
    clock: Clock,
    notice: Notice,
    urls: Sequence[NoticeUrl],
    to: NoticeStatus,
    *,
    actor: str,
    details: Mapping[str, Detail] | None = None,
) -> None:
    """Move the notice and every URL that can follow it (withdrawn or decided URLs stay)."""
    await move_notice(session, clock, notice, to, actor=actor, details=details)
    for url in urls:
        if can_move(url.status, to):
            await move_url(session, clock, notice, url, to, actor=actor)


async def urls_of(session: AsyncSession, notice_id: str) -> list[NoticeUrl]:
    rows = await session.execute(
        select(NoticeUrl)
        .where(col(NoticeUrl.notice_id) == notice_id)
        .order_by(col(NoticeUrl.position))
    )
    return list(rows.scalars().all())


async def settle_notice(
    session: AsyncSession, clock: Clock, notice: Notice, *, actor: str
) -> NoticeStatus:
    """Bring the notice's status in line with its URLs: a decision once every URL is decided
    (`states.notice_outcome`), `more_info_requested` while some URL waits on a question."""
    urls = await urls_of(session, notice.id)
    outcome = notice_outcome(u.status for u in urls)
    if outcome is None and any(u.status == S.more_info_requested for u in urls):
        outcome = S.more_info_requested
    if outcome is not None and outcome != notice.status and can_move(notice.status, outcome):
        await move_notice(session, clock, notice, outcome, actor=actor)
    return NoticeStatus(notice.status)


@dataclass
class Answer:
    """A platform's decision on one URL (DSA art. 17 statement of reasons, Transparency
    Database field names). `status` is honoured, partly_honoured, declined or
    more_info_requested."""

    status: NoticeStatus
    decision_visibility: str | None = None
    decision_account: str | None = None
    decision_ground: str | None = None
    legal_ground: str | None = None
    explanation: str | None = None
    automated_decision: str | None = None
    territorial_scope: list[str] = field(default_factory=list)
    puid: str | None = None


ANSWER_STATUSES = frozenset({S.honoured, S.partly_honoured, S.declined, S.more_info_requested})


async def record_answer(
    session: AsyncSession,
    clock: Clock,
    keyring: Keyring,
    notice: Notice,
    url: NoticeUrl,
    answer: Answer,
    *,
    via: AnswerVia,
    actor: str,
) -> NoticeStatus:
    """Store a decision on one URL, move the URL, settle the notice; returns the notice's
    status. A notice still `queued` (a web-form notice the platform answers before staff
    marked it submitted) cannot be answered: `BadTransition`."""
    if answer.status not in ANSWER_STATUSES:
        raise BadTransition(f"{answer.status.value} is not an answer")
    if notice.status in (S.draft, S.awaiting_approval, S.queued, S.withdrawn):
        raise BadTransition(f"a notice that is {notice.status} cannot be answered")
    await move_url(
        session,
        clock,
        notice,
        url,
        answer.status,
        actor=actor,
        details={
            "via": via.value,
            "decision_visibility": answer.decision_visibility,
            "decision_ground": answer.decision_ground,
        },
    )
    url.decision_visibility = answer.decision_visibility
    url.decision_account = answer.decision_account
    url.decision_ground = answer.decision_ground
    url.legal_ground = answer.legal_ground
    url.automated_decision = answer.automated_decision
    url.territorial_scope = ",".join(answer.territorial_scope) or None
    url.puid = answer.puid
    url.answered_at, url.answered_via = clock.now(), via.value
    if answer.explanation:
        cipher = await keyring.cipher(session, notice_scope(notice.id))
        url.explanation = cipher.encrypt(
            answer.explanation, table=URLS_TABLE, row_id=url.id, field="explanation"
        )
    else:
        url.explanation = None
    await session.flush()
    return await settle_notice(session, clock, notice, actor=actor)
