"""Victims' chat endpoints: start, come back, end, delete, forget this tab.

Victims never get a cookie. Their session token travels as `Authorization: Bearer`, and lives
in the tab's sessionStorage only. Rate limits key on a global bucket and on the reference,
never on an address.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus
from helpline.core.errors import HelplineError, NotFound
from helpline.core.http import (
    PUBLIC,
    Authenticated,
    Principal,
    Schema,
    on_helpline_error,
    parse_body,
    publish_after_commit,
    route,
    services,
)

VICTIM = Authenticated("victim", description="a victim's session token (Bearer)")


class StartChat(Schema):
    language: Literal["nl", "en"] = "nl"
    topic: str | None = None


class ResumeChat(Schema):
    reference: str
    passphrase: str


class DeleteChat(Schema):
    confirm: Literal[True]


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def victim_authenticator(connection: HTTPConnection) -> Principal | None:
    token = bearer_token(connection)
    if token is None:
        return None
    found = services(connection)
    async with found.db.transaction() as session:
        case = await service.case_for_token(session, found.clock, token)
    return Principal("victim", id=case.id) if case is not None else None


async def _victim_case(request: Request) -> Case:
    case = await request.state.session.get(Case, request.state.principal.id)
    if case is None:
        raise NotFound("this conversation no longer exists")
    assert isinstance(case, Case)
    return case


async def info(request: Request) -> Response:
    settings = services(request).settings
    now = services(request).clock.now()
    hours = settings.hours
    opens_at = hours.next_opening(now)
    return JSONResponse(
        {
            "open": hours.is_open(now),
            "opens_at": opens_at.isoformat() if opens_at else None,
            "languages": ["nl", "en"],
            "topics": list(service.TOPICS),
            "quick_exit_url": settings.quick_exit_url,
        }
    )


async def start(request: Request) -> Response:
    found = services(request)
    await found.limiter.check("chat-start", "120/minute")
    body = await parse_body(request, StartChat)
    receipt = await service.start_chat(
        request.state.session, found.clock, language=body.language, topic=body.topic
    )
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    return JSONResponse(
        {"reference": receipt.reference, "passphrase": receipt.passphrase, "token": receipt.token},
        status_code=201,
    )


async def resume(request: Request) -> Response:
    found = services(request)
    body = await parse_body(request, ResumeChat)
    await found.limiter.check("chat-resume", "300/minute")
    await found.limiter.check("chat-resume-reference", "20/hour", body.reference.upper())
    result = await service.resume(
        request.state.session,
        found.clock,
        reference=body.reference,
        passphrase=body.passphrase,
        max_failures=found.settings.victim_max_failed_logins,
        lockout=timedelta(minutes=found.settings.victim_lockout_minutes),
    )
    if isinstance(result, HelplineError):  # answered, not raised: the count must commit
        return await on_helpline_error(request, result)
    case, token = result
    return JSONResponse({"reference": case.reference, "token": token})


async def end_chat(request: Request) -> Response:
    case = await _victim_case(request)
    await service.end(request.state.session, services(request).clock, case, by="victim")
    publish_after_commit(request, service.channel(case.id), {"type": "ended", "by": "victim"})
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    return JSONResponse({"status": CaseStatus(case.status).victim_view})


async def delete_chat(request: Request) -> Response:
    await parse_body(request, DeleteChat)
    found = services(request)
    case = await _victim_case(request)
    await service.delete_case(request.state.session, found.keyring, found.clock, case)
    publish_after_commit(request, service.channel(case.id), {"type": "deleted"})
    publish_after_commit(request, service.QUEUE_CHANNEL, {"type": "queue_changed"})
    return JSONResponse({"deleted": True})


async def logout(request: Request) -> Response:
    token = bearer_token(request)
    if token is not None:
        await service.forget_token(request.state.session, token)
    return Response(status_code=204)


def chat_routes() -> list[BaseRoute]:
    return [
        route("/api/chat/info", info, access=PUBLIC),
        route("/api/chat/start", start, access=PUBLIC, methods=["POST"]),
        route("/api/chat/resume", resume, access=PUBLIC, methods=["POST"]),
        route("/api/chat/end", end_chat, access=VICTIM, methods=["POST"]),
        route("/api/chat/delete", delete_chat, access=VICTIM, methods=["POST"]),
        # public: a quick exit must work even with an expired token, and only forgets
        route("/api/chat/logout", logout, access=PUBLIC, methods=["POST"]),
    ]
