"""Signing and delivery: the JSON and HTML are signed over the exact bytes sent, verify
against the published keys, and any changed byte breaks them; e-mail to the platform's point
of contact through a real SMTP sink, once; HTTPS POST with an Idempotency-Key to a real
local "platform", acted on once even when a retry sends it again."""

from __future__ import annotations

import json
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from helpline.core.clock import as_utc
from helpline.core.models import OutboxEntry
from helpline.evidence.models import CustodyEntry
from helpline.intake.email import tokens
from helpline.staff.models import Role
from helpline.takedown.builder import verify_detached
from helpline.takedown.models import NoticeToken
from tests.email.conftest import Sink
from tests.takedown.kit import CONTENT_URL, Office, PlatformSite


async def published_keys(office: Office, member: Any) -> list[dict[str, Any]]:
    answer = await member.get("/.well-known/helpline-keys.json")
    assert answer.status_code == 200
    keys: list[dict[str, Any]] = answer.json()["keys"]
    return keys


async def sent_notice(office: Office, **platform: Any) -> tuple[Any, dict[str, Any], str]:
    """A notice written and sent by an agent; returns (agent, notice, case id)."""
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    target = await office.platform(admin, **platform)
    case_id = await office.case(agent)
    notice = await office.notice(agent, case_id, target["id"])
    return agent, await office.do(agent, notice["id"], "send"), case_id


def attachments(mail: EmailMessage) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for part in mail.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[str(part.get_filename())] = payload
    return found


def html_part(mail: EmailMessage) -> bytes:
    body = mail.get_body(preferencelist=("html",))
    assert body is not None
    payload = body.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


async def test_email_delivery_is_signed_verifiable_and_once(office: Office, sink: Sink) -> None:
    agent, notice, case_id = await sent_notice(office)
    assert notice["status"] == "queued"
    assert notice["document_sha256"] and notice["kid"]
    assert await office.run_outbox() == 1
    assert len(sink.received) == 1
    received = sink.received[0]
    assert received.rcpt_tos == ["dsa@photoshare.example.org"]
    mail = received.message
    reference = notice["reference"]
    assert reference in str(mail["Subject"])
    assert str(mail["X-Helpline-Idempotency-Key"]) == f"notice:{notice['id']}"
    # replies are threaded back by a token only its hash of which is stored
    reply_to = str(mail["Reply-To"])
    token = reply_to.split("+", 1)[1].split("@", 1)[0]
    row = await office.row(notice["id"])
    assert row.reply_token_hash == tokens.token_hash(token)
    assert str(mail["Message-ID"]) == f"<hl-{token}@helpline.test>"
    # the portal link: a token whose hash is in notice_tokens
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    link = next(line for line in text.get_content().splitlines() if "/portal/n/" in line)
    portal_token = link.rsplit("/portal/n/", 1)[1].strip()
    async with office.services.db.transaction() as session:
        stored = (
            await session.execute(
                select(NoticeToken).where(col(NoticeToken.notice_id) == notice["id"])
            )
        ).scalar_one()
    assert stored.token_hash == tokens.token_hash(portal_token)
    assert as_utc(stored.expires_at) - office.clock.now() == timedelta(days=30)
    # the signed document and page, verified against the published keys
    files = attachments(mail)
    document_bytes = files[f"{reference}.json"]
    envelope = json.loads(files[f"{reference}.sig.json"])
    keys = await published_keys(office, agent)
    kid = envelope["kid"]
    assert verify_detached(keys, kid, document_bytes, envelope["signatures"]["notice.json"])
    page = html_part(mail)
    assert verify_detached(keys, kid, page, envelope["signatures"]["notice.html"])
    assert json.loads(document_bytes)["urls"][0]["url"] == CONTENT_URL
    assert envelope["keys"].endswith("/.well-known/helpline-keys.json")
    # the preview of a sent notice is the signed thing, byte for byte
    shown = (await agent.get(f"/api/staff/notices/{notice['id']}/preview")).json()
    assert shown["signed"] is True and shown["html"].encode() == page
    assert shown["signatures"] == envelope
    # sent, the clock runs: due = sent + the platform's SLA (24 h)
    sent = await office.row(notice["id"])
    assert sent.status == "sent" and sent.sent_at is not None and sent.due_at is not None
    assert as_utc(sent.due_at) - as_utc(sent.sent_at) == timedelta(hours=24)
    assert {u.status for u in await office.urls(notice["id"])} == {"sent"}
    # nothing more to deliver: exactly one mail
    assert await office.run_outbox() == 0
    assert len(sink.received) == 1
    history = [
        (h.url_id is None, h.from_status, h.to_status) for h in await office.history(notice["id"])
    ]
    assert history == [
        (True, None, "draft"),
        (True, "draft", "queued"),
        (False, "draft", "queued"),
        (True, "queued", "sent"),
        (False, "queued", "sent"),
    ]
    assert await office.audit_actions(f"notice:{notice['id']}") == [
        "notice.create",
        "notice.queue",
        "notice.sent",
        "notice.open",  # the preview above
    ]
    # the case's timeline shows the notice's steps
    kinds = [e.kind for e in await office.events(case_id)]
    assert kinds.count("notice") == 3


async def test_changing_any_byte_breaks_the_signature(office: Office, sink: Sink) -> None:
    agent, notice, _ = await sent_notice(office)
    await office.run_outbox()
    mail = sink.received[0].message
    files = attachments(mail)
    reference = notice["reference"]
    envelope = json.loads(files[f"{reference}.sig.json"])
    keys = await published_keys(office, agent)
    for data, name in (
        (files[f"{reference}.json"], "notice.json"),
        (html_part(mail), "notice.html"),
    ):
        signature = envelope["signatures"][name]
        assert verify_detached(keys, envelope["kid"], data, signature)
        for position in range(len(data)):
            changed = bytearray(data)
            changed[position] ^= 0x01
            assert not verify_detached(keys, envelope["kid"], bytes(changed), signature), (
                name,
                position,
            )
        assert not verify_detached(keys, envelope["kid"], data + b" ", signature)
        assert not verify_detached(keys, envelope["kid"], data[:-1], signature)
    # and a key that is not the helpline's does not verify it either
    assert not verify_detached(
        [{**k, "kid": "other"} for k in keys],
        envelope["kid"],
        files[f"{reference}.json"],
        envelope["signatures"]["notice.json"],
    )


async def test_custody_of_the_evidence_used_records_the_notice(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    target = await office.platform(admin)
    case_id = await office.case(agent)
    item_id = await office.hashes(agent, case_id, "cd" * 32)
    notice = await office.notice(
        agent, case_id, target["id"], items=[{"evidence_item_id": item_id}]
    )
    await office.do(agent, notice["id"], "send")
    async with office.services.db.transaction() as session:
        events = (
            await session.execute(
                select(col(CustodyEntry.event), col(CustodyEntry.details))
                .where(col(CustodyEntry.item_id) == item_id)
                .order_by(col(CustodyEntry.seq))
            )
        ).all()
    assert [e for e, _ in events] == ["captured", "noticed"]
    assert json.loads(events[1][1]) == {"notice": notice["reference"]}


async def test_a_notice_withdrawn_before_delivery_is_not_sent(office: Office, sink: Sink) -> None:
    agent, notice, _ = await sent_notice(office)
    withdrawn = await office.do(agent, notice["id"], "withdraw")
    assert withdrawn["status"] == "withdrawn"
    assert await office.run_outbox() == 1  # the entry is handled: there is nothing to send
    assert sink.received == []
    assert (await office.row(notice["id"])).status == "withdrawn"


async def test_api_delivery_posts_the_signed_json_with_an_idempotency_key(
    office: Office, site: PlatformSite
) -> None:
    agent, notice, _ = await sent_notice(
        office, delivery="api", endpoint_url=f"{site.url}/dsa/notices", slug="clipstream"
    )
    site.fail_next = 1  # the first attempt fails (503): the outbox retries with the same key
    assert await office.services.outbox.run_once() == 1
    assert (await office.row(notice["id"])).status == "queued"
    history = await office.history(notice["id"])
    assert json.loads(history[-1].details)["event"] == "delivery_retry"
    async with office.services.db.transaction() as session:
        entry = (
            await session.execute(
                select(OutboxEntry).where(col(OutboxEntry.kind) == "takedown.notice")
            )
        ).scalar_one()
    office.clock.set(as_utc(entry.next_attempt_at) + timedelta(seconds=1))
    assert await office.services.outbox.run_once() == 1
    key = f"notice:{notice['id']}"
    assert [p.idempotency_key for p in site.posts] == [key, key]
    assert site.posts[0].body == site.posts[1].body
    assert list(site.effects) == [key]
    received = site.posts[-1]
    assert received.headers["content-type"] == "application/json"
    keys = await published_keys(office, agent)
    signature = received.headers["helpline-signature"]
    fields = dict(part.strip().split("=", 1) for part in signature.split(","))
    kid, sig = fields["kid"].strip('"'), fields["sig"].strip('"')
    assert verify_detached(keys, kid, received.body, sig)
    assert json.loads(received.body)["reference"] == notice["reference"]
    sent = await office.row(notice["id"])
    assert sent.status == "sent" and sent.due_at is not None


async def test_a_platform_that_refuses_the_notice_dead_letters_it(
    office: Office, site: PlatformSite
) -> None:
    _, notice, _ = await sent_notice(
        office, delivery="api", endpoint_url=f"{site.url}/dsa/notices", slug="clipstream"
    )
    site.fail_next, site.fail_status = 1, 400
    await office.services.outbox.run_once()
    async with office.services.db.transaction() as session:
        entry = (
            await session.execute(
                select(OutboxEntry).where(col(OutboxEntry.kind) == "takedown.notice")
            )
        ).scalar_one()
    assert entry.status == "dead" and "HTTP 400" in (entry.last_error or "")
    assert (await office.row(notice["id"])).status == "queued"
    failure = json.loads((await office.history(notice["id"]))[-1].details)
    assert failure["event"] == "delivery_failed"
    assert "notice.delivery_failed" in await office.audit_actions(f"notice:{notice['id']}")


async def test_web_form_platforms_get_a_prepared_text_and_no_outbox_entry(
    office: Office, sink: Sink
) -> None:
    agent, notice, _ = await sent_notice(
        office,
        delivery="web_form",
        web_form_url="https://chatterbox.test/legal/dsa-report",
        slug="chatterbox",
        contact_email=None,
    )
    assert notice["status"] == "queued"
    assert notice["web_form"]["url"] == "https://chatterbox.test/legal/dsa-report"
    assert CONTENT_URL in notice["web_form"]["text"]
    assert "/portal/n/" in notice["web_form"]["text"]
    assert await office.run_outbox() == 0 and sink.received == []
    done = await office.do(agent, notice["id"], "submitted")
    assert done["status"] == "sent" and done["due_at"] is not None
    answer = await agent.post(f"/api/staff/notices/{notice['id']}/submitted")
    assert answer.status_code == 409
