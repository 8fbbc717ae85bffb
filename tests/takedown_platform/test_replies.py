"""A platform's e-mail reply to a notice comes back to the notice (not to a case, not as a
victim message), is shown to staff as text, and changes nothing until staff confirm it."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from helpline.cases.models import Case, CaseEvent, Message
from helpline.core.config import Settings
from helpline.intake.email import smtp_listener, tokens
from helpline.intake.email.listener import Listener
from helpline.intake.email.models import QuarantinedEmail
from helpline.staff.models import Role
from helpline.takedown import delivery
from helpline.takedown.models import NoticeReply, notice_scope
from tests.takedown_platform.conftest import Desk, Sent, removed

HELPLINE = "help@helpline.test"
PLATFORM_DESK = "dsa@fotoforum.example.org"


@pytest.fixture
def settings(settings_for: Any, database_url: str) -> Settings:
    result: Settings = settings_for(database_url, inbound_addresses=HELPLINE, mail_from=HELPLINE)
    return result


@pytest.fixture
async def listener(desk: Desk) -> AsyncIterator[Listener]:
    async with smtp_listener(desk.services, host="127.0.0.1", port=0) as running:
        yield running


async def reply_token(desk: Desk, sent: Sent) -> str:
    async with desk.services.db.transaction() as session:
        cipher = await desk.services.keyring.cipher(session, notice_scope(sent.notice.id))
        return delivery.reply_token(cipher)


def platform_reply(
    desk: Desk, token: str, text: str, *, message_id: str | None = None, **headers: str
) -> EmailMessage:
    settings = desk.services.settings
    mail = EmailMessage()
    mail["From"] = f"Trust & Safety <{PLATFORM_DESK}>"
    mail["To"] = tokens.reply_address(settings, token)
    mail["Subject"] = "Re: Removal notice"
    mail["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@fotoforum.example.org>"
    mail["In-Reply-To"] = tokens.message_id_for(settings, token)
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    return mail


async def deliver(
    listener: Listener, mail: EmailMessage, to: str, sender: str = PLATFORM_DESK
) -> None:
    raw = mail.as_bytes(policy=SMTP_POLICY)

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            client.sendmail(sender, [to], raw)

    await asyncio.to_thread(send)


async def replies(desk: Desk) -> list[NoticeReply]:
    async with desk.services.db.transaction() as session:
        return list((await session.execute(select(NoticeReply))).scalars().all())


async def count(desk: Desk, table: Any) -> int:
    async with desk.services.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_reply_is_threaded_to_its_notice_and_applied_only_when_confirmed(
    desk: Desk, listener: Listener
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    token = await reply_token(desk, sent)
    cases, messages = await count(desk, Case), await count(desk, Message)
    text = (
        "Hello, we removed the first URL. The second one we are still looking at.\n\n"
        "On Thu, Jan 1, 2026, Helpline wrote:\n> Removal notice " + sent.notice.reference
    )
    mail = platform_reply(desk, token, text)
    await deliver(listener, mail, tokens.reply_address(desk.services.settings, token))
    # the same mail delivered again is kept once
    await deliver(listener, mail, tokens.reply_address(desk.services.settings, token))

    stored = await replies(desk)
    assert [(r.notice_id, r.via, r.kind, r.confirmed_at) for r in stored] == [
        (sent.notice.id, "email", "reply", None)
    ]
    # not a case, not a message; nothing applied by itself
    assert await count(desk, Case) == cases and await count(desk, Message) == messages
    assert (await desk.notice(sent.notice.id)).status == "sent"
    async with desk.services.db.transaction() as session:
        events = (
            (
                await session.execute(
                    select(CaseEvent).where(
                        col(CaseEvent.case_id) == sent.case.id,
                        col(CaseEvent.kind) == "notice_reply",
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(events) == 1 and events[0].text is None  # the text stays with the notice

    supervisor = await desk.staff_client("sanne", Role.supervisor)
    listed = await supervisor.get(f"/api/staff/notices/{sent.notice.id}/replies")
    assert listed.status_code == 200
    [shown] = listed.json()["replies"]
    assert shown["via"] == "email" and shown["kind"] == "reply"
    assert "we removed the first URL" in shown["text"]
    assert "Subject: Re: Removal notice" in shown["text"]
    assert "> Removal notice" not in shown["text"]  # the quoted notice is cut off

    first = sent.url_ids[0]
    confirmed = await supervisor.post(
        f"/api/staff/notices/{sent.notice.id}/replies/{shown['id']}/confirm",
        json={"answers": [removed(first, puid="unknown (e-mail)")]},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["applied"]["changed"] == [first]
    assert confirmed.json()["confirmed_by"] == supervisor.staff_id  # type: ignore[attr-defined]
    rows = {u.id: u for u in await desk.urls(sent.notice.id)}
    assert rows[first].status == "honoured" and rows[first].answered_via == "email"
    assert (await desk.notice(sent.notice.id)).status == "receipt_confirmed"

    again = await supervisor.post(
        f"/api/staff/notices/{sent.notice.id}/replies/{shown['id']}/confirm"
    )
    assert again.status_code == 409


async def test_confirming_without_answers_only_marks_it_read(
    desk: Desk, listener: Listener
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    token = await reply_token(desk, sent)
    # an auto-reply from the platform's ticket system still reaches the notice
    mail = platform_reply(
        desk, token, "Your report was received: ticket 88123.", Auto_Submitted="auto-replied"
    )
    await deliver(listener, mail, tokens.reply_address(desk.services.settings, token))
    [stored] = await replies(desk)
    supervisor = await desk.staff_client("sanne", Role.supervisor)
    path = f"/api/staff/notices/{sent.notice.id}/replies/{stored.id}/confirm"
    bad = await supervisor.post(path, json={"answers": [{"url_id": "x"}]})
    assert bad.status_code == 422
    done = await supervisor.post(path, json={})
    assert done.status_code == 200 and done.json()["applied"] is None
    assert (await desk.notice(sent.notice.id)).status == "sent"
    assert await count(desk, QuarantinedEmail) == 0


async def test_mail_that_is_not_about_a_notice_goes_its_usual_way(
    desk: Desk, listener: Listener
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    token = await reply_token(desk, sent)
    cases = await count(desk, Case)
    # no token at all: a new case, as before
    plain = platform_reply(desk, "0" * 32, "I need help with a photo.")
    del plain["In-Reply-To"]
    await deliver(listener, plain, HELPLINE, sender="someone@example.org")
    assert await count(desk, Case) == cases + 1
    # a bounce quoting the notice's token is never taken for the platform's answer
    bounce = platform_reply(desk, token, "Delivery failed.")
    await deliver(listener, bounce, tokens.reply_address(desk.services.settings, token), sender="")
    # nor is our own mail coming back
    own = platform_reply(desk, token, "loop")
    own.replace_header("From", HELPLINE)
    await deliver(listener, own, tokens.reply_address(desk.services.settings, token), HELPLINE)
    assert await replies(desk) == []
    assert await count(desk, QuarantinedEmail) == 2


async def test_replies_are_for_staff_who_may_see_the_notice(desk: Desk, listener: Listener) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    agent = await desk.staff_client("piet", Role.agent)
    refused = await agent.get(f"/api/staff/notices/{sent.notice.id}/replies")
    assert refused.status_code == 403
    anonymous = await desk.http.get(f"/api/staff/notices/{sent.notice.id}/replies")
    assert anonymous.status_code == 401
    missing = await (await desk.staff_client("sanne", Role.supervisor)).get(
        "/api/staff/notices/nope/replies"
    )
    assert missing.status_code == 404
