"""The console's case endpoints: the queue, claiming, reading and ending conversations.

Every opening of a case's content is written to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from helpline.cases import service
from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Forbidden, NotFound
from helpline.core.http import publish_after_commit, route, services, websocket_route
from helpline.staff.auth import staff
from helpline.staff.models import Role, Staff

AGENT = staff(Role.agent)
KEEPALIVE = 25.0


def _case_json(case: Case, names: dict[str, str]) -> dict[str, object]:
    assigned = case.assigned_staff_id
    return {
        "id": case.id,
        "reference": case.reference,
        "channel": case.channel,
        "status": case.status,
        "language": case.language,
        "topic": case.topic,
        "created_at": as_utc(case.created_at).isoformat(),
        "queued_at": as_utc(case.queued_at).isoformat(),
        "last_activity_at": as_utc(case.last_activity_at).isoformat(),
        "assigned_to": {"id": assigned, "name": names.get(assigned, "")} if assigned else None,
        "unread": max(0, case.last_seq - case.staff_read_seq),
        "possible_minor": case.possible_minor,
    }


async def _names(request: Request, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await request.state.session.execute(
        select(col(Staff.id), col(Staff.display_name)).where(col(Staff.id).in_(ids))
    )
    return {row[0]: row[1] for row in rows}


async def case_for_staff(request: Request, case_id: str | None = None) -> Case:
    """The case (by default the one in the path), if this staff member may open it."""
    case = await request.state.session.get(Case, case_id or request.path_params["case_id"])
    if case is None:
        raise NotFound("no such case")
    principal = request.state.principal
    mine = case.assigned_staff_id == principal.id
    if not mine and not Role(principal.role).includes(Role.supervisor):
        raise Forbidden("claim the case first")
    assert isinstance(case, Case)
    return case


async def list_cases(request: Request) -> Response:
    cases = await service.open_cases(request.state.session)
    names = await _names(request, {c.assigned_staff_id for c in cases if c.assigned_staff_id})
    return JSONResponse({"cases": [_case_json(c, names) for c in cases]})


async def claim_case(request: Request) -> Response:
    found = services(request)
    principal = request.state.principal
    case_id = request.path_params["case_id"]
    case = await service.claim(request.state.session, found.clock, case_id, principal.id)
    publish_after_commit(request, service.channel(case_id), {"type": "joined"})
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    names = await _names(request, {principal.id})
    return JSONResponse(_case_json(case, names))


async def case_messages(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request)
    after = request.query_params.get("after", "0")
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{request.state.principal.id}",
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "history"},
    )
    frames = await service.messages_after(
        request.state.session, found.keyring, case.id, int(after) if after.isdigit() else 0
    )
    return JSONResponse({"messages": frames})


async def end_case(request: Request) -> Response:
    case = await case_for_staff(request)
    by = f"staff:{request.state.principal.id}"
    await service.end(request.state.session, services(request).clock, case, by=by)
    publish_after_commit(request, service.channel(case.id), {"type": "ended", "by": "staff"})
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    return JSONResponse({"status": case.status})


async def console_socket(websocket: WebSocket) -> None:
    """Tells the console when the queue may have changed; the console then asks for it."""
    await websocket.accept()
    bus = services(websocket).bus
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue(100)
    async with (
        bus.subscribe(service.QUEUE_CHANNEL, queue=inbox) as queue,
        bus.subscribe(service.ACTIVITY_CHANNEL, queue=inbox),
    ):

        async def forward() -> None:
            while True:
                try:
                    await queue.get(timeout=KEEPALIVE)
                    await websocket.send_text(json.dumps({"type": "queue_changed"}))
                except TimeoutError:
                    await websocket.send_text(json.dumps({"type": "ping"}))

        async def drain() -> None:
            while True:
                await websocket.receive_text()

        tasks = [asyncio.create_task(forward()), asyncio.create_task(drain())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await task


def console_routes() -> list[BaseRoute]:
    return [
        route("/api/staff/cases", list_cases, access=AGENT),
        route("/api/staff/cases/{case_id}/claim", claim_case, access=AGENT, methods=["POST"]),
        route("/api/staff/cases/{case_id}/messages", case_messages, access=AGENT),
        route("/api/staff/cases/{case_id}/end", end_case, access=AGENT, methods=["POST"]),
        websocket_route("/ws/console", console_socket, access=AGENT),
    ]
