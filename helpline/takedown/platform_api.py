"""The platform API: a platform's systems list the notices addressed to it, fetch one, confirm
receipt and post outcomes, with the API key the helpline issued (`Authorization: Bearer
hlk_…`; only the key's SHA-256 is stored, in `platforms.api_key_hash`).

A platform sees its own delivered notices only; any other notice id is 404, as if it did not
exist. Answers have the shape of `helpline.takedown.answers.AnswerSet`, whose JSON schema is
served (public) at `/api/platform/schema/answer.json`. docs/api/platform.md is the contract.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.errors import Invalid, NotFound
from helpline.core.http import (
    PUBLIC,
    Authenticated,
    Authenticator,
    Principal,
    publish_after_commit,
    route,
    services,
)
from helpline.takedown.answers import (
    answer_schema,
    apply_answers,
    changed,
    confirm_receipt,
    read_answers,
)
from helpline.takedown.models import Notice, NoticeUrl, Platform
from helpline.takedown.platform_view import notice_json, summary_json
from helpline.takedown.platforms import API_KEY_PREFIX, platform_of_api_key
from helpline.takedown.portal import bearer_token, redacted_response
from helpline.takedown.states import OPEN, AnswerVia, NoticeStatus

PLATFORM = "platform"  # the access kind of a platform API key
PLATFORM_ACCESS = Authenticated(PLATFORM, description="platform API key")
MAX_LIMIT = 200


async def platform_authenticator(connection: HTTPConnection) -> Principal | None:
    """The platform whose (active) API key is the Bearer token, or None."""
    key = bearer_token(connection)
    if key is None or not key.startswith(API_KEY_PREFIX):
        return None
    async with services(connection).db.transaction() as session:
        platform = await platform_of_api_key(session, key)
    return Principal(PLATFORM, id=platform.id) if platform is not None else None


def register_platform_api(authenticators: dict[str, Authenticator]) -> None:
    """Register the platform API key authenticator (kind `platform`)."""
    authenticators[PLATFORM] = platform_authenticator


def _actor(request: Request) -> str:
    return f"platform:{request.state.principal.id}"


async def _own_notice(request: Request, *, for_update: bool = False) -> Notice:
    """The notice in the path (its id or its reference), if it was delivered to this platform."""
    wanted = request.path_params["notice"]
    session = request.state.session
    query = select(Notice).where(
        col(Notice.platform_id) == request.state.principal.id,
        col(Notice.sent_at).is_not(None),
        (col(Notice.id) == wanted) | (col(Notice.reference) == wanted.upper()),
    )
    if for_update:
        query = query.with_for_update()
    notice = (await session.execute(query)).scalar_one_or_none()
    if notice is None:
        raise NotFound("no such notice for this platform")
    assert isinstance(notice, Notice)
    return notice


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


async def me(request: Request) -> Response:
    """Which platform this key belongs to (to check a key works)."""
    platform = await request.state.session.get(Platform, request.state.principal.id)
    assert platform is not None
    return JSONResponse(
        {
            "id": platform.id,
            "name": platform.name,
            "slug": platform.slug,
            "sla_hours": platform.sla_hours,
            "flagger_reference": platform.flagger_reference,
        }
    )


async def list_notices(request: Request) -> Response:
    """Notices delivered to this platform, oldest first: `?status=open` (default: still
    waiting for a decision) or `all`; `limit` (1–200, default 100) and `offset`."""
    which = request.query_params.get("status", "open")
    if which not in ("open", "all"):
        raise Invalid("status must be open or all")
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    session = request.state.session
    conditions: list[Any] = [
        col(Notice.platform_id) == request.state.principal.id,
        col(Notice.sent_at).is_not(None),
    ]
    if which == "open":
        conditions.append(col(Notice.status).in_([s.value for s in OPEN]))
    total = (
        await session.execute(select(func.count()).select_from(Notice).where(*conditions))
    ).scalar_one()
    notices = (
        (
            await session.execute(
                select(Notice)
                .where(*conditions)
                .order_by(col(Notice.sent_at), col(Notice.id))
                .limit(limit)
                .offset(offset)
            )
        )
        .scalars()
        .all()
    )
    urls: dict[str, list[NoticeUrl]] = {n.id: [] for n in notices}
    if notices:
        rows = await session.execute(
            select(NoticeUrl).where(col(NoticeUrl.notice_id).in_(list(urls)))
        )
        for row in rows.scalars():
            urls[row.notice_id].append(row)
    return JSONResponse(
        {
            "notices": [summary_json(n, urls[n.id]) for n in notices],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


async def get_notice(request: Request) -> Response:
    """One notice; `?html=1` adds the signed readable version (base64 of the exact bytes)."""
    notice = await _own_notice(request)
    with_html = request.query_params.get("html") in ("1", "true")
    return JSONResponse(
        await notice_json(request.state.session, services(request), notice, with_html=with_html)
    )


async def get_redacted(request: Request) -> Response:
    """The blurred copy of an item of one of this platform's notices (`image/jpeg`)."""
    return await redacted_response(request, await _own_notice(request))


async def post_receipt(request: Request) -> Response:
    notice = await _own_notice(request, for_update=True)
    confirmed = False
    if notice.status != NoticeStatus.withdrawn:
        confirmed = await confirm_receipt(
            request.state.session,
            services(request),
            notice,
            via=AnswerVia.api,
            actor=_actor(request),
        )
    if confirmed:
        for channel, message in changed(notice):
            publish_after_commit(request, channel, message)
    return JSONResponse(
        {
            "confirmed": confirmed,
            "status": notice.status,
            "receipt_confirmed_at": notice.receipt_confirmed_at.isoformat()
            if notice.receipt_confirmed_at
            else None,
        }
    )


async def post_answers(request: Request) -> Response:
    answer_set = read_answers(await request.body())
    notice = await _own_notice(request, for_update=True)
    applied = await apply_answers(
        request.state.session,
        services(request),
        notice,
        answer_set,
        via=AnswerVia.api,
        actor=_actor(request),
    )
    for channel, message in applied.notifications:
        publish_after_commit(request, channel, message)
    return JSONResponse(applied.as_json())


async def schema(request: Request) -> Response:
    """The JSON schema of an answer (public: platforms build against it before they have a
    key)."""
    return JSONResponse(
        answer_schema(services(request).settings.base_url),
        media_type="application/schema+json",
    )


def platform_routes() -> list[BaseRoute]:
    notice = "/api/platform/notices/{notice}"
    return [
        route("/api/platform/schema/answer.json", schema, access=PUBLIC),
        route("/api/platform/me", me, access=PLATFORM_ACCESS),
        route("/api/platform/notices", list_notices, access=PLATFORM_ACCESS),
        route(notice, get_notice, access=PLATFORM_ACCESS),
        route(f"{notice}/items/{{item_id}}/redacted", get_redacted, access=PLATFORM_ACCESS),
        route(f"{notice}/receipt", post_receipt, access=PLATFORM_ACCESS, methods=["POST"]),
        route(f"{notice}/answers", post_answers, access=PLATFORM_ACCESS, methods=["POST"]),
    ]
