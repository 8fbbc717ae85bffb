"""When each kind of data is due for the purge (docs/privacy.md says the same in words).

Everything of a case is counted from the case's **closure**: `cases.ended_at` for a closed
case, `cases.last_activity_at` for a case left open. A kind is due once `closure + period` has
passed (`<= now`):

- `messages` — chat and e-mail messages, with what the e-mail side keeps about them (delivery
  rows of our replies, the de-duplication keys of received mails, the thread's subject,
  Message-IDs and the victim's address) and the case's finished outbox entries.
- `evidence` — items, their custody entries and their blobs in the vault.
- `callbacks` — callback requests (the number itself is deleted much earlier by the callback
  sweep); a request is due only once its last window and its last change are past too.
- `case` — the rest: the case row, its key (crypto-shredding whatever is left), events,
  notes, sessions, e-mail threads and tokens, SLA rows, its handovers and its notices that
  never left the helpline. Due when every kind of the case is: `closure + max(periods)`.

Notices and handovers have their own clocks, counted from their own closure (`closed_at`: a
notice decided or withdrawn, a handover in a final status), or from their last change
(`updated_at`) while they are not closed (a notice without response, a proposal nobody
answered). A notice outlives its case (its own key scope `notice:<id>`); a handover does not.

A case under legal hold has nothing due: not its messages, evidence, callbacks, handovers, nor
the notices still linked to it. Audit lines are due `retention_audit_days` after they were
written; quarantined mail is purged by the e-mail package's own job
(`helpline.intake.email.quarantine.purge_job`), with `retention_quarantine_days`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case, CaseStatus, Message
from helpline.core.clock import as_utc
from helpline.core.config import Settings
from helpline.evidence.models import EvidenceItem
from helpline.handover.models import Handover
from helpline.intake.callback.models import CallbackRequest
from helpline.retention.models import LegalHold
from helpline.takedown.models import Notice
from helpline.takedown.states import NoticeStatus


class Kind(StrEnum):
    """What the purge removes, in the order a case loses it."""

    messages = "messages"
    evidence = "evidence"
    callbacks = "callbacks"
    case = "case"
    notices = "notices"
    handovers = "handovers"
    audit = "audit"


CASE_KINDS = (Kind.messages, Kind.evidence, Kind.callbacks, Kind.case)
# a notice that never left the helpline is case work, not a record of what a platform was
# told: it goes with its case
UNSENT_NOTICES = (NoticeStatus.draft.value, NoticeStatus.awaiting_approval.value)


@dataclass(frozen=True)
class Periods:
    messages: timedelta
    evidence: timedelta
    callbacks: timedelta
    notices: timedelta
    handovers: timedelta
    audit: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Periods:
        return cls(
            messages=timedelta(days=settings.retention_messages_days),
            evidence=timedelta(days=settings.retention_evidence_days),
            callbacks=timedelta(days=settings.retention_callback_days),
            notices=timedelta(days=settings.retention_notices_days),
            handovers=timedelta(days=settings.retention_handover_days),
            audit=timedelta(days=settings.retention_audit_days),
        )

    @property
    def case(self) -> timedelta:
        return max(self.messages, self.evidence, self.callbacks)

    def of(self, kind: Kind) -> timedelta:
        period: timedelta = getattr(self, kind.value)
        return period


# ---------------------------------------------------------------- SQL conditions


def case_closure() -> ColumnElement[Any]:
    """The moment a case's clocks count from, as an SQL expression on `cases`."""
    return sql_case(
        (
            and_(col(Case.status) == CaseStatus.closed.value, col(Case.ended_at).is_not(None)),
            col(Case.ended_at),
        ),
        else_=col(Case.last_activity_at),
    )


def closure_of(case: Case) -> datetime:
    """The same in Python, for one case."""
    if case.status == CaseStatus.closed and case.ended_at is not None:
        return as_utc(case.ended_at)
    return as_utc(case.last_activity_at)


def case_not_held() -> ColumnElement[bool]:
    return not_(exists().where(col(LegalHold.case_id) == col(Case.id)))


def linked_case_not_held(case_id: Any) -> ColumnElement[bool]:
    """For a notice or handover: no case any more, or a case that is not on hold."""
    return or_(case_id.is_(None), not_(exists().where(col(LegalHold.case_id) == case_id)))


def callback_due(periods: Periods, now: datetime) -> ColumnElement[bool]:
    """A callback request row past its own time (besides its case's closure)."""
    cutoff = now - periods.callbacks
    return and_(
        col(CallbackRequest.updated_at) <= cutoff,
        col(CallbackRequest.last_window_end) <= cutoff,
    )


def case_kind_condition(
    kind: Kind, periods: Periods, horizon: datetime, *, include_held: bool = False
) -> ColumnElement[bool]:
    """Cases (not on hold, unless `include_held`) that have something of `kind` due by
    `horizon`."""
    closed_by = case_closure() <= horizon - periods.of(kind)
    held_ok = true() if include_held else case_not_held()
    if kind is Kind.messages:
        has = exists().where(col(Message.case_id) == col(Case.id))
    elif kind is Kind.evidence:
        has = exists().where(col(EvidenceItem.case_id) == col(Case.id))
    elif kind is Kind.callbacks:
        has = exists().where(
            col(CallbackRequest.case_id) == col(Case.id), callback_due(periods, horizon)
        )
    elif kind is Kind.case:
        return and_(closed_by, held_ok)
    else:  # pragma: no cover - not a kind of a case
        raise ValueError(kind)
    return and_(closed_by, has, held_ok)


def notice_closure() -> ColumnElement[Any]:
    return func.coalesce(col(Notice.closed_at), col(Notice.updated_at))


def handover_closure() -> ColumnElement[Any]:
    return func.coalesce(col(Handover.closed_at), col(Handover.updated_at))


def notice_due(
    periods: Periods, horizon: datetime, *, include_held: bool = False
) -> ColumnElement[bool]:
    held_ok = true() if include_held else linked_case_not_held(col(Notice.case_id))
    return and_(notice_closure() <= horizon - periods.notices, held_ok)


def handover_due(
    periods: Periods, horizon: datetime, *, include_held: bool = False
) -> ColumnElement[bool]:
    held_ok = true() if include_held else linked_case_not_held(col(Handover.case_id))
    return and_(handover_closure() <= horizon - periods.handovers, held_ok)


def notice_due_at(notice: Notice, periods: Periods) -> datetime:
    return as_utc(notice.closed_at or notice.updated_at) + periods.notices


def handover_due_at(handover: Handover, periods: Periods) -> datetime:
    return as_utc(handover.closed_at or handover.updated_at) + periods.handovers


# ---------------------------------------------------------------- one case's schedule


@dataclass(frozen=True)
class Due:
    kind: Kind
    at: datetime

    def json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "at": self.at.isoformat()}


def case_schedule(case: Case, periods: Periods) -> list[Due]:
    """When each kind of a case falls due (whether or not the case holds any of it)."""
    closure = closure_of(case)
    return [Due(kind, closure + periods.of(kind)) for kind in CASE_KINDS]


def select_due_cases(kind: Kind, periods: Periods, now: datetime, *, limit: int) -> Any:
    """The ids of cases with something of `kind` due at `now`, oldest id first."""
    return (
        select(col(Case.id))
        .where(case_kind_condition(kind, periods, now))
        .order_by(col(Case.id))
        .limit(limit)
    )


# ---------------------------------------------------------------- upcoming purges


@dataclass
class CaseOutlook:
    """What of one case falls due by some horizon, and when."""

    case: Case
    held: bool
    due: list[Due]
    notices: list[tuple[Notice, datetime]]
    handovers: list[tuple[Handover, datetime]]


async def _case_ids_with(session: AsyncSession, model: Any, ids: list[str]) -> set[str]:
    rows = await session.execute(
        select(col(model.case_id)).where(col(model.case_id).in_(ids)).distinct()
    )
    return set(rows.scalars().all())


async def case_outlooks(
    session: AsyncSession,
    periods: Periods,
    horizon: datetime,
    *,
    case_ids: list[str] | None = None,
    assigned_to: str | None = None,
    limit: int = 500,
) -> list[CaseOutlook]:
    """Cases with something due by `horizon` (held ones too, marked), soonest first: all, only
    `case_ids`, or only those assigned to `assigned_to`."""
    notices_due = exists().where(
        col(Notice.case_id) == col(Case.id), notice_due(periods, horizon, include_held=True)
    )
    handovers_due = exists().where(
        col(Handover.case_id) == col(Case.id), handover_due(periods, horizon, include_held=True)
    )
    query = select(Case).where(
        or_(
            *(case_kind_condition(k, periods, horizon, include_held=True) for k in CASE_KINDS),
            notices_due,
            handovers_due,
        )
    )
    if case_ids is not None:
        query = query.where(col(Case.id).in_(case_ids))
    if assigned_to is not None:
        query = query.where(col(Case.assigned_staff_id) == assigned_to)
    query = query.order_by(case_closure(), col(Case.id)).limit(limit)
    cases = list((await session.execute(query)).scalars().all())
    if not cases:
        return []
    ids = [case.id for case in cases]
    with_messages = await _case_ids_with(session, Message, ids)
    with_evidence = await _case_ids_with(session, EvidenceItem, ids)
    callbacks: dict[str, datetime] = {}
    for row in (
        await session.execute(select(CallbackRequest).where(col(CallbackRequest.case_id).in_(ids)))
    ).scalars():
        latest = max(as_utc(row.updated_at), as_utc(row.last_window_end))
        callbacks[row.case_id] = max(callbacks.get(row.case_id, latest), latest)
    held = set(
        (
            await session.execute(
                select(col(LegalHold.case_id)).where(col(LegalHold.case_id).in_(ids))
            )
        ).scalars()
    )
    notices = (
        (
            await session.execute(
                select(Notice).where(
                    col(Notice.case_id).in_(ids), notice_due(periods, horizon, include_held=True)
                )
            )
        )
        .scalars()
        .all()
    )
    handovers = (
        (
            await session.execute(
                select(Handover).where(
                    col(Handover.case_id).in_(ids),
                    handover_due(periods, horizon, include_held=True),
                )
            )
        )
        .scalars()
        .all()
    )
    outlooks = []
    for case in cases:
        due = []
        for entry in case_schedule(case, periods):
            if entry.kind is Kind.messages and case.id not in with_messages:
                continue
            if entry.kind is Kind.evidence and case.id not in with_evidence:
                continue
            if entry.kind is Kind.callbacks:
                if case.id not in callbacks:
                    continue
                entry = Due(entry.kind, max(entry.at, callbacks[case.id] + periods.callbacks))
            if entry.at <= horizon:
                due.append(entry)
        outlooks.append(
            CaseOutlook(
                case=case,
                held=case.id in held,
                due=due,
                notices=[(n, notice_due_at(n, periods)) for n in notices if n.case_id == case.id],
                handovers=[
                    (h, handover_due_at(h, periods)) for h in handovers if h.case_id == case.id
                ],
            )
        )
    return outlooks


async def unlinked_notices_due(
    session: AsyncSession, periods: Periods, horizon: datetime, *, limit: int = 500
) -> list[tuple[Notice, datetime]]:
    """Notices whose case is gone, due by `horizon`."""
    rows = (
        await session.execute(
            select(Notice)
            .where(col(Notice.case_id).is_(None), notice_due(periods, horizon))
            .order_by(notice_closure(), col(Notice.id))
            .limit(limit)
        )
    ).scalars()
    return [(notice, notice_due_at(notice, periods)) for notice in rows]
