"""The platform portal: a reviewer opens a notice by its link, without an account, and answers.

A link is `<base>/portal/n/<token>`, one `notice_tokens` row: a token scoped to that notice
alone (made by `delivery.issue_portal_token` when the notice is queued, or by staff with
`POST /api/staff/notices/{id}/portal-link`), stored as its SHA-256 only, that stops working
when it expires (`HELPLINE_NOTICE_PORTAL_DAYS`) or when staff revoke it. The page
(frontend/portal/) is static; its script sends the token as a Bearer token to
`/api/portal/...`, so the token travels in no API URL, and the access log names only the
route template (`/portal/n/{token}`), never the path. `Referrer-Policy: no-referrer` (on
every response) keeps the link out of other sites' logs.

Staff endpoints here: list a notice's links, revoke one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import NotFound, Unauthorized
from helpline.core.http import (
    PUBLIC,
    Authenticated,
    Authenticator,
    Principal,
    publish_after_commit,
    route,
    services,
)
from helpline.intake.email import tokens
from helpline.pages import frontend_root
from helpline.staff.auth import staff
from helpline.takedown.answers import (
    ANSWERABLE,
    apply_answers,
    changed,
    confirm_receipt,
    read_answers,
)
from helpline.takedown.builder import redacted_copy
from helpline.takedown.models import Notice, NoticeItem, NoticeToken
from helpline.takedown.platform_view import iso, notice_json
from helpline.takedown.routes_staff import notice_for_staff
from helpline.takedown.states import AnswerVia, NoticeStatus

PORTAL = "portal"  # the access kind of a portal link
PORTAL_ACCESS = Authenticated(PORTAL, description="platform portal link")
PAGE_PATH = "/portal/n/{token}"
MAX_TOKEN_CHARS = 100


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS else None


# ---------------------------------------------------------------- the reviewer's side


class LinkExpired(Unauthorized):
    code = "link_expired"


class LinkRevoked(Unauthorized):
    code = "link_revoked"


async def portal_authenticator(connection: HTTPConnection) -> Principal | None:
    """The notice a portal link opens, from the Bearer token; an expired or revoked link is
    refused with 401 `link_expired` / `link_revoked` (the page says to ask the helpline for a
    new one)."""
    token = bearer_token(connection)
    if token is None:
        return None
    found = services(connection)
    async with found.db.transaction() as session:
        row = (
            await session.execute(
                select(NoticeToken).where(col(NoticeToken.token_hash) == tokens.token_hash(token))
            )
        ).scalar_one_or_none()
    if row is None:
        return None
    if row.revoked_at is not None:
        raise LinkRevoked("this link was withdrawn by the helpline")
    if as_utc(row.expires_at) <= found.clock.now():
        raise LinkExpired("this link has expired")
    connection.state.portal_link_id = row.id
    return Principal(PORTAL, id=row.notice_id)


def register_portal(authenticators: dict[str, Authenticator]) -> None:
    """Register the portal link authenticator (kind `portal`)."""
    authenticators[PORTAL] = portal_authenticator


async def _linked_notice(request: Request, *, for_update: bool = False) -> Notice:
    notice = await request.state.session.get(
        Notice, request.state.principal.id, with_for_update=for_update
    )
    if notice is None:
        raise NotFound("this notice no longer exists")
    assert isinstance(notice, Notice)
    return notice


def _platform_actor(notice: Notice) -> str:
    return f"platform:{notice.platform_id}"


# the app's policy (core.http.security_headers) plus blob: images: the redacted copies staff
# attach are fetched with the Bearer token and shown from blob: URLs
PORTAL_CSP = (
    "default-src 'self'; img-src 'self' blob:; base-uri 'none'; object-src 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


async def portal_page(request: Request) -> Response:
    """The portal page; the token in its path is read by the page's script, not here."""
    return FileResponse(
        frontend_root() / "portal" / "index.html",
        media_type="text/html",
        headers={"content-security-policy": PORTAL_CSP},
    )


async def portal_notice(request: Request) -> Response:
    notice = await _linked_notice(request)
    body = await notice_json(request.state.session, services(request), notice)
    body["link_expires_at"] = await _link_expiry(request)
    return JSONResponse(body)


async def portal_redacted(request: Request) -> Response:
    """The blurred copy of one of this notice's items (only if staff attached one)."""
    notice = await _linked_notice(request)
    return await redacted_response(request, notice)


async def redacted_response(request: Request, notice: Notice) -> Response:
    """An item's redacted copy, if the item is `notice`'s and has one; 404 otherwise."""
    session = request.state.session
    item = await session.get(NoticeItem, request.path_params["item_id"])
    if item is None or item.notice_id != notice.id:
        raise NotFound("no such item of this notice")
    copy = await redacted_copy(session, services(request), item)
    if copy is None:
        raise NotFound("no redacted copy of this item")
    data, media_type = copy
    return Response(data, media_type=media_type, headers={"cache-control": "no-store"})


async def _link_expiry(request: Request) -> str | None:
    row = await request.state.session.get(NoticeToken, request.state.portal_link_id)
    return iso(row.expires_at) if row is not None else None


async def portal_receipt(request: Request) -> Response:
    """The reviewer opened the notice: receipt is confirmed (once)."""
    found = services(request)
    notice = await _linked_notice(request, for_update=True)
    confirmed = False
    if NoticeStatus(notice.status) in ANSWERABLE:
        confirmed = await confirm_receipt(
            request.state.session,
            found,
            notice,
            via=AnswerVia.portal,
            actor=_platform_actor(notice),
        )
    if confirmed:
        for channel, message in changed(notice):
            publish_after_commit(request, channel, message)
    return JSONResponse(
        {
            "confirmed": confirmed,
            "status": notice.status,
            "receipt_confirmed_at": iso(notice.receipt_confirmed_at),
        }
    )


async def portal_answers(request: Request) -> Response:
    found = services(request)
    answer_set = read_answers(await request.body())
    notice = await _linked_notice(request, for_update=True)
    applied = await apply_answers(
        request.state.session,
        found,
        notice,
        answer_set,
        via=AnswerVia.portal,
        actor=_platform_actor(notice),
    )
    for channel, message in applied.notifications:
        publish_after_commit(request, channel, message)
    return JSONResponse(applied.as_json())


# ---------------------------------------------------------------- staff: the links of a notice


def _link_json(row: NoticeToken, now: datetime) -> dict[str, Any]:
    expires = as_utc(row.expires_at)
    return {
        "id": row.id,
        "created_at": iso(row.created_at),
        "expires_at": iso(expires),
        "revoked_at": iso(row.revoked_at),
        "active": row.revoked_at is None and expires > now,
    }


async def list_links(request: Request) -> Response:
    notice = await notice_for_staff(request)
    rows = (
        (
            await request.state.session.execute(
                select(NoticeToken)
                .where(col(NoticeToken.notice_id) == notice.id)
                .order_by(col(NoticeToken.created_at))
            )
        )
        .scalars()
        .all()
    )
    now = services(request).clock.now()
    return JSONResponse({"links": [_link_json(row, now) for row in rows]})


async def revoke_link(request: Request) -> Response:
    found = services(request)
    notice = await notice_for_staff(request)
    row = await request.state.session.get(NoticeToken, request.path_params["link_id"])
    if row is None or row.notice_id != notice.id:
        raise NotFound("no such link")
    if row.revoked_at is None:
        row.revoked_at = found.clock.now()
        await record(
            request.state.session,
            found.clock,
            actor=f"staff:{request.state.principal.id}",
            action="notice.portal_link_revoked",
            target=f"notice:{notice.id}",
            details={"link": row.id},
        )
    return JSONResponse(_link_json(row, found.clock.now()))


def portal_routes() -> list[BaseRoute]:
    links = "/api/staff/notices/{notice_id}/portal-links"
    agent = staff()
    return [
        route(PAGE_PATH, portal_page, access=PUBLIC),
        route("/api/portal/notice", portal_notice, access=PORTAL_ACCESS),
        route("/api/portal/receipt", portal_receipt, access=PORTAL_ACCESS, methods=["POST"]),
        route("/api/portal/answers", portal_answers, access=PORTAL_ACCESS, methods=["POST"]),
        route("/api/portal/items/{item_id}/redacted", portal_redacted, access=PORTAL_ACCESS),
        route(links, list_links, access=agent),
        route(f"{links}/{{link_id}}/revoke", revoke_link, access=agent, methods=["POST"]),
    ]
