"""Working a case's triage: category and risk flags, priority, status, release, transfer,
assignment and closing.

Plain functions on a session, in the caller's transaction. Every change writes a `case_events`
row and an audit line (`helpline.triage.events`); the caller rings the bus after the commit
(`QUEUE_CHANNEL` with `queue_changed`, `CONSOLE_CHANNEL` with `case_changed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from helpline.cases.models import Case, CaseEvent, CaseStatus
from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.crypto import Keyring
from helpline.core.errors import Conflict, Forbidden, Invalid
from helpline.core.services import Services
from helpline.evidence.service import HOTLINE_REFERRAL, mark_possible_minor
from helpline.staff.models import Staff
from helpline.stats import counters
from helpline.triage.events import add_event, event_details, event_text, staff_actor
from helpline.triage.rules import compute_priority
from helpline.triage.vocabulary import (
    CATEGORIES,
    FLAGS,
    OUTCOMES,
    POSSIBLE_MINOR,
    SETTABLE_STATUSES,
    Priority,
    parse_flags,
    store_flags,
)

CONSOLE_CHANNEL = "console"  # case_changed and sla_breach, for staff consoles only
MAX_NOTE_CHARS = 4000
MAX_REASON_CHARS = 1000


class CaseClosed(Conflict):
    code = "case_closed"


class NotClaimed(Conflict):
    code = "not_claimed"


def _open(case: Case) -> None:
    if case.status == CaseStatus.closed:
        raise CaseClosed("the case is closed")


def _text(value: str | None, *, what: str, limit: int, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise Invalid(f"{what}: write a few words (1-{limit} characters)")
        return None
    if len(text) > limit:
        raise Invalid(f"{what}: at most {limit} characters")
    return text


async def _colleague(session: AsyncSession, staff_id: str) -> Staff:
    colleague = await session.get(Staff, staff_id)
    if colleague is None or colleague.disabled:
        raise Invalid("to: no such colleague")
    assert isinstance(colleague, Staff)
    return colleague


# ---------------------------------------------------------------- category, flags, priority


@dataclass(frozen=True)
class TriageResult:
    changed: bool
    referral: str | None = None  # set when the case was just marked "possible minor depicted"
    destroyed: int = 0  # evidence files destroyed by the minor rule


KEEP: Any = object()  # "leave as it is", for the optional arguments of `set_triage`


async def set_triage(
    session: AsyncSession,
    found: Services,
    case: Case,
    *,
    staff_id: str,
    category: str | None = KEEP,
    risk_flags: list[str] = KEEP,
) -> TriageResult:
    """Set the category and/or the risk flags; the priority follows unless staff overrode it.
    Category `possible_minor` applies the evidence rule (files destroyed, nothing stored or
    fetched from now on) and returns the hotline referral."""
    new_category = case.category if category is KEEP else category
    if new_category is not None and new_category not in CATEGORIES:
        raise Invalid(f"category: {new_category!r} is not a category")
    old_flags = parse_flags(case.risk_flags)
    new_flags = old_flags if risk_flags is KEEP else sorted(set(risk_flags))
    unknown = [flag for flag in new_flags if flag not in FLAGS]
    if unknown:
        raise Invalid(f"risk_flags: {unknown[0]!r} is not a risk flag")
    if new_category == case.category and new_flags == old_flags:
        return TriageResult(changed=False)
    actor = staff_actor(staff_id)
    old_category, old_priority = case.category, case.priority
    case.category, case.risk_flags = new_category, store_flags(new_flags)
    if case.priority_override is None:
        case.priority = int(compute_priority(new_category, new_flags))
    await add_event(
        session,
        found.clock,
        case,
        actor=actor,
        kind="triage",
        action="case.triage",
        details={
            "category": new_category,
            "previous_category": old_category,
            "risk_flags": new_flags,
            "previous_risk_flags": old_flags,
            "priority": case.priority,
            "previous_priority": old_priority,
        },
    )
    if new_category == POSSIBLE_MINOR and old_category != POSSIBLE_MINOR:
        destroyed = await mark_possible_minor(session, found, case_id=case.id, actor=actor)
        await record(
            session,
            found.clock,
            actor=actor,
            action="case.possible_minor",
            target=f"case:{case.id}",
            details={"destroyed": destroyed},
        )
        return TriageResult(changed=True, referral=HOTLINE_REFERRAL, destroyed=destroyed)
    return TriageResult(changed=True)


async def override_priority(
    session: AsyncSession,
    clock: Clock,
    keyring: Keyring,
    case: Case,
    *,
    staff_id: str,
    priority: int | None,
    reason: str | None,
) -> bool:
    """Override the computed priority (a reason is required; it is encrypted into the
    timeline), or with `None` return to the computed one. False if nothing changed."""
    _open(case)
    if priority is not None and priority not in Priority._value2member_map_:
        raise Invalid("priority: 1 (urgent) to 4 (low), or null")
    text = _text(reason, what="reason", limit=MAX_REASON_CHARS, required=priority is not None)
    computed = int(compute_priority(case.category, parse_flags(case.risk_flags)))
    new_priority = computed if priority is None else priority
    if case.priority_override == priority and case.priority == new_priority:
        return False
    old = case.priority
    case.priority_override, case.priority = priority, new_priority
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="priority",
        action="case.priority",
        details={"priority": new_priority, "previous": old, "overridden": priority is not None},
        text=text,
        keyring=keyring,
    )
    return True


# ---------------------------------------------------------------- status and closing


async def set_status(
    session: AsyncSession, clock: Clock, case: Case, *, staff_id: str, status: str
) -> bool:
    """Move a claimed case between the working statuses (not `new`: that is `release`; not
    `closed`: that is `close`, with an outcome)."""
    if status not in SETTABLE_STATUSES:
        raise Invalid(f"status: one of {', '.join(SETTABLE_STATUSES)}")
    _open(case)
    if case.assigned_staff_id is None:
        raise NotClaimed("nobody has this case: claim or assign it first")
    if case.status == status:
        return False
    old = case.status
    case.status = status
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="status",
        action="case.status",
        details={"status": status, "previous": old},
    )
    return True


async def close(
    session: AsyncSession, clock: Clock, case: Case, *, staff_id: str, outcome: str
) -> None:
    """Close the case with an outcome (for the statistics); the victim's chat ends."""
    if outcome not in OUTCOMES:
        raise Invalid(f"outcome: one of {', '.join(OUTCOMES)}")
    _open(case)
    old = case.status
    case.status, case.outcome, case.ended_at = CaseStatus.closed.value, outcome, clock.now()
    case.awaiting_since = None  # nothing waits for an answer in a closed case
    await counters.count_case_closed(session, None, case, now=clock.now(), reason="closed")
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="close",
        action="case.close",
        details={"outcome": outcome, "previous": old},
    )


# ---------------------------------------------------------------- who has the case


async def release(session: AsyncSession, clock: Clock, case: Case, *, staff_id: str) -> None:
    """Back into the queue, unassigned; it keeps its place (its `queued_at`)."""
    _open(case)
    if case.status == CaseStatus.new and case.assigned_staff_id is None:
        raise Conflict("the case is in the queue already")
    previous = case.assigned_staff_id
    case.status, case.assigned_staff_id, case.claimed_at = CaseStatus.new.value, None, None
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="release",
        action="case.release",
        details={"previous": previous},
    )


async def transfer(
    session: AsyncSession,
    clock: Clock,
    keyring: Keyring,
    case: Case,
    *,
    staff_id: str,
    to: str | None,
    note: str,
) -> CaseEvent:
    """Hand the case on with a note: warm to a colleague (assigned to them, who reads the note
    before the conversation), or cold (`to` None: back into the queue, the note for whoever
    claims it)."""
    _open(case)
    text = _text(note, what="note", limit=MAX_NOTE_CHARS, required=True)
    previous = case.assigned_staff_id
    if to is not None:
        await _colleague(session, to)
        if to == previous:
            raise Invalid("to: the case is theirs already")
        case.assigned_staff_id, case.claimed_at = to, clock.now()
        if case.status == CaseStatus.new:
            case.status = CaseStatus.in_conversation.value
    else:
        case.status, case.assigned_staff_id, case.claimed_at = CaseStatus.new.value, None, None
    event = await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="transfer",
        action="case.transfer",
        details={"from": staff_id, "previous": previous, "to": to, "warm": to is not None},
        text=text,
        keyring=keyring,
    )
    case.handover_event_id = event.id
    await session.flush()
    return event


async def handover_seen(session: AsyncSession, clock: Clock, case: Case, *, staff_id: str) -> bool:
    """The colleague who has the case now has read the handover note; False if there was none
    to read."""
    if case.handover_event_id is None:
        return False
    if case.assigned_staff_id != staff_id:
        raise Forbidden("only the colleague who has the case can mark its handover note read")
    event_id, case.handover_event_id = case.handover_event_id, None
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="handover_seen",
        action="case.handover_seen",
        details={"event_id": event_id},
    )
    return True


async def assign(
    session: AsyncSession, clock: Clock, case: Case, *, staff_id: str, to: str
) -> bool:
    """A supervisor gives the case to a colleague (a waiting case starts its conversation)."""
    _open(case)
    await _colleague(session, to)
    if case.assigned_staff_id == to:
        return False
    previous = case.assigned_staff_id
    case.assigned_staff_id, case.claimed_at = to, clock.now()
    if case.status == CaseStatus.new:
        case.status = CaseStatus.in_conversation.value
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind="assign",
        action="case.assign",
        details={"to": to, "previous": previous},
    )
    return True


@dataclass(frozen=True)
class Handover:
    event_id: str
    by: str | None
    to: str | None
    warm: bool
    note: str
    at: Any


async def pending_handover(session: AsyncSession, keyring: Keyring, case: Case) -> Handover | None:
    """The transfer note nobody has marked read yet, decrypted."""
    if case.handover_event_id is None:
        return None
    event = await session.get(CaseEvent, case.handover_event_id)
    if event is None:
        return None
    details = event_details(event)
    return Handover(
        event_id=event.id,
        by=details.get("from"),
        to=details.get("to"),
        warm=bool(details.get("warm")),
        note=await event_text(session, keyring, event) or "",
        at=event.at,
    )
