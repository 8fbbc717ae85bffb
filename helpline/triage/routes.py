"""The console's triage endpoints: the vocabulary, category and risk flags, priority, status.

The queue itself and who has a case are in helpline/staff/console.py (docs/api/console.md).
"""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.errors import Invalid
from helpline.core.http import Schema, parse_body, route, services
from helpline.evidence.service import HOTLINE_REFERRAL
from helpline.staff.auth import staff
from helpline.staff.console import announce_change, case_for_staff, render_case
from helpline.staff.models import Role
from helpline.triage import service
from helpline.triage.sla import SlaTargets
from helpline.triage.vocabulary import (
    CATEGORIES,
    FLAGS,
    OUTCOMES,
    POSSIBLE_MINOR,
    STATUSES,
    Priority,
)

AGENT = staff(Role.agent)


class TriageBody(Schema):
    category: str | None = Field(default=None, max_length=40)
    risk_flags: list[str] | None = Field(default=None, max_length=20)


class PriorityBody(Schema):
    priority: int | None = Field(ge=1, le=4)
    reason: str | None = Field(default=None, max_length=service.MAX_REASON_CHARS * 2)


class StatusBody(Schema):
    status: str = Field(max_length=40)


async def vocabulary(request: Request) -> Response:
    targets = SlaTargets.from_settings(services(request).settings)
    return JSONResponse(
        {
            "categories": [
                {"code": c.code, "dsa_category": c.dsa_category, "dsa_keyword": c.dsa_keyword}
                for c in CATEGORIES.values()
            ],
            "flags": list(FLAGS),
            "priorities": [{"level": p.value, "name": p.name} for p in Priority],
            "statuses": list(STATUSES),
            "outcomes": list(OUTCOMES),
            "sla": targets.as_json(),
            "hotline_referral": {"category": POSSIBLE_MINOR, "text": HOTLINE_REFERRAL},
        }
    )


async def set_triage(request: Request) -> Response:
    body = await parse_body(request, TriageBody)
    given = body.model_fields_set
    if "risk_flags" in given and body.risk_flags is None:
        raise Invalid("risk_flags: a list of flags ([] for none)")
    case = await case_for_staff(request, for_update=True)
    result = await service.set_triage(
        request.state.session,
        services(request),
        case,
        staff_id=request.state.principal.id,
        category=body.category if "category" in given else service.KEEP,
        risk_flags=body.risk_flags or [] if "risk_flags" in given else service.KEEP,
    )
    if result.changed:
        announce_change(request, case.id)
    return await render_case(request, case, referral=result.referral)


async def set_priority(request: Request) -> Response:
    body = await parse_body(request, PriorityBody)
    found = services(request)
    case = await case_for_staff(request, for_update=True)
    if await service.override_priority(
        request.state.session,
        found.clock,
        found.keyring,
        case,
        staff_id=request.state.principal.id,
        priority=body.priority,
        reason=body.reason,
    ):
        announce_change(request, case.id)
    return await render_case(request, case)


async def set_status(request: Request) -> Response:
    body = await parse_body(request, StatusBody)
    case = await case_for_staff(request, for_update=True)
    if await service.set_status(
        request.state.session,
        services(request).clock,
        case,
        staff_id=request.state.principal.id,
        status=body.status,
    ):
        announce_change(request, case.id)
    return await render_case(request, case)


def triage_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}"
    return [
        route("/api/staff/triage/vocabulary", vocabulary, access=AGENT),
        route(f"{case}/triage", set_triage, access=AGENT, methods=["POST"]),
        route(f"{case}/priority", set_priority, access=AGENT, methods=["POST"]),
        route(f"{case}/status", set_status, access=AGENT, methods=["POST"]),
    ]
