"""A platform's e-mail about a notice, threaded back to it, for staff to read and confirm.

A notice e-mail carries a reply token (`delivery.reply_token`, its SHA-256 in
`notices.reply_token_hash`) in its Reply-To address (`help+<token>@…`) and Message-ID
(`<hl-<token>@…>`), as the helpline's mail to victims does (helpline/intake/email/tokens.py).
A mail that names the token — an answer, a question, an auto-reply confirming receipt — is
claimed before the case path sees it (`claim_notice_reply`, registered with the e-mail
intake by `register_notice_replies`): its text is kept under the notice key as a
`notice_replies` row and the case's timeline gets a `notice_reply` entry. Nothing in it is
applied by itself: staff read it and confirm, entering the platform's decision in the
answer shape (`POST …/replies/{id}/confirm`), which then counts as answered `via: email`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.audit import record
from helpline.core.errors import Conflict, NotFound
from helpline.core.http import publish_after_commit, route, services
from helpline.core.services import Services
from helpline.intake.email import tokens
from helpline.intake.email.inbound import Envelope, Outcome, register_claimer
from helpline.intake.email.parse import Mail
from helpline.intake.email.text import trim_quoted_reply
from helpline.staff.auth import staff
from helpline.takedown.answers import (
    REPLIES_TABLE,
    add_reply,
    apply_answers,
    changed,
    read_answers,
    tell_the_case,
)
from helpline.takedown.models import Notice, NoticeReply, notice_scope
from helpline.takedown.platform_view import iso
from helpline.takedown.routes_staff import notice_for_staff
from helpline.takedown.states import AnswerVia

MAX_REPLY_CHARS = 20_000
ACTOR = "email"


def reply_text(mail: Mail) -> str:
    """What staff read: the subject and the new text (the quoted notice cut off)."""
    parts = [f"Subject: {mail.subject}" if mail.subject else "", trim_quoted_reply(mail.text)]
    if mail.attachments:
        parts.append(f"[{len(mail.attachments)} attachment(s), not kept]")
    text = "\n\n".join(p for p in parts if p.strip()) or "(an e-mail without text)"
    return text[:MAX_REPLY_CHARS]


def reply_id_for(found: Services, mail: Mail, raw: bytes) -> str:
    """A keyed hash of the mail's Message-ID (or bytes) as the row id: a mail delivered twice
    is stored once, and the id says nothing about the mail."""
    key = found.keyring.master.derive("notice-reply-ids")
    subject = mail.message_id.encode() if mail.message_id else hashlib.sha256(raw).digest()
    return hmac.new(key, subject, hashlib.sha256).hexdigest()[:32]


async def claim_notice_reply(
    found: Services, envelope: Envelope, mail: Mail, raw: bytes, candidates: list[str]
) -> Outcome | None:
    """The e-mail claimer: a mail naming a notice's reply token becomes a notice reply."""
    hashes = [tokens.token_hash(token) for token in candidates]
    reply_id = reply_id_for(found, mail, raw)
    try:
        async with found.db.transaction() as session:
            notice = (
                await session.execute(
                    select(Notice).where(col(Notice.reply_token_hash).in_(hashes))
                )
            ).scalar_one_or_none()
            if notice is None:
                return None
            if await session.get(NoticeReply, reply_id) is not None:
                return Outcome("duplicate")
            reply = await add_reply(
                session,
                found,
                notice,
                via=AnswerVia.email,
                kind="reply",
                text=reply_text(mail),
                reply_id=reply_id,
            )
            notifications = changed(notice) + await tell_the_case(
                session,
                found,
                notice,
                actor=ACTOR,
                kind="notice_reply",
                details={"reply_id": reply.id, "via": AnswerVia.email.value},
            )
            await record(
                session,
                found.clock,
                actor=ACTOR,
                action="notice.reply_received",
                target=f"notice:{notice.id}",
                details={"reply": reply.id},
            )
    except IntegrityError:  # the same mail, delivered twice at the same moment
        return Outcome("duplicate")
    return Outcome("notice_reply", notifications=notifications)


def register_notice_replies(found: Services) -> None:
    """Let the e-mail intake thread platforms' replies to their notices (once per Services)."""
    register_claimer(found, "notice-replies", claim_notice_reply)


# ---------------------------------------------------------------- staff


async def _reply_json(
    found: Services, session: AsyncSession, notice: Notice, row: NoticeReply
) -> dict[str, Any]:
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    return {
        "id": row.id,
        "url_id": row.url_id,
        "via": row.via,
        "kind": row.kind,
        "text": cipher.decrypt_text(row.body, table=REPLIES_TABLE, row_id=row.id, field="body"),
        "received_at": iso(row.received_at),
        "confirmed_by": row.confirmed_by,
        "confirmed_at": iso(row.confirmed_at),
    }


async def list_replies(request: Request) -> Response:
    """What platforms wrote about a notice (e-mail replies, questions), oldest first."""
    found, session = services(request), request.state.session
    notice = await notice_for_staff(request)
    rows = (
        (
            await session.execute(
                select(NoticeReply)
                .where(col(NoticeReply.notice_id) == notice.id)
                .order_by(col(NoticeReply.received_at), col(NoticeReply.id))
            )
        )
        .scalars()
        .all()
    )
    return JSONResponse({"replies": [await _reply_json(found, session, notice, r) for r in rows]})


async def confirm_reply(request: Request) -> Response:
    """Staff have read a reply. With `answers` (the answer shape) they enter the decision it
    states, which is applied as the platform's answer `via` the reply's channel."""
    found, session = services(request), request.state.session
    notice = await notice_for_staff(request, for_update=True)
    reply = await session.get(NoticeReply, request.path_params["reply_id"])
    if reply is None or reply.notice_id != notice.id:
        raise NotFound("no such reply")
    if reply.confirmed_at is not None:
        raise Conflict("this reply was confirmed already")
    raw = (await request.body()).strip()
    answers = read_answers(raw) if raw not in (b"", b"{}") else None
    staff_id: str = request.state.principal.id
    applied = None
    if answers is not None:
        applied = await apply_answers(
            session, found, notice, answers, via=AnswerVia(reply.via), actor=f"staff:{staff_id}"
        )
        for channel, message in applied.notifications:
            publish_after_commit(request, channel, message)
    reply.confirmed_by, reply.confirmed_at = staff_id, found.clock.now()
    await record(
        session,
        found.clock,
        actor=f"staff:{staff_id}",
        action="notice.reply_confirmed",
        target=f"notice:{notice.id}",
        details={"reply": reply.id, "answers": len(answers.answers) if answers else 0},
    )
    body = await _reply_json(found, session, notice, reply)
    body["applied"] = applied.as_json() if applied is not None else None
    return JSONResponse(body)


def reply_routes() -> list[BaseRoute]:
    replies = "/api/staff/notices/{notice_id}/replies"
    agent = staff()
    return [
        route(replies, list_replies, access=agent),
        route(f"{replies}/{{reply_id}}/confirm", confirm_reply, access=agent, methods=["POST"]),
    ]
