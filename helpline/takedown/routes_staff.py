"""Staff endpoints of the takedown engine. Contract: docs/api/takedown.md.

Who may see a notice's content (URLs, explanation): supervisors and admins any; an agent the
notices of a case assigned to them, the notices they wrote or approved, and notices awaiting
approval (so that any colleague can be the second pair of eyes). The notices view itself
(`GET /api/staff/notices`) shows no content, only references, platforms, states and clocks.
Reading a notice's content is audited (`notice.open`).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Forbidden, Invalid, NotFound
from helpline.core.http import Principal, Schema, after_commit, parse_body, route, services
from helpline.core.services import Services
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff, is_supervisor, staff_names
from helpline.staff.models import Role
from helpline.takedown import builder, delivery, escalation, platforms, recheck, service, state
from helpline.takedown.codes import (
    AUTOMATED_DECISIONS,
    CONTENT_TYPES,
    DECISION_GROUNDS,
    DECISION_VISIBILITY,
    LEGAL_BASES,
    default_legal_basis,
    keywords_for,
    notice_categories,
)
from helpline.takedown.models import (
    Notice,
    NoticeEscalation,
    NoticeHistory,
    NoticeUrl,
    Platform,
    notice_scope,
)
from helpline.takedown.sla import clock_json
from helpline.takedown.states import (
    DECIDED,
    LADDER,
    OPEN,
    TRANSITIONS,
    EscalationStatus,
    EscalationStep,
    NoticeStatus,
)
from helpline.triage.vocabulary import CATEGORIES

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)
ADMIN = staff(Role.admin)
S = NoticeStatus
LIST_LIMIT = 500
NOTICE_FILTERS = frozenset({"scope", "platform", "status"})


def _staff_id(request: Request) -> str:
    staff_id: str = request.state.principal.id
    return staff_id


def _when(moment: datetime | None) -> str | None:
    return builder.iso(moment) if moment is not None else None


def _person(staff_id: str | None, names: dict[str, str]) -> dict[str, str] | None:
    return {"id": staff_id, "name": names.get(staff_id, "")} if staff_id else None


def _announce(request: Request, notice: Notice) -> None:
    found = services(request)
    after_commit(request, lambda: delivery.announce(found, notice))
    after_commit(request, lambda: _wake(found))


async def _wake(found: Services) -> None:
    found.outbox.wake()


# ---------------------------------------------------------------- access to one notice


async def may_read(session: AsyncSession, principal: Principal, notice: Notice) -> bool:
    if is_supervisor(principal):
        return True
    if principal.id in (notice.created_by, notice.approved_by):
        return True
    if notice.status == S.awaiting_approval:
        return True
    if notice.case_id is not None:
        case = await session.get(Case, notice.case_id)
        return case is not None and case.assigned_staff_id == principal.id
    return False


async def notice_for_staff(request: Request, *, for_update: bool = False) -> Notice:
    session: AsyncSession = request.state.session
    notice = await session.get(Notice, request.path_params["notice_id"], with_for_update=for_update)
    if notice is None:
        raise NotFound("no such notice")
    if not await may_read(session, request.state.principal, notice):
        raise Forbidden("this notice belongs to a case that is not yours")
    return notice


# ---------------------------------------------------------------- rendering


async def _platform_names(session: AsyncSession, ids: set[str]) -> dict[str, Platform]:
    if not ids:
        return {}
    rows = await session.execute(select(Platform).where(col(Platform.id).in_(ids)))
    return {p.id: p for p in rows.scalars().all()}


async def _url_statuses(session: AsyncSession, ids: list[str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {i: Counter() for i in ids}
    if ids:
        rows = await session.execute(
            select(col(NoticeUrl.notice_id), col(NoticeUrl.status)).where(
                col(NoticeUrl.notice_id).in_(ids)
            )
        )
        for notice_id, status in rows.all():
            counts[notice_id][status] += 1
    return counts


async def _pending_escalations(session: AsyncSession, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = await session.execute(
        select(col(NoticeEscalation.notice_id)).where(
            col(NoticeEscalation.notice_id).in_(ids),
            col(NoticeEscalation.status) == EscalationStatus.drafted,
        )
    )
    return set(rows.scalars().all())


async def render_summaries(
    session: AsyncSession, found: Services, notices: list[Notice]
) -> list[dict[str, Any]]:
    """Notices without content: what the notices view and a case's list show."""
    now = found.clock.now()
    ids = [n.id for n in notices]
    owners = await _platform_names(session, {n.platform_id for n in notices})
    names = await staff_names(
        session, [n.created_by for n in notices] + [n.approved_by for n in notices]
    )
    statuses = await _url_statuses(session, ids)
    pending = await _pending_escalations(session, ids)
    result = []
    for notice in notices:
        owner = owners.get(notice.platform_id)
        result.append(
            {
                "id": notice.id,
                "reference": notice.reference,
                "case_id": notice.case_id,
                "platform": {"id": owner.id, "name": owner.name, "slug": owner.slug}
                if owner
                else None,
                "status": notice.status,
                "category": notice.category,
                "dsa_category": notice.dsa_category,
                "dsa_keywords": [k for k in notice.dsa_keywords.split(",") if k],
                "legal_basis": notice.legal_basis,
                "language": notice.language,
                "delivery": notice.delivery,
                "notifier_included": notice.notifier_included,
                "approval": {
                    "required": notice.approval_required,
                    "approved_by": _person(notice.approved_by, names),
                    "approved_at": _when(notice.approved_at),
                },
                "created_by": _person(notice.created_by, names),
                "created_at": _when(notice.created_at),
                "queued_at": _when(notice.queued_at),
                "sent_at": _when(notice.sent_at),
                "due_at": _when(notice.due_at),
                "receipt_confirmed_at": _when(notice.receipt_confirmed_at),
                "decided_at": _when(notice.decided_at),
                "closed_at": _when(notice.closed_at),
                "clock": clock_json(notice, now),
                "url_statuses": dict(sorted(statuses[notice.id].items())),
                "escalation_pending": notice.id in pending,
            }
        )
    return result


async def render_notice(request: Request, notice: Notice, *, audit: bool) -> dict[str, Any]:
    """One notice with its content, history, escalations. A plain read is audited
    (`notice.open`); the answer to an action is not (the action itself is)."""
    session: AsyncSession = request.state.session
    found = services(request)
    parts = await builder.load_parts(session, found, notice)
    cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
    [summary] = await render_summaries(session, found, [notice])
    urls = []
    for row, url in parts.urls:
        answer = None
        if row.answered_at is not None:
            answer = {
                "decision_visibility": row.decision_visibility,
                "decision_account": row.decision_account,
                "decision_ground": row.decision_ground,
                "legal_ground": row.legal_ground,
                "explanation": cipher.decrypt_text(
                    row.explanation, table="notice_urls", row_id=row.id, field="explanation"
                )
                if row.explanation is not None
                else None,
                "automated_decision": row.automated_decision,
                "territorial_scope": [c for c in (row.territorial_scope or "").split(",") if c],
                "puid": row.puid,
                "answered_at": _when(row.answered_at),
                "answered_via": row.answered_via,
            }
        urls.append(
            {
                "id": row.id,
                "position": row.position,
                "url": url,
                "content_type": row.content_type,
                "evidence_item_id": row.evidence_item_id,
                "status": row.status,
                "answer": answer,
                "recheck": recheck.recheck_json(row),
            }
        )
    history = await session.execute(
        select(NoticeHistory)
        .where(col(NoticeHistory.notice_id) == notice.id)
        .order_by(col(NoticeHistory.at), col(NoticeHistory.seq), col(NoticeHistory.id))
    )
    positions = {row.id: row.position for row, _ in parts.urls}
    steps = await escalation.escalations_of(session, notice.id)
    detail = {
        **summary,
        "urls": urls,
        "items": [
            {
                "position": item.position,
                "evidence_item_id": item.evidence_item_id,
                "media_type": item.media_type,
                "sha256": item.sha256,
                "pdq": item.pdq,
                "pdq_quality": item.pdq_quality,
                "share_hashes": item.share_hashes,
                "attach_redacted": item.attach_redacted,
                "redacted_sha256": item.redacted_sha256,
            }
            for item in parts.items
        ],
        "explanation": parts.explanation,
        "ground": parts.ground,
        "document_sha256": notice.document_sha256,
        "kid": notice.kid,
        "history": [
            {
                "at": builder.iso(row.at),
                "actor": row.actor,
                "url": positions.get(row.url_id) if row.url_id else None,
                "from": row.from_status,
                "to": row.to_status,
                "details": json.loads(row.details),
            }
            for row in history.scalars()
        ],
        "escalations": [escalation.escalation_json(step, cipher) for step in steps],
        "web_form": None,
    }
    if notice.delivery == "web_form" and notice.status == S.queued:
        signed = await builder.stored_signed(session, found, notice)
        token = await delivery.current_portal_token(session, found, notice, cipher)
        if signed is not None:
            detail["web_form"] = {
                "url": parts.platform.web_form_url,
                "text": builder.render_text(
                    builder.document_of(signed),
                    portal_link=delivery.portal_link(found, token) if token else None,
                    due_at=None,
                ),
            }
    if audit:
        await _audit_open(request, notice)
    return detail


async def _audit_open(request: Request, notice: Notice) -> None:
    await record(
        request.state.session,
        services(request).clock,
        actor=f"staff:{_staff_id(request)}",
        action="notice.open",
        target=f"notice:{notice.id}",
    )


async def _answer(
    request: Request, notice: Notice, status: int = 200, *, audit: bool = False
) -> Response:
    return JSONResponse(await render_notice(request, notice, audit=audit), status_code=status)


# ---------------------------------------------------------------- vocabulary and rules


async def vocabulary(request: Request) -> Response:
    categories = []
    for code in notice_categories():
        category = CATEGORIES[code]
        categories.append(
            {
                "code": code,
                "dsa_category": category.dsa_category,
                "keywords": list(keywords_for(code)),
                "legal_basis": default_legal_basis(code),
            }
        )
    return JSONResponse(
        {
            "categories": categories,
            "legal_bases": [
                {
                    "code": basis.code,
                    "citation": basis.citation,
                    "categories": list(basis.categories),
                    "verified": basis.verified,
                }
                for basis in LEGAL_BASES.values()
            ],
            "content_types": list(CONTENT_TYPES),
            "statuses": [s.value for s in NoticeStatus],
            "transitions": {k.value: sorted(v.value for v in TRANSITIONS[k]) for k in TRANSITIONS},
            "escalation_steps": [step.value for step in LADDER],
            "answers": {
                "decision_visibility": list(DECISION_VISIBILITY),
                "decision_ground": list(DECISION_GROUNDS),
                "automated_decision": list(AUTOMATED_DECISIONS),
            },
            "languages": list(builder.LANGUAGES),
        }
    )


async def get_approval_rules(request: Request) -> Response:
    rules = await service.approval_rules(request.state.session)
    return JSONResponse({"categories": sorted(rules)})


class RulesBody(Schema):
    categories: list[str] = Field(max_length=20)


async def put_approval_rules(request: Request) -> Response:
    body = await parse_body(request, RulesBody)
    chosen = await service.set_approval_rules(
        request.state.session, services(request), body.categories, staff_id=_staff_id(request)
    )
    return JSONResponse({"categories": chosen})


# ---------------------------------------------------------------- platforms


class PlatformBody(Schema):
    name: str = Field(max_length=200)
    slug: str = Field(max_length=100)
    delivery: Literal["email", "api", "web_form"]
    contact_email: str | None = Field(default=None, max_length=254)
    endpoint_url: str | None = Field(default=None, max_length=500)
    web_form_url: str | None = Field(default=None, max_length=500)
    languages: list[str] = Field(default_factory=lambda: ["en"], max_length=10)
    escalation_email: str | None = Field(default=None, max_length=254)
    complaint_email: str | None = Field(default=None, max_length=254)
    sla_hours: int | None = None
    flagger_reference: str | None = Field(default=None, max_length=200)
    active: bool = True

    def fields(self) -> platforms.PlatformFields:
        return platforms.PlatformFields(**self.model_dump())


async def list_platforms(request: Request) -> Response:
    rows = await platforms.all_platforms(request.state.session)
    return JSONResponse({"platforms": [platforms.platform_json(p) for p in rows]})


async def create_platform(request: Request) -> Response:
    body = await parse_body(request, PlatformBody)
    found = services(request)
    platform = await platforms.create_platform(
        request.state.session, found.clock, found.settings, body.fields()
    )
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{_staff_id(request)}",
        action="platform.create",
        target=f"platform:{platform.id}",
        details={"slug": platform.slug, "delivery": platform.delivery},
    )
    return JSONResponse(platforms.platform_json(platform), status_code=201)


async def get_platform(request: Request) -> Response:
    platform = await platforms.get_platform(
        request.state.session, request.path_params["platform_id"]
    )
    return JSONResponse(platforms.platform_json(platform))


async def update_platform(request: Request) -> Response:
    body = await parse_body(request, PlatformBody)
    found = services(request)
    session = request.state.session
    platform = await platforms.get_platform(session, request.path_params["platform_id"])
    await platforms.update_platform(session, found.clock, found.settings, platform, body.fields())
    await record(
        session,
        found.clock,
        actor=f"staff:{_staff_id(request)}",
        action="platform.update",
        target=f"platform:{platform.id}",
        details={"slug": platform.slug, "delivery": platform.delivery, "active": platform.active},
    )
    return JSONResponse(platforms.platform_json(platform))


async def delete_platform(request: Request) -> Response:
    session = request.state.session
    platform = await platforms.get_platform(session, request.path_params["platform_id"])
    await platforms.delete_platform(session, platform)
    await record(
        session,
        services(request).clock,
        actor=f"staff:{_staff_id(request)}",
        action="platform.delete",
        target=f"platform:{platform.id}",
    )
    return JSONResponse({"deleted": True})


async def issue_api_key(request: Request) -> Response:
    session = request.state.session
    found = services(request)
    platform = await platforms.get_platform(session, request.path_params["platform_id"])
    key = await platforms.issue_api_key(session, found.clock, platform)
    await record(
        session,
        found.clock,
        actor=f"staff:{_staff_id(request)}",
        action="platform.api_key",
        target=f"platform:{platform.id}",
        details={"prefix": platform.api_key_prefix},
    )
    return JSONResponse(
        {"api_key": key, "prefix": platform.api_key_prefix, "shown_once": True}, status_code=201
    )


async def revoke_api_key(request: Request) -> Response:
    session = request.state.session
    found = services(request)
    platform = await platforms.get_platform(session, request.path_params["platform_id"])
    await platforms.revoke_api_key(session, found.clock, platform)
    await record(
        session,
        found.clock,
        actor=f"staff:{_staff_id(request)}",
        action="platform.api_key_revoked",
        target=f"platform:{platform.id}",
    )
    return JSONResponse(platforms.platform_json(platform))


# ---------------------------------------------------------------- a case's notices


class UrlBody(Schema):
    url: str | None = Field(default=None, max_length=4096)
    evidence_item_id: str | None = Field(default=None, max_length=32)
    content_type: str | None = Field(default=None, max_length=40)


class ItemBody(Schema):
    evidence_item_id: str = Field(max_length=32)
    share_hashes: bool = True
    attach_redacted: bool = False


class NoticeBody(Schema):
    platform_id: str = Field(max_length=32)
    urls: list[UrlBody] = Field(max_length=builder.MAX_URLS)
    items: list[ItemBody] = Field(default_factory=list, max_length=builder.MAX_ITEMS)
    category: str | None = Field(default=None, max_length=40)
    legal_basis: str | None = Field(default=None, max_length=40)
    ground: str | None = Field(default=None, max_length=builder.MAX_GROUND)
    explanation: str | None = Field(default=None, max_length=builder.MAX_EXPLANATION)
    language: Literal["nl", "en"] | None = None
    keywords: list[str] | None = Field(default=None, max_length=5)
    against_women: bool = False


async def case_notices(request: Request) -> Response:
    case = await case_for_staff(request)
    session = request.state.session
    found = services(request)
    notices = await service.notices_of_case(session, case.id)
    return JSONResponse(
        {
            "notices": await render_summaries(session, found, notices),
            "now": builder.iso(found.clock.now()),
        }
    )


async def create_notice(request: Request) -> Response:
    case = await case_for_staff(request, for_update=True)
    body = await parse_body(request, NoticeBody)
    notice = await builder.create_notice(
        request.state.session,
        services(request),
        case,
        staff_id=_staff_id(request),
        request=builder.NoticeRequest(
            platform_id=body.platform_id,
            urls=[builder.UrlChoice(**u.model_dump()) for u in body.urls],
            items=[builder.ItemChoice(**i.model_dump()) for i in body.items],
            category=body.category,
            legal_basis=body.legal_basis,
            ground=body.ground,
            explanation=body.explanation,
            language=body.language,
            keywords=body.keywords,
            against_women=body.against_women,
        ),
    )
    _announce(request, notice)
    return await _answer(request, notice, 201)


# ---------------------------------------------------------------- the notices view


def _sort_key(notice: Notice, now: datetime) -> tuple[int, float]:
    """Overdue first (most overdue first), then by deadline, then what waits on us
    (approval, pasting), then drafts, then decided (newest first)."""
    if notice.status in OPEN and notice.due_at is not None:
        due = as_utc(notice.due_at).timestamp()
        return (0 if due <= now.timestamp() else 1, due)
    order = {S.awaiting_approval: 2, S.queued: 3, S.draft: 4}
    group = order.get(NoticeStatus(notice.status), 5)
    return (group, -as_utc(notice.updated_at).timestamp())


async def list_notices(request: Request) -> Response:
    query_params = request.query_params
    unknown = set(query_params) - NOTICE_FILTERS
    if unknown:
        raise Invalid(f"unknown filter {sorted(unknown)[0]!r}")
    scope = query_params.get("scope", "active")
    if scope not in ("active", "all"):
        raise Invalid("scope: active or all")
    session: AsyncSession = request.state.session
    found = services(request)
    query = select(Notice)
    if "status" in query_params:
        status = query_params["status"]
        if status not in {s.value for s in NoticeStatus}:
            raise Invalid("status: unknown status")
        query = query.where(col(Notice.status) == status)
    elif scope == "active":
        closed = [s.value for s in DECIDED] + [S.withdrawn.value]
        query = query.where(col(Notice.status).not_in(closed))
    if "platform" in query_params:
        slug = query_params["platform"]
        found_platform = await session.execute(
            select(col(Platform.id)).where(col(Platform.slug) == slug)
        )
        platform_id = found_platform.scalar_one_or_none()
        if platform_id is None:
            raise Invalid("platform: no platform with that slug")
        query = query.where(col(Notice.platform_id) == platform_id)
    notices = list((await session.execute(query)).scalars().all())
    now = found.clock.now()
    notices.sort(key=lambda n: _sort_key(n, now))
    truncated = len(notices) > LIST_LIMIT
    return JSONResponse(
        {
            "notices": await render_summaries(session, found, notices[:LIST_LIMIT]),
            "now": builder.iso(now),
            "truncated": truncated,
        }
    )


# ---------------------------------------------------------------- one notice


async def get_notice(request: Request) -> Response:
    return await _answer(request, await notice_for_staff(request), audit=True)


async def preview_notice(request: Request) -> Response:
    """What the platform gets: the JSON document, the HTML, the e-mail's text. A draft's is
    built now and unsigned; a queued or sent notice's is the signed one, byte for byte."""
    notice = await notice_for_staff(request)
    session = request.state.session
    found = services(request)
    signed = await builder.stored_signed(session, found, notice)
    if signed is None:
        parts = await builder.load_parts(session, found, notice)
        document = builder.build_document(parts, found, issued_at=found.clock.now())
        html_text = builder.render_html(document)
        signatures = None
    else:
        document = builder.document_of(signed)
        html_text = signed.html_bytes.decode("utf-8")
        signatures = signed.envelope(builder.keys_url(found))
    platform = await session.get(Platform, notice.platform_id)
    await _audit_open(request, notice)
    return JSONResponse(
        {
            "signed": signed is not None,
            "document": document,
            "html": html_text,
            "signatures": signatures,
            "email": {
                "to": platform.contact_email if platform else None,
                "subject": builder.subject_of(document),
                "text": builder.render_text(document, portal_link=None, due_at=None),
            },
        }
    )


async def _act(request: Request, action: Any) -> Response:
    notice = await notice_for_staff(request, for_update=True)
    await action(request.state.session, services(request), notice, staff_id=_staff_id(request))
    _announce(request, notice)
    return await _answer(request, notice)


async def send_notice(request: Request) -> Response:
    return await _act(request, service.send)


async def approve_notice(request: Request) -> Response:
    return await _act(request, service.approve)


async def reject_notice(request: Request) -> Response:
    return await _act(request, service.reject)


async def withdraw_notice(request: Request) -> Response:
    return await _act(request, service.withdraw)


async def submitted_notice(request: Request) -> Response:
    return await _act(request, service.mark_submitted)


async def receipt_notice(request: Request) -> Response:
    notice = await notice_for_staff(request, for_update=True)
    await service.confirm_receipt(
        request.state.session,
        services(request),
        notice,
        actor=f"staff:{_staff_id(request)}",
        details={"via": "staff"},
    )
    _announce(request, notice)
    return await _answer(request, notice)


class OutcomeBody(Schema):
    status: Literal["honoured", "partly_honoured", "declined"]
    decision_visibility: str | None = Field(default=None, max_length=60)
    decision_ground: str | None = Field(default=None, max_length=60)
    legal_ground: str | None = Field(default=None, max_length=500)
    explanation: str | None = Field(default=None, max_length=4000)


async def url_outcome(request: Request) -> Response:
    notice = await notice_for_staff(request, for_update=True)
    body = await parse_body(request, OutcomeBody)
    if body.decision_visibility is not None and body.decision_visibility not in DECISION_VISIBILITY:
        raise Invalid("decision_visibility: unknown code")
    if body.decision_ground is not None and body.decision_ground not in DECISION_GROUNDS:
        raise Invalid("decision_ground: unknown code")
    session: AsyncSession = request.state.session
    url = await session.get(NoticeUrl, request.path_params["url_id"])
    if url is None or url.notice_id != notice.id:
        raise NotFound("no such URL in this notice")
    await service.staff_outcome(
        session,
        services(request),
        notice,
        url,
        state.Answer(
            status=NoticeStatus(body.status),
            decision_visibility=body.decision_visibility,
            decision_ground=body.decision_ground,
            legal_ground=body.legal_ground,
            explanation=body.explanation,
        ),
        staff_id=_staff_id(request),
    )
    _announce(request, notice)
    return await _answer(request, notice)


async def recheck_urls(request: Request) -> Response:
    """Re-check the notice's URLs now (the fetches run outside the request's transaction)."""
    found = services(request)
    async with found.db.transaction() as session:
        notice = await session.get(Notice, request.path_params["notice_id"])
        if notice is None:
            raise NotFound("no such notice")
        if not await may_read(session, request.state.principal, notice):
            raise Forbidden("this notice belongs to a case that is not yours")
    await recheck.recheck_notice(found, notice.id, actor=f"staff:{_staff_id(request)}")
    fresh = await request.state.session.get(Notice, notice.id)
    if fresh is None:
        raise NotFound("no such notice")
    return await _answer(request, fresh)


class DraftBody(Schema):
    step: Literal["escalation_contact", "internal_complaint", "dsc_complaint"]


async def draft_escalation(request: Request) -> Response:
    notice = await notice_for_staff(request, for_update=True)
    body = await parse_body(request, DraftBody)
    session = request.state.session
    platform = await session.get(Platform, notice.platform_id)
    if platform is None:
        raise NotFound("the notice's platform no longer exists")
    await escalation.draft_step(
        session,
        services(request),
        notice,
        platform,
        EscalationStep(body.step),
        actor=f"staff:{_staff_id(request)}",
    )
    _announce(request, notice)
    return await _answer(request, notice, 201)


class DecideBody(Schema):
    text: str | None = Field(default=None, max_length=escalation.MAX_TEXT * 2)


async def _decide(request: Request, *, approve: bool) -> Response:
    notice = await notice_for_staff(request, for_update=True)
    body = await parse_body(request, DecideBody)
    session = request.state.session
    step = request.path_params["step"]
    if step not in {s.value for s in EscalationStep}:
        raise NotFound("no such escalation step")
    rows = await session.execute(
        select(NoticeEscalation).where(
            col(NoticeEscalation.notice_id) == notice.id, col(NoticeEscalation.step) == step
        )
    )
    found_step = rows.scalar_one_or_none()
    if found_step is None:
        raise NotFound("this step was not drafted")
    await escalation.decide_step(
        session,
        services(request),
        notice,
        found_step,
        staff_id=_staff_id(request),
        approve=approve,
        text=body.text if approve else None,
    )
    _announce(request, notice)
    return await _answer(request, notice)


async def approve_escalation(request: Request) -> Response:
    return await _decide(request, approve=True)


async def dismiss_escalation(request: Request) -> Response:
    return await _decide(request, approve=False)


async def new_portal_link(request: Request) -> Response:
    """A fresh portal link for the platform (e.g. after revoking a leaked one); shown once."""
    notice = await notice_for_staff(request)
    if notice.sent_at is None and notice.status != S.queued:
        raise state.BadTransition("a notice gets a portal link once it is queued")
    found = services(request)
    token = await delivery.issue_portal_token(request.state.session, found, notice.id)
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{_staff_id(request)}",
        action="notice.portal_link",
        target=f"notice:{notice.id}",
    )
    return JSONResponse({"url": delivery.portal_link(found, token)}, status_code=201)


def takedown_staff_routes() -> list[BaseRoute]:
    notice = "/api/staff/notices/{notice_id}"
    platform = "/api/staff/platforms/{platform_id}"
    return [
        route("/api/staff/takedown/vocabulary", vocabulary, access=AGENT),
        route("/api/staff/takedown/approval-rules", get_approval_rules, access=AGENT),
        route(
            "/api/staff/takedown/approval-rules",
            put_approval_rules,
            access=SUPERVISOR,
            methods=["PUT"],
        ),
        route("/api/staff/platforms", list_platforms, access=AGENT),
        route("/api/staff/platforms", create_platform, access=ADMIN, methods=["POST"]),
        route(platform, get_platform, access=AGENT),
        route(platform, update_platform, access=ADMIN, methods=["PUT"]),
        route(platform, delete_platform, access=ADMIN, methods=["DELETE"]),
        route(f"{platform}/api-key", issue_api_key, access=ADMIN, methods=["POST"]),
        route(f"{platform}/api-key", revoke_api_key, access=ADMIN, methods=["DELETE"]),
        route("/api/staff/cases/{case_id}/notices", case_notices, access=AGENT),
        route("/api/staff/cases/{case_id}/notices", create_notice, access=AGENT, methods=["POST"]),
        route("/api/staff/notices", list_notices, access=AGENT),
        route(notice, get_notice, access=AGENT),
        route(f"{notice}/preview", preview_notice, access=AGENT),
        route(f"{notice}/send", send_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/approve", approve_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/reject", reject_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/withdraw", withdraw_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/submitted", submitted_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/receipt", receipt_notice, access=AGENT, methods=["POST"]),
        route(f"{notice}/urls/{{url_id}}/outcome", url_outcome, access=AGENT, methods=["POST"]),
        route(f"{notice}/recheck", recheck_urls, access=AGENT, methods=["POST"]),
        route(f"{notice}/portal-link", new_portal_link, access=AGENT, methods=["POST"]),
        route(f"{notice}/escalations", draft_escalation, access=AGENT, methods=["POST"]),
        route(
            f"{notice}/escalations/{{step}}/approve",
            approve_escalation,
            access=AGENT,
            methods=["POST"],
        ),
        route(
            f"{notice}/escalations/{{step}}/dismiss",
            dismiss_escalation,
            access=AGENT,
            methods=["POST"],
        ),
    ]
