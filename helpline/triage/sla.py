"""Service levels: the deadline each open case runs against, and the job that records and
announces missed ones.

- `first_response`: a case nobody on staff has written to yet, counted from `queued_at`;
- `next_response`: a victim's message staff have not answered, counted from `awaiting_since`.

Targets are minutes per priority (`HELPLINE_SLA_FIRST_RESPONSE_MINUTES`,
`HELPLINE_SLA_NEXT_RESPONSE_MINUTES`). Every deadline is read against the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import OPEN_STATUSES, Case, CaseStatus
from helpline.core.clock import as_utc
from helpline.core.config import Settings
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.triage.models import SlaBreach

log = logging.getLogger("helpline.triage.sla")

FIRST_RESPONSE = "first_response"
NEXT_RESPONSE = "next_response"
JOB_NAME = "sla-breaches"
JOB_INTERVAL = timedelta(seconds=15)


@dataclass(frozen=True)
class SlaTargets:
    """Minutes per priority level (1 urgent .. 4 low)."""

    first_response: Mapping[int, int]
    next_response: Mapping[int, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaTargets:
        return cls(settings.sla_first_response, settings.sla_next_response)

    def minutes(self, kind: str, priority: int) -> int:
        table = self.first_response if kind == FIRST_RESPONSE else self.next_response
        # a priority outside 1-4 cannot be stored through the API; be lenient, not wrong
        return table.get(priority, max(table.values()))

    def as_json(self) -> dict[str, dict[str, int]]:
        return {
            "first_response_minutes": {str(k): v for k, v in sorted(self.first_response.items())},
            "next_response_minutes": {str(k): v for k, v in sorted(self.next_response.items())},
        }


@dataclass(frozen=True)
class SlaState:
    kind: str | None
    due_at: datetime | None
    breached: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "breached": self.breached,
        }


NO_DEADLINE = SlaState(None, None, False)


def sla_state(case: Case, now: datetime, targets: SlaTargets) -> SlaState:
    """Which deadline the case runs against now, when it falls, and whether it has passed."""
    if case.status == CaseStatus.closed:
        return NO_DEADLINE
    if case.first_response_at is None:
        kind, since = FIRST_RESPONSE, as_utc(case.queued_at)
    elif case.awaiting_since is not None:
        kind, since = NEXT_RESPONSE, as_utc(case.awaiting_since)
    else:
        return NO_DEADLINE
    due_at = since + timedelta(minutes=targets.minutes(kind, case.priority))
    return SlaState(kind, due_at, due_at <= now)


async def running_late(session: AsyncSession, now: datetime, targets: SlaTargets) -> list[Case]:
    """Open cases past their deadline (the database narrows by the shortest targets; the
    exact deadline per priority is `sla_state`'s)."""
    shortest_first = timedelta(minutes=min(targets.first_response.values()))
    shortest_next = timedelta(minutes=min(targets.next_response.values()))
    rows = await session.execute(
        select(Case).where(
            col(Case.status).in_(OPEN_STATUSES),
            or_(
                and_(
                    col(Case.first_response_at).is_(None),
                    col(Case.queued_at) <= now - shortest_first,
                ),
                and_(
                    col(Case.first_response_at).is_not(None),
                    col(Case.awaiting_since).is_not(None),
                    col(Case.awaiting_since) <= now - shortest_next,
                ),
            ),
        )
    )
    return [case for case in rows.scalars() if sla_state(case, now, targets).breached]


@dataclass(frozen=True)
class Breach:
    case_id: str
    kind: str
    priority: int
    due_at: datetime

    def frame(self) -> dict[str, Any]:
        return {
            "type": "sla_breach",
            "case_id": self.case_id,
            "kind": self.kind,
            "priority": self.priority,
        }


async def record_breaches(
    session: AsyncSession, now: datetime, targets: SlaTargets
) -> list[Breach]:
    """Record every missed deadline not recorded yet; returns the ones new in this call. The
    unique (case, kind, deadline) makes it safe for several instances at once: a breach
    another transaction recorded first is not new here."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new: list[Breach] = []
    for case in await running_late(session, now, targets):
        state = sla_state(case, now, targets)
        assert state.kind is not None and state.due_at is not None
        inserted = await session.execute(
            insert(SlaBreach)
            .values(
                id=new_id(),
                case_id=case.id,
                kind=state.kind,
                priority=case.priority,
                due_at=state.due_at,
                noticed_at=now,
            )
            .on_conflict_do_nothing(index_elements=["case_id", "kind", "due_at"])
            .returning(col(SlaBreach.id))
        )
        if inserted.first() is not None:
            new.append(Breach(case.id, state.kind, case.priority, state.due_at))
    return new


def local_midnight(now: datetime, timezone: str) -> datetime:
    """The start of today in the helpline's time zone, as a UTC moment."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    return as_utc(datetime.combine(today, time(0), tzinfo=zone))


async def breaches_today(session: AsyncSession, now: datetime, timezone: str) -> int:
    count = await session.execute(
        select(func.count())
        .select_from(SlaBreach)
        .where(col(SlaBreach.noticed_at) >= local_midnight(now, timezone))
    )
    return int(count.scalar_one())


def breach_watch(found: Services, publish_to: str) -> Callable[[datetime], Awaitable[None]]:
    """The scheduled job: record new breaches, then announce each once on `publish_to`."""

    async def watch(now: datetime) -> None:
        targets = SlaTargets.from_settings(found.settings)
        async with found.db.transaction() as session:
            new = await record_breaches(session, now, targets)
        for breach in new:  # committed: listeners may look them up
            await found.bus.publish(publish_to, breach.frame())
        if new:
            log.info("sla breaches recorded", extra={"count": len(new)})

    return watch
