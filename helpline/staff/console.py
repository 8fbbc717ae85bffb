"""The console's queue and case endpoints: listing, opening, claiming, releasing, transferring,
assigning and closing cases; colleagues and the supervisor's overview; the console websocket.

Contract: docs/api/console.md. Every opening of a case's content is written to the audit log;
every change is a `case_events` row and an audit line (helpline.triage.service) and, once
committed, a `queue_changed` and a `case_changed` on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from helpline.cases import service
from helpline.cases.models import OPEN_STATUSES, Case, CaseStatus, Channel
from helpline.cases.receipts import LANGUAGES
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Forbidden, Invalid, NotFound
from helpline.core.http import (
    Principal,
    Schema,
    parse_body,
    publish_after_commit,
    route,
    services,
    websocket_route,
)
from helpline.core.ids import new_id
from helpline.core.metrics import websocket_connected
from helpline.staff.auth import staff
from helpline.staff.models import Role, Staff
from helpline.triage import service as triage
from helpline.triage.presence import presence_of
from helpline.triage.sla import SlaTargets, breaches_today, sla_state
from helpline.triage.vocabulary import CATEGORIES, Priority, parse_flags

log = logging.getLogger("helpline.console")

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)
KEEPALIVE = 25.0
MAX_FRAME = 8_000
FORWARDED = frozenset(
    {"queue_changed", "case_changed", "presence", "sla_breach", "notice_changed", "handover"}
)
QUEUE_FILTERS = frozenset({"channel", "category", "language", "status", "assigned"})


def is_supervisor(principal: Principal) -> bool:
    return Role(principal.role or Role.agent).includes(Role.supervisor)


# ---------------------------------------------------------------- rendering a case


async def staff_names(session: AsyncSession, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = await session.execute(
        select(col(Staff.id), col(Staff.display_name)).where(col(Staff.id).in_(wanted))
    )
    return {row[0]: row[1] for row in rows}


def _person(staff_id: str | None, names: dict[str, str]) -> dict[str, str] | None:
    return {"id": staff_id, "name": names.get(staff_id, "")} if staff_id else None


async def _failed_mail(session: AsyncSession, case_ids: list[str]) -> dict[str, int]:
    """Per e-mail case, how many of our mails could not be delivered (one query)."""
    # imported here: the e-mail package's routes import this module
    from helpline.intake.email.models import EmailOutgoing, OutgoingStatus

    if not case_ids:
        return {}
    rows = await session.execute(
        select(col(EmailOutgoing.case_id), func.count())
        .where(
            col(EmailOutgoing.case_id).in_(case_ids),
            col(EmailOutgoing.status) == OutgoingStatus.failed,
        )
        .group_by(col(EmailOutgoing.case_id))
    )
    return {case_id: int(count) for case_id, count in rows}


async def render_cases(
    request: Request, cases: list[Case], *, with_handover: bool = False
) -> list[dict[str, Any]]:
    """Cases as the console sees them (docs/api/console.md, "The case object")."""
    found = services(request)
    session = request.state.session
    now = found.clock.now()
    targets = SlaTargets.from_settings(found.settings)
    presence = presence_of(found)
    handovers = {}
    if with_handover:
        for case in cases:
            handovers[case.id] = await triage.pending_handover(session, found.keyring, case)
    names = await staff_names(
        session,
        [c.assigned_staff_id for c in cases]
        + [h.by for h in handovers.values() if h]
        + [h.to for h in handovers.values() if h],
    )
    failed_mail = await _failed_mail(session, [c.id for c in cases if c.channel == "email"])
    rendered = []
    for case in cases:
        handover = handovers.get(case.id)
        rendered.append(
            {
                "id": case.id,
                "reference": case.reference,
                "channel": case.channel,
                "status": case.status,
                "language": case.language,
                "topic": case.topic,
                "category": case.category,
                "risk_flags": parse_flags(case.risk_flags),
                "priority": case.priority,
                "priority_name": Priority(case.priority).name,
                "priority_overridden": case.priority_override is not None,
                "possible_minor": case.possible_minor,
                "outcome": case.outcome,
                "created_at": as_utc(case.created_at).isoformat(),
                "queued_at": as_utc(case.queued_at).isoformat(),
                "last_activity_at": as_utc(case.last_activity_at).isoformat(),
                "claimed_at": as_utc(case.claimed_at).isoformat() if case.claimed_at else None,
                "assigned_to": _person(case.assigned_staff_id, names),
                "unread": max(0, case.last_seq - case.staff_read_seq),
                "email_failed": failed_mail.get(case.id, 0),
                "sla": sla_state(case, now, targets).as_json(),
                "viewers": presence.viewers(case.id),
                "handover": None
                if handover is None
                else {
                    "event_id": handover.event_id,
                    "from": _person(handover.by, names),
                    "to": _person(handover.to, names),
                    "warm": handover.warm,
                    "note": handover.note,
                    "at": as_utc(handover.at).isoformat(),
                },
            }
        )
    return rendered


async def render_case(request: Request, case: Case, **extra: Any) -> Response:
    [rendered] = await render_cases(request, [case])
    return JSONResponse({**rendered, **extra})


# ---------------------------------------------------------------- access to one case


async def case_for_staff(
    request: Request, case_id: str | None = None, *, for_update: bool = False
) -> Case:
    """The case (by default the one in the path), if this staff member may work on it: an
    agent only on a case assigned to them, supervisors and admins on any. `for_update` locks
    the row (PostgreSQL) so two changes to one case happen one after the other."""
    case = await request.state.session.get(
        Case, case_id or request.path_params["case_id"], with_for_update=for_update
    )
    if case is None:
        raise NotFound("no such case")
    principal = request.state.principal
    if case.assigned_staff_id != principal.id and not is_supervisor(principal):
        raise Forbidden("claim the case first")
    assert isinstance(case, Case)
    return case


def announce_change(request: Request, case_id: str) -> None:
    """After the commit, tell every console (and the victims in the queue) about the change."""
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    publish_after_commit(
        request, triage.CONSOLE_CHANNEL, {"type": "case_changed", "case_id": case_id}
    )


def _actor(request: Request) -> str:
    staff_id: str = request.state.principal.id
    return staff_id


# ---------------------------------------------------------------- the queue and one case


def _queue_filters(request: Request) -> dict[str, Any]:
    query = request.query_params
    unknown = set(query) - QUEUE_FILTERS
    if unknown:
        raise Invalid(f"unknown filter {sorted(unknown)[0]!r}")
    allowed: dict[str, Iterable[str]] = {
        "channel": [c.value for c in Channel],
        "category": CATEGORIES,
        "language": LANGUAGES,
        "status": OPEN_STATUSES,
        "assigned": ("me", "none", "any"),
    }
    for name, values in allowed.items():
        value = query.get(name)
        if value is not None and value not in values:
            raise Invalid(f"{name}: one of {', '.join(values)}")
    assigned = query.get("assigned", "any")
    return {
        "channel": query.get("channel"),
        "category": query.get("category"),
        "language": query.get("language"),
        "status": query.get("status"),
        "assigned_to": _actor(request) if assigned == "me" else None,
        "unassigned": assigned == "none",
    }


async def list_cases(request: Request) -> Response:
    now = services(request).clock.now()
    cases = await service.open_cases(request.state.session, **_queue_filters(request), now=now)
    return JSONResponse({"cases": await render_cases(request, cases), "now": now.isoformat()})


async def get_case(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request)
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{_actor(request)}",
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "case"},
    )
    [rendered] = await render_cases(request, [case], with_handover=True)
    return JSONResponse(rendered)


async def case_messages(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request)
    after = request.query_params.get("after", "0")
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{_actor(request)}",
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "history"},
    )
    frames = await service.messages_after(
        request.state.session, found.keyring, case.id, int(after) if after.isdigit() else 0
    )
    return JSONResponse({"messages": frames})


# ---------------------------------------------------------------- who has the case


class TransferBody(Schema):
    to: str | None = Field(max_length=32)
    note: str = Field(max_length=triage.MAX_NOTE_CHARS * 2)


class AssignBody(Schema):
    to: str = Field(max_length=32)


class CloseBody(Schema):
    outcome: str = Field(max_length=40)


async def claim_case(request: Request) -> Response:
    found = services(request)
    case_id = request.path_params["case_id"]
    case = await service.claim(request.state.session, found.clock, case_id, _actor(request))
    publish_after_commit(request, service.channel(case_id), {"type": "joined"})
    announce_change(request, case.id)
    return await render_case(request, case)


async def release_case(request: Request) -> Response:
    case = await case_for_staff(request, for_update=True)
    await triage.release(
        request.state.session, services(request).clock, case, staff_id=_actor(request)
    )
    announce_change(request, case.id)
    return await render_case(request, case)


async def transfer_case(request: Request) -> Response:
    body = await parse_body(request, TransferBody)
    found = services(request)
    case = await case_for_staff(request, for_update=True)
    await triage.transfer(
        request.state.session,
        found.clock,
        found.keyring,
        case,
        staff_id=_actor(request),
        to=body.to,
        note=body.note,
    )
    announce_change(request, case.id)
    return await render_case(request, case)


async def mark_handover_seen(request: Request) -> Response:
    case = await case_for_staff(request, for_update=True)
    changed = await triage.handover_seen(
        request.state.session, services(request).clock, case, staff_id=_actor(request)
    )
    if changed:
        publish_after_commit(
            request, triage.CONSOLE_CHANNEL, {"type": "case_changed", "case_id": case.id}
        )
    return await render_case(request, case)


async def assign_case(request: Request) -> Response:
    body = await parse_body(request, AssignBody)
    case = await case_for_staff(request, for_update=True)
    changed = await triage.assign(
        request.state.session, services(request).clock, case, staff_id=_actor(request), to=body.to
    )
    if changed:
        announce_change(request, case.id)
    return await render_case(request, case)


async def close_case(request: Request) -> Response:
    body = await parse_body(request, CloseBody)
    case = await case_for_staff(request, for_update=True)
    await triage.close(
        request.state.session,
        services(request).clock,
        case,
        staff_id=_actor(request),
        outcome=body.outcome,
    )
    publish_after_commit(request, service.channel(case.id), {"type": "ended", "by": "staff"})
    announce_change(request, case.id)
    return await render_case(request, case)


# ---------------------------------------------------------------- colleagues and overview


async def _active_staff(session: AsyncSession) -> list[Staff]:
    rows = await session.execute(
        select(Staff).where(col(Staff.disabled).is_(False)).order_by(col(Staff.display_name))
    )
    return list(rows.scalars().all())


async def colleagues(request: Request) -> Response:
    online = presence_of(services(request)).online()
    return JSONResponse(
        {
            "staff": [
                {"id": s.id, "name": s.display_name, "role": s.role, "online": s.id in online}
                for s in await _active_staff(request.state.session)
            ]
        }
    )


async def overview(request: Request) -> Response:
    found = services(request)
    session = request.state.session
    now = found.clock.now()
    targets = SlaTargets.from_settings(found.settings)
    presence = presence_of(found)
    online = presence.online()
    cases = await service.open_cases(session, now=now)
    carried: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        if case.assigned_staff_id:
            carried.setdefault(case.assigned_staff_id, []).append(
                {
                    "id": case.id,
                    "reference": case.reference,
                    "priority": case.priority,
                    "status": case.status,
                }
            )
    waiting = [c for c in cases if c.status == CaseStatus.new]
    by_priority = Counter(c.priority for c in waiting)
    oldest = min(waiting, key=lambda c: as_utc(c.queued_at), default=None)
    return JSONResponse(
        {
            "now": now.isoformat(),
            "staff": [
                {
                    "id": s.id,
                    "name": s.display_name,
                    "role": s.role,
                    "online": s.id in online,
                    "viewing": presence.viewing_of(s.id),
                    "cases": carried.get(s.id, []),
                }
                for s in await _active_staff(session)
            ],
            "queue": {
                "total": len(waiting),
                "by_priority": {str(p.value): by_priority.get(p.value, 0) for p in Priority},
                "oldest": None
                if oldest is None
                else {
                    "case_id": oldest.id,
                    "reference": oldest.reference,
                    "waiting_seconds": int((now - as_utc(oldest.queued_at)).total_seconds()),
                },
            },
            "sla": {
                "breaches_today": await breaches_today(session, now, found.settings.timezone),
                "breached_now": sum(1 for c in cases if sla_state(c, now, targets).breached),
            },
        }
    )


# ---------------------------------------------------------------- the console websocket


async def console_socket(websocket: WebSocket) -> None:
    """Live updates for one console: queue and case changes, presence, SLA breaches. The
    console says which cases it has open (`viewing`), at least every 20 s."""
    await websocket.accept()
    found = services(websocket)
    presence = presence_of(found)
    staff_id: str = websocket.state.principal.id
    async with found.db.transaction() as session:
        names = await staff_names(session, [staff_id])
    me = {"id": staff_id, "name": names.get(staff_id, "")}
    connection = new_id()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(200)
    lock = asyncio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with lock:
            await websocket.send_text(json.dumps(frame))

    async def forward() -> None:
        for frame in presence.snapshot():  # who is here already
            await send(frame)
        while True:
            try:
                message = await asyncio.wait_for(inbox.get(), KEEPALIVE)
            except TimeoutError:
                await send({"type": "ping"})
                continue
            kind = message.get("type")
            if kind in FORWARDED:
                await send(message)

    async def receive() -> None:
        while True:
            text = await websocket.receive_text()
            try:
                frame = json.loads(text) if len(text) <= MAX_FRAME else None
            except ValueError:
                frame = None
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "viewing":
                assert isinstance(frame, dict)
                case_ids = frame.get("case_ids")
                if (
                    not isinstance(case_ids, list)
                    or len(case_ids) > 50
                    or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in case_ids)
                ):
                    await send({"type": "error", "code": "invalid", "message": "case_ids"})
                    continue
                await presence.announce(connection, me, case_ids)
            elif kind == "ping":
                await send({"type": "pong"})
            else:
                await send({"type": "error", "code": "unknown_frame"})

    async with (
        found.bus.subscribe(service.QUEUE_CHANNEL, queue=inbox),
        found.bus.subscribe(service.ACTIVITY_CHANNEL, queue=inbox),
        found.bus.subscribe(triage.CONSOLE_CHANNEL, queue=inbox),
    ):
        with presence.listening(inbox), websocket_connected(websocket, "console"):
            await presence.announce(connection, me, [])
            tasks = [asyncio.create_task(forward()), asyncio.create_task(receive())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is not None and not isinstance(error, WebSocketDisconnect):
                        log.error("console socket failed", extra={"error": type(error).__name__})
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                # this console is gone: the staff member is offline unless another is open
                with contextlib.suppress(Exception):
                    await asyncio.shield(presence.announce(connection, me, [], online=False))


def console_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}"
    return [
        route("/api/staff/cases", list_cases, access=AGENT),
        route(case, get_case, access=AGENT),
        route(f"{case}/claim", claim_case, access=AGENT, methods=["POST"]),
        route(f"{case}/release", release_case, access=AGENT, methods=["POST"]),
        route(f"{case}/transfer", transfer_case, access=AGENT, methods=["POST"]),
        route(f"{case}/handover/seen", mark_handover_seen, access=AGENT, methods=["POST"]),
        route(f"{case}/assign", assign_case, access=SUPERVISOR, methods=["POST"]),
        route(f"{case}/close", close_case, access=AGENT, methods=["POST"]),
        route(f"{case}/messages", case_messages, access=AGENT),
        route("/api/staff/colleagues", colleagues, access=AGENT),
        route("/api/staff/overview", overview, access=SUPERVISOR),
        websocket_route("/ws/console", console_socket, access=AGENT),
    ]
