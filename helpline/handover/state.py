"""Moving a handover through the states of `states.py`, with history.

Every change of status goes through `move`: it refuses a transition the table does not allow
(`BadTransition`, 409), stamps the handover, appends a `handover_history` row, a case event
`handover` (for the case's timeline; values only: partner name, kind, status) while the case
exists, and an audit line `handover.<status>`. History rows are only ever inserted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.errors import Conflict
from helpline.core.ids import new_id
from helpline.handover.models import Handover, HandoverHistory, Partner
from helpline.handover.states import FINAL, HandoverStatus, can_move
from helpline.stats import counters
from helpline.triage.events import add_event

Detail = str | int | float | bool | None
EVENT_KIND = "handover"  # case_events.kind of every step


class BadTransition(Conflict):
    code = "bad_transition"


def _details_json(details: Mapping[str, Detail] | None) -> str:
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))


async def move(
    session: AsyncSession,
    clock: Clock,
    handover: Handover,
    to: HandoverStatus,
    *,
    actor: str,
    details: Mapping[str, Detail] | None = None,
) -> HandoverHistory:
    """Move `handover` to `to` in the caller's transaction (see the module docstring).
    `actor`: `victim`, `staff:<id>`, `partner` or `system`."""
    source = HandoverStatus(handover.status)
    if not can_move(source, to):
        raise BadTransition(f"a handover that is {source.value} cannot become {to.value}")
    now = clock.now()
    handover.status = to.value
    handover.updated_at = now
    stamp: dict[HandoverStatus, str] = {
        HandoverStatus.approved: "approved_at",
        HandoverStatus.sealed: "sealed_at",
        HandoverStatus.delivered: "delivered_at",
        HandoverStatus.downloaded: "downloaded_at",
    }
    if to in stamp and getattr(handover, stamp[to]) is None:
        setattr(handover, stamp[to], now)
    if to in FINAL:
        handover.closed_at = now
    await counters.count_handover_moved(session, handover, at=now)
    row = await _history(
        session, handover, at=now, actor=actor, source=source, target=to, details=details
    )
    audit_details: dict[str, Detail] = {"handover": handover.id, "from": source.value}
    audit_details.update(details or {})
    case = await session.get(Case, handover.case_id) if handover.case_id else None
    if case is not None:
        partner = await session.get(Partner, handover.partner_id)
        await add_event(
            session,
            clock,
            case,
            actor=actor,
            kind=EVENT_KIND,
            action=f"handover.{to.value}",
            details={
                "handover": handover.id,
                "reference": handover.reference,
                "partner": partner.name if partner else None,
                "partner_kind": handover.partner_kind,
                "status": to.value,
            },
        )
    else:
        await record(
            session,
            clock,
            actor=actor,
            action=f"handover.{to.value}",
            target=f"handover:{handover.id}",
            details=audit_details,
        )
    await session.flush()
    return row


async def note(
    session: AsyncSession,
    clock: Clock,
    handover: Handover,
    *,
    actor: str,
    event: str,
    details: Mapping[str, Detail] | None = None,
) -> HandoverHistory:
    """Record an event that changes no status (consent recorded awaiting confirmation, a link
    reissued, a failed delivery attempt): a history row from = to, `details.event`, plus an
    audit line `handover.<event>`."""
    status = HandoverStatus(handover.status)
    merged: dict[str, Detail] = {"event": event}
    merged.update(details or {})
    row = await _history(
        session,
        handover,
        at=clock.now(),
        actor=actor,
        source=status,
        target=status,
        details=merged,
    )
    await record(
        session,
        clock,
        actor=actor,
        action=f"handover.{event}",
        target=f"handover:{handover.id}",
        details={"handover": handover.id, **dict(details or {})},
    )
    return row


async def _history(
    session: AsyncSession,
    handover: Handover,
    *,
    at: datetime,
    actor: str,
    source: HandoverStatus | None,
    target: HandoverStatus,
    details: Mapping[str, Detail] | None,
) -> HandoverHistory:
    last = await session.execute(
        select(func.max(col(HandoverHistory.seq))).where(
            col(HandoverHistory.handover_id) == handover.id
        )
    )
    row = HandoverHistory(
        id=new_id(),
        handover_id=handover.id,
        seq=(last.scalar_one() or 0) + 1,
        at=at,
        actor=actor,
        from_status=source.value if source else None,
        to_status=target.value,
        details=_details_json(details),
    )
    session.add(row)
    await session.flush()
    return row


async def history(session: AsyncSession, handover_id: str) -> list[HandoverHistory]:
    rows = await session.execute(
        select(HandoverHistory)
        .where(col(HandoverHistory.handover_id) == handover_id)
        .order_by(col(HandoverHistory.seq))
    )
    return list(rows.scalars().all())
