"""Legal holds: a supervisor stops the purge for one case (a police investigation, a court
case, a complaint), with a reason, until they lift it.

The reason may describe the case's circumstances, so it is encrypted under the case key (and
goes with the case when it is finally purged). Placing and lifting each write a timeline entry
(with the reason, encrypted the same way) and an audit line (without it). The case row is
locked while a hold is placed, so a purge working on the case (which locks it too) finishes
first or waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.clock import Clock, as_utc
from helpline.core.crypto import Keyring, case_scope
from helpline.core.errors import Conflict, Invalid, NotFound
from helpline.retention.models import LegalHold
from helpline.triage.events import add_event, staff_actor

TABLE = "legal_holds"
MAX_REASON_CHARS = 2000
PLACED, LIFTED = "legal_hold", "legal_hold_lifted"  # timeline kinds


class AlreadyHeld(Conflict):
    code = "already_on_hold"


@dataclass(frozen=True)
class Hold:
    case_id: str
    placed_by: str
    placed_at: datetime
    reason: str


def _clean(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Invalid("a legal hold needs a reason")
    if len(reason) > MAX_REASON_CHARS:
        raise Invalid(f"a reason can have at most {MAX_REASON_CHARS} characters")
    return reason


async def place(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    case: Case,
    *,
    staff_id: str,
    reason: str,
) -> Hold:
    """Put `case` on legal hold in the caller's transaction."""
    reason = _clean(reason)
    # the purge locks the case row too: one waits for the other
    await session.execute(select(col(Case.id)).where(col(Case.id) == case.id).with_for_update())
    if await session.get(LegalHold, case.id) is not None:
        raise AlreadyHeld("this case is on legal hold already")
    cipher = await keyring.cipher(session, case_scope(case.id))
    now = clock.now()
    session.add(
        LegalHold(
            case_id=case.id,
            reason=cipher.encrypt(reason, table=TABLE, row_id=case.id, field="reason"),
            placed_by=staff_id,
            placed_at=now,
        )
    )
    await session.flush()
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind=PLACED,
        action="retention.hold_placed",
        text=reason,
        keyring=keyring,
    )
    return Hold(case.id, staff_id, now, reason)


async def lift(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    case: Case,
    *,
    staff_id: str,
    reason: str | None = None,
) -> None:
    """Lift the hold on `case`: the next purge treats it like any other case."""
    await session.execute(select(col(Case.id)).where(col(Case.id) == case.id).with_for_update())
    hold = await session.get(LegalHold, case.id)
    if hold is None:
        raise NotFound("this case is not on legal hold")
    placed_by = hold.placed_by
    await session.delete(hold)
    await session.flush()
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind=LIFTED,
        action="retention.hold_lifted",
        details={"placed_by": placed_by},
        text=_clean(reason) if reason else None,
        keyring=keyring if reason else None,
    )


async def hold_of(session: AsyncSession, keyring: Keyring, case_id: str) -> Hold | None:
    """The hold on a case, its reason decrypted; None if there is none."""
    hold = await session.get(LegalHold, case_id)
    if hold is None:
        return None
    cipher = await keyring.cipher(session, case_scope(case_id), create=False)
    reason = cipher.decrypt_text(hold.reason, table=TABLE, row_id=case_id, field="reason")
    return Hold(case_id, hold.placed_by, as_utc(hold.placed_at), reason)


async def held_among(session: AsyncSession, case_ids: list[str]) -> set[str]:
    """Which of these cases are on hold."""
    if not case_ids:
        return set()
    rows = await session.execute(
        select(col(LegalHold.case_id)).where(col(LegalHold.case_id).in_(case_ids))
    )
    return set(rows.scalars().all())
