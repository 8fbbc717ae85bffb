"""The victim's side of a warm handover, from the chat: see exactly what would be shared with
whom, say yes or no, and take a yes back until the packet is delivered.
Contract: docs/api/handover.md ("Victim"). The chat's bearer token names the case: a victim
sees and answers only the handovers of their own case (another case's id is a 404).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.errors import NotFound
from helpline.core.http import Schema, parse_body, route, services
from helpline.handover import consent, service
from helpline.handover.models import Handover
from helpline.handover.routes_staff import announce
from helpline.handover.states import ConsentDecision, ConsentMethod
from helpline.intake.chat.routes import VICTIM


class VictimAnswer(Schema):
    decision: Literal["accepted", "declined"]
    text_sha256: str = Field(max_length=64)
    contact_details: str | None = Field(default=None, max_length=consent.MAX_CONTACT_DETAILS)


def _case_id(request: Request) -> str:
    case_id: str = request.state.principal.id
    return case_id


async def _own(request: Request) -> Handover:
    session: AsyncSession = request.state.session
    handover = await session.get(Handover, request.path_params["handover_id"], with_for_update=True)
    if (
        handover is None
        or handover.case_id != _case_id(request)
        or await service.cancelled_by_staff(session, handover)
    ):
        raise NotFound("no such proposal")
    return handover


async def _render(request: Request, handover: Handover) -> Response:
    return JSONResponse(
        await service.render_for_victim(request.state.session, services(request), handover)
    )


async def list_handovers(request: Request) -> Response:
    shown = await service.victim_handovers(
        request.state.session, services(request), _case_id(request)
    )
    return JSONResponse({"handovers": shown})


async def answer(request: Request) -> Response:
    handover = await _own(request)
    body = await parse_body(request, VictimAnswer)
    await service.answer(
        request.state.session,
        services(request),
        handover,
        method=ConsentMethod.chat,
        decision=ConsentDecision(body.decision),
        text_sha256=body.text_sha256,
        recorded_by="victim",
        contact_details=body.contact_details,
    )
    announce(request, handover.case_id)
    return await _render(request, handover)


async def withdraw(request: Request) -> Response:
    handover = await _own(request)
    await service.withdraw(request.state.session, services(request), handover, by="victim")
    announce(request, handover.case_id)
    return await _render(request, handover)


def handover_victim_routes() -> list[BaseRoute]:
    return [
        route("/api/chat/handovers", list_handovers, access=VICTIM),
        route("/api/chat/handovers/{handover_id}/consent", answer, access=VICTIM, methods=["POST"]),
        route(
            "/api/chat/handovers/{handover_id}/withdraw", withdraw, access=VICTIM, methods=["POST"]
        ),
    ]
