"""Staff endpoints of the e-mail channel: reply on an e-mail case, see how the mails went,
and the supervisors' quarantine (list, download, release, delete)."""

from __future__ import annotations

from pydantic import Field
from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases import service
from helpline.cases.models import Message
from helpline.core.audit import record
from helpline.core.http import (
    Schema,
    after_commit,
    parse_body,
    publish_after_commit,
    route,
    services,
)
from helpline.intake.email import inbound, quarantine
from helpline.intake.email.models import EmailOutgoing, EmailThread
from helpline.intake.email.outbound import NotEmail, outgoing_json, queue_reply
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff
from helpline.staff.models import Role

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)


class ReplyBody(Schema):
    text: str = Field(min_length=1, max_length=service.MAX_MESSAGE_CHARS)
    client_id: str = Field(min_length=1, max_length=64)
    # end the mail with the case reference and a new passphrase to continue in the chat
    chat_access: bool = False


def _actor(request: Request) -> str:
    return f"staff:{request.state.principal.id}"


async def email_state(request: Request) -> Response:
    """The e-mail side of a case: whether there is an address to answer (never the address
    itself) and every mail sent, with its delivery state."""
    found = services(request)
    session = request.state.session
    case = await case_for_staff(request)
    thread = await session.get(EmailThread, case.id)
    if thread is None:
        raise NotEmail("this case did not come in by e-mail")
    await record(
        session,
        found.clock,
        actor=_actor(request),
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "email"},
    )
    rows = (
        await session.execute(
            select(EmailOutgoing, col(Message.seq))
            .join(Message, col(Message.id) == col(EmailOutgoing.message_id), isouter=True)
            .where(col(EmailOutgoing.case_id) == case.id)
            .order_by(col(EmailOutgoing.created_at))
        )
    ).all()
    return JSONResponse(
        {
            "case_id": case.id,
            "can_reply": thread.address is not None,
            "outgoing": [outgoing_json(row, seq) for row, seq in rows],
        }
    )


async def reply(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request)
    body = await parse_body(request, ReplyBody)
    queued = await queue_reply(
        request.state.session,
        found,
        case,
        staff_id=request.state.principal.id,
        text=body.text,
        client_id=body.client_id,
        chat_access=body.chat_access,
    )
    if queued.created:
        publish_after_commit(
            request, service.channel(case.id), {"type": "message", "seq": queued.message.seq}
        )
        publish_after_commit(request, service.ACTIVITY_CHANNEL, {"type": "queue_changed"})

        async def wake() -> None:
            found.outbox.wake()

        after_commit(request, wake)
    return JSONResponse(
        {
            "seq": queued.message.seq,
            "client_id": queued.message.client_id,
            "outgoing": outgoing_json(queued.outgoing, queued.message.seq),
        },
        status_code=201 if queued.created else 200,
    )


# ---------------------------------------------------------------- quarantine


async def quarantine_list(request: Request) -> Response:
    found = services(request)
    session = request.state.session
    await record(session, found.clock, actor=_actor(request), action="email.quarantine_list")
    return JSONResponse({"items": await quarantine.listing(session, found)})


async def quarantine_download(request: Request) -> Response:
    found = services(request)
    session = request.state.session
    row = await quarantine.get(session, request.path_params["quarantine_id"])
    raw = await quarantine.raw_of(session, found, row)
    await record(
        session,
        found.clock,
        actor=_actor(request),
        action="email.quarantine_download",
        target=f"email_quarantine:{row.id}",
    )
    return Response(
        raw,
        media_type="message/rfc822",
        headers={"content-disposition": f'attachment; filename="quarantine-{row.id}.eml"'},
    )


async def quarantine_release(request: Request) -> Response:
    found = services(request)
    outcome = await inbound.release(
        request.state.session,
        found,
        request.path_params["quarantine_id"],
        actor=_actor(request),
    )
    for channel, message in outcome.notifications:
        publish_after_commit(request, channel, message)
    return JSONResponse(
        {
            "case_id": outcome.case_id,
            "reference": outcome.reference,
            "new_case": outcome.new_case,
            "duplicate": outcome.kind == "duplicate",
        }
    )


async def quarantine_delete(request: Request) -> Response:
    found = services(request)
    session = request.state.session
    row = await quarantine.get(session, request.path_params["quarantine_id"])
    await quarantine.discard(session, row)
    await record(
        session,
        found.clock,
        actor=_actor(request),
        action="email.quarantine_delete",
        target=f"email_quarantine:{row.id}",
        details={"reason": row.reason},
    )
    return Response(status_code=204)


def email_routes() -> list[BaseRoute]:
    quarantined = "/api/staff/email/quarantine/{quarantine_id}"
    return [
        route("/api/staff/cases/{case_id}/email", email_state, access=AGENT),
        route("/api/staff/cases/{case_id}/email/reply", reply, access=AGENT, methods=["POST"]),
        route("/api/staff/email/quarantine", quarantine_list, access=SUPERVISOR),
        route(f"{quarantined}/raw", quarantine_download, access=SUPERVISOR),
        route(f"{quarantined}/release", quarantine_release, access=SUPERVISOR, methods=["POST"]),
        route(quarantined, quarantine_delete, access=SUPERVISOR, methods=["DELETE"]),
    ]
