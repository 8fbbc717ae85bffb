"""Staff endpoints of the warm handover: the partner directory and the handovers of a case.
Contract: docs/api/handover.md ("Partners", "Staff").

Who may see a handover (its summary, evidence labels, consent text): supervisors and admins
any; an agent the handovers of a case assigned to them and those they proposed, and any
handover whose recorded (verbal/written) answer waits for a second staff member, so that any
colleague can confirm it. Every view is audited (`case.open`, via `handover`/`handovers`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.errors import Forbidden, NotFound
from helpline.core.http import (
    Principal,
    Schema,
    parse_body,
    publish_after_commit,
    route,
    services,
)
from helpline.handover import consent, delivery, partners, service
from helpline.handover.models import Handover
from helpline.handover.states import ConsentDecision, ConsentMethod
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff, is_supervisor, staff_names
from helpline.staff.models import Role

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)
ADMIN = staff(Role.admin)


def _staff_id(request: Request) -> str:
    staff_id: str = request.state.principal.id
    return staff_id


def announce(request: Request, case_id: str | None) -> None:
    """After the commit: the chat (victim and staff) and the consoles fetch again."""
    for where, message in delivery.changed(case_id):
        publish_after_commit(request, where, message)


# ---------------------------------------------------------------- partners


class PartnerBody(Schema):
    name: str | None = Field(default=None, max_length=120)
    kind: str | None = Field(default=None, max_length=32)
    contact_email: str | None = Field(default=None, max_length=254)
    contact_phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=500)
    languages: list[str] | None = Field(default=None, max_length=10)

    def fields(self, active: bool | None = None) -> partners.PartnerFields:
        return partners.PartnerFields(
            name=self.name,
            kind=self.kind,
            contact_email=self.contact_email,
            contact_phone=self.contact_phone,
            website=self.website,
            description=self.description,
            languages=self.languages,
            active=active,
        )


class PartnerUpdate(PartnerBody):
    active: bool | None = None


class KeyBody(Schema):
    recipient: str = Field(max_length=200)


class FingerprintBody(Schema):
    fingerprint: str = Field(max_length=200)


async def _render_partner(request: Request, partner_id: str) -> Response:
    session: AsyncSession = request.state.session
    partner = await partners.get_partner(session, partner_id)
    counts = await partners.counts_by_partner(session, [partner.id])
    names = await staff_names(session, [partner.key_confirmed_by])
    return JSONResponse(partners.render_partner(partner, counts.get(partner.id), names))


async def _audit_partner(request: Request, action: str, partner_id: str) -> None:
    await record(
        request.state.session,
        services(request).clock,
        actor=f"staff:{_staff_id(request)}",
        action=action,
        target=f"partner:{partner_id}",
    )


async def list_partners(request: Request) -> Response:
    session: AsyncSession = request.state.session
    found = await partners.list_partners(session)
    counts = await partners.counts_by_partner(session)
    names = await staff_names(session, [p.key_confirmed_by for p in found])
    return JSONResponse(
        {"partners": [partners.render_partner(p, counts.get(p.id), names) for p in found]}
    )


async def create_partner(request: Request) -> Response:
    body = await parse_body(request, PartnerBody)
    partner = await partners.create_partner(
        request.state.session, services(request).clock, body.fields()
    )
    await _audit_partner(request, "partner.create", partner.id)
    response = await _render_partner(request, partner.id)
    response.status_code = 201
    return response


async def update_partner(request: Request) -> Response:
    body = await parse_body(request, PartnerUpdate)
    session: AsyncSession = request.state.session
    partner = await partners.get_partner(
        session, request.path_params["partner_id"], for_update=True
    )
    await partners.update_partner(
        session, services(request).clock, partner, body.fields(body.active)
    )
    await _audit_partner(request, "partner.update", partner.id)
    return await _render_partner(request, partner.id)


async def import_key(request: Request) -> Response:
    body = await parse_body(request, KeyBody)
    session: AsyncSession = request.state.session
    partner = await partners.get_partner(
        session, request.path_params["partner_id"], for_update=True
    )
    await partners.import_key(
        session, services(request).clock, partner, body.recipient, by=_staff_id(request)
    )
    await _audit_partner(request, "partner.key_import", partner.id)
    return await _render_partner(request, partner.id)


async def confirm_key(request: Request) -> Response:
    body = await parse_body(request, FingerprintBody)
    session: AsyncSession = request.state.session
    partner = await partners.get_partner(
        session, request.path_params["partner_id"], for_update=True
    )
    await partners.confirm_key(
        session, services(request).clock, partner, body.fingerprint, by=_staff_id(request)
    )
    await _audit_partner(request, "partner.key_confirm", partner.id)
    return await _render_partner(request, partner.id)


async def figures(request: Request) -> Response:
    return JSONResponse(await partners.figures(request.state.session))


# ---------------------------------------------------------------- access to one handover


async def may_read(session: AsyncSession, principal: Principal, handover: Handover) -> bool:
    if is_supervisor(principal) or principal.id == handover.created_by:
        return True
    if consent.is_pending(handover, await consent.current_consent(session, handover)):
        return True  # any colleague may be the second staff member
    if handover.case_id is not None:
        case = await session.get(Case, handover.case_id)
        return case is not None and case.assigned_staff_id == principal.id
    return False


async def handover_for_staff(request: Request, *, for_update: bool = False) -> Handover:
    session: AsyncSession = request.state.session
    handover = await session.get(
        Handover, request.path_params["handover_id"], with_for_update=for_update
    )
    if handover is None:
        raise NotFound("no such handover")
    if not await may_read(session, request.state.principal, handover):
        raise Forbidden("this handover belongs to a case that is not yours")
    return handover


async def _audit_view(request: Request, handover: Handover | None, case_id: str | None) -> None:
    target = f"case:{case_id}" if case_id else f"handover:{handover.id if handover else ''}"
    details: dict[str, str | int | float | bool | None] = {
        "via": "handover" if handover else "handovers"
    }
    if handover is not None:
        details["handover"] = handover.id
    await record(
        request.state.session,
        services(request).clock,
        actor=f"staff:{_staff_id(request)}",
        action="case.open",
        target=target,
        details=details,
    )


async def _one(request: Request, handover: Handover, *, status: int = 200) -> Response:
    await _audit_view(request, handover, handover.case_id)
    [rendered] = await service.render_handovers(
        request.state.session, services(request), [handover], with_text=True
    )
    return JSONResponse(rendered, status_code=status)


# ---------------------------------------------------------------- handovers


class ProposeBody(Schema):
    partner_id: str = Field(max_length=32)
    parts: list[str] = Field(max_length=10)
    summary: str | None = Field(default=None, max_length=service.MAX_SUMMARY * 2)
    evidence_ids: list[str] | None = Field(default=None, max_length=200)
    contact_method: str | None = Field(default=None, max_length=16)
    language: str | None = Field(default=None, max_length=8)


class RecordedAnswer(Schema):
    method: Literal["verbal", "written"]
    decision: Literal["accepted", "declined"]
    text_sha256: str = Field(max_length=64)
    contact_details: str | None = Field(default=None, max_length=consent.MAX_CONTACT_DETAILS)


class CancelBody(Schema):
    reason: str | None = Field(default=None, max_length=40)


async def case_handovers(request: Request) -> Response:
    case = await case_for_staff(request)
    session: AsyncSession = request.state.session
    await _audit_view(request, None, case.id)
    handovers = await service.handovers_of_case(session, case.id)
    rendered = await service.render_handovers(session, services(request), handovers)
    return JSONResponse({"handovers": rendered})


async def propose(request: Request) -> Response:
    case = await case_for_staff(request, for_update=True)
    body = await parse_body(request, ProposeBody)
    handover = await service.propose(
        request.state.session,
        services(request),
        case,
        staff_id=_staff_id(request),
        partner_id=body.partner_id,
        parts=body.parts,
        summary=body.summary,
        evidence_ids=body.evidence_ids,
        contact_method=body.contact_method,
        language=body.language,
    )
    announce(request, case.id)
    return await _one(request, handover, status=201)


async def awaiting_confirmation(request: Request) -> Response:
    """Recorded consents any colleague but their recorder may confirm: an agent who does not
    hold the case could not find them otherwise. Nothing of the case is in it: not audited
    as a view."""
    found = services(request)
    listed = await service.awaiting_confirmation(
        request.state.session, found.clock.now(), staff_id=_staff_id(request)
    )
    return JSONResponse({"handovers": listed})


async def get_handover(request: Request) -> Response:
    return await _one(request, await handover_for_staff(request))


async def record_consent(request: Request) -> Response:
    handover = await handover_for_staff(request, for_update=True)
    body = await parse_body(request, RecordedAnswer)
    await service.answer(
        request.state.session,
        services(request),
        handover,
        method=ConsentMethod(body.method),
        decision=ConsentDecision(body.decision),
        text_sha256=body.text_sha256,
        recorded_by=f"staff:{_staff_id(request)}",
        contact_details=body.contact_details,
    )
    announce(request, handover.case_id)
    return await _one(request, handover)


async def confirm_consent(request: Request) -> Response:
    handover = await handover_for_staff(request, for_update=True)
    await service.confirm(
        request.state.session, services(request), handover, staff_id=_staff_id(request)
    )
    announce(request, handover.case_id)
    return await _one(request, handover)


async def approve(request: Request) -> Response:
    handover = await handover_for_staff(request, for_update=True)
    await service.approve(
        request.state.session, services(request), handover, staff_id=_staff_id(request)
    )
    announce(request, handover.case_id)
    return await _one(request, handover)


async def cancel(request: Request) -> Response:
    handover = await handover_for_staff(request, for_update=True)
    await parse_body(request, CancelBody)  # the reason is free text: not stored
    await service.withdraw(
        request.state.session, services(request), handover, by=f"staff:{_staff_id(request)}"
    )
    announce(request, handover.case_id)
    return await _one(request, handover)


async def reissue(request: Request) -> Response:
    """A new one-time link (and notification) for a delivered handover: supervisors."""
    handover = await handover_for_staff(request, for_update=True)
    await service.reissue(
        request.state.session, services(request), handover, staff_id=_staff_id(request)
    )
    announce(request, handover.case_id)
    return await _one(request, handover)


def handover_staff_routes() -> list[BaseRoute]:
    partner = "/api/staff/partners/{partner_id}"
    handover = "/api/staff/handovers/{handover_id}"
    return [
        route("/api/staff/partners", list_partners, access=AGENT),
        route("/api/staff/partners", create_partner, access=ADMIN, methods=["POST"]),
        route(partner, update_partner, access=ADMIN, methods=["PUT"]),
        route(f"{partner}/key", import_key, access=ADMIN, methods=["POST"]),
        route(f"{partner}/key/confirm", confirm_key, access=ADMIN, methods=["POST"]),
        route("/api/staff/cases/{case_id}/handovers", case_handovers, access=AGENT),
        route("/api/staff/cases/{case_id}/handovers", propose, access=AGENT, methods=["POST"]),
        # before `{handover_id}`, which would match them
        route("/api/staff/handovers/figures", figures, access=SUPERVISOR),
        route("/api/staff/handovers/awaiting-confirmation", awaiting_confirmation, access=AGENT),
        route(handover, get_handover, access=AGENT),
        route(f"{handover}/consent", record_consent, access=AGENT, methods=["POST"]),
        route(f"{handover}/consent/confirm", confirm_consent, access=AGENT, methods=["POST"]),
        route(f"{handover}/approve", approve, access=SUPERVISOR, methods=["POST"]),
        route(f"{handover}/cancel", cancel, access=AGENT, methods=["POST"]),
        route(f"{handover}/reissue", reissue, access=SUPERVISOR, methods=["POST"]),
    ]
