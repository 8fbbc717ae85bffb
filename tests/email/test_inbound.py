"""Inbound mail over real SMTP on loopback: cases, messages, evidence, limits, duplicates,
refusals, and what is (not) stored. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import io
import smtplib
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from helpline.cases.models import CaseStatus
from helpline.cases.service import ACTIVITY_CHANNEL, QUEUE_CHANNEL
from helpline.core.crypto import case_scope
from helpline.evidence.models import EvidenceItem
from helpline.intake.email import smtp_listener
from helpline.intake.email.models import EmailReceived, EmailThread, QuarantinedEmail
from tests.email.conftest import HELPLINE, VICTIM, Mailroom, victim_mail


def png() -> bytes:
    image = Image.effect_noise((64, 64), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PNG = png()


async def count(room: Mailroom, table: type) -> int:
    async with room.services.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_mail_opens_a_case_in_the_queue_and_rings_the_bus(mailroom: Mailroom) -> None:
    bus = mailroom.services.bus
    async with bus.subscribe(QUEUE_CHANNEL) as queue, bus.subscribe(ACTIVITY_CHANNEL) as activity:
        await mailroom.send(victim_mail("Someone shared my photos. What can I do?", subject="Help"))
        assert (await queue.get(timeout=5))["type"] == "queue_changed"
        assert (await activity.get(timeout=5))["type"] == "queue_changed"
    [case] = await mailroom.cases()
    assert (case.channel, case.status, case.language) == ("email", CaseStatus.new, "en")
    assert case.passphrase_hash is None
    [(sender, text)] = await mailroom.texts(case.id)
    assert sender == "victim"
    assert text == "Subject: Help\n\nSomeone shared my photos. What can I do?"
    async with mailroom.services.db.transaction() as session:
        thread = await session.get(EmailThread, case.id)
        assert thread is not None and thread.address is not None
        assert VICTIM.encode() not in thread.address  # encrypted, under the case key
        cipher = await mailroom.services.keyring.cipher(session, case_scope(case.id))
        address = cipher.decrypt_text(
            thread.address, table="email_threads", row_id=case.id, field="address"
        )
    assert address == VICTIM


async def test_dutch_mail_gets_a_dutch_case_and_html_becomes_safe_text(mailroom: Mailroom) -> None:
    mail = victim_mail("plain part ignored when there is one")
    mail.clear_content()
    mail.set_content(
        "<html><head><style>p {color: red}</style></head><body><p>Hallo, ik heb een probleem "
        "met mijn foto's die zijn gedeeld.</p><p>Kijk <a href='https://example.net/x'>hier</a>"
        "<img src='https://tracker.example/pixel.gif' alt=''></p><script>alert(1)</script>"
        "</body></html>",
        subtype="html",
    )
    await mailroom.send(mail)
    [case] = await mailroom.cases()
    assert case.language == "nl"
    [(_, text)] = await mailroom.texts(case.id)
    assert "Hallo, ik heb een probleem met mijn foto's die zijn gedeeld." in text
    assert "hier <https://example.net/x>" in text
    assert "[image]" in text
    assert "alert" not in text and "color" not in text and "<p>" not in text


async def test_attachments_become_evidence_captured_by_email(mailroom: Mailroom) -> None:
    mail = victim_mail("Screenshots attached.")
    mail.add_attachment(PNG, maintype="image", subtype="png", filename="chat.png")
    mail.add_attachment(
        b"%PDF-1.4 not really", maintype="application", subtype="pdf", filename="threat.pdf"
    )
    await mailroom.send(mail)
    [case] = await mailroom.cases()
    async with mailroom.services.db.transaction() as session:
        items = (await session.execute(select(EvidenceItem))).scalars().all()
    assert len(items) == 2, await mailroom.texts(case.id)
    assert {i.captured_by for i in items} == {"email"}
    assert {i.channel for i in items} == {"email"}
    assert {i.case_id for i in items} == {case.id}
    assert hashlib.sha256(PNG).hexdigest() in {i.sha256 for i in items}
    [(_, text)] = await mailroom.texts(case.id)
    assert "- chat.png: stored as evidence" in text
    assert "- threat.pdf: stored as evidence" in text


async def test_only_the_helplines_addresses_are_accepted_at_rcpt(mailroom: Mailroom) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await mailroom.send(victim_mail(), to=["someone@else.test"])
    [(code, message)] = refused.value.recipients.values()
    assert code == 550 and b"not an address of this helpline" in message
    # its plus-addresses are the helpline's too (a reply token that names no case: new case)
    await mailroom.send(victim_mail(), to=["HELP+0123456789abcdef0123456789abcdef@helpline.test"])
    assert len(await mailroom.cases()) == 1


async def test_a_mail_over_the_size_limit_is_refused_with_552(mailroom: Mailroom) -> None:
    big = victim_mail("x" * 100)
    big.add_attachment(b"\0" * (3 * 1024 * 1024), maintype="application", subtype="octet-stream")
    raw = big.as_bytes(policy=SMTP_POLICY)
    # announced with SIZE: refused at MAIL FROM
    with pytest.raises(smtplib.SMTPSenderRefused) as announced:
        await mailroom.send(raw)
    assert announced.value.smtp_code == 552

    # not announced: refused at the end of DATA
    def without_size() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", mailroom.port, timeout=30) as client:
            client.ehlo()
            client.mail(VICTIM)
            client.rcpt(HELPLINE)
            code, message = client.data(raw)
            return code, message

    code, message = await asyncio.to_thread(without_size)
    assert code == 552
    assert await mailroom.cases() == []
    assert await count(mailroom, QuarantinedEmail) == 0


async def test_a_redelivered_mail_is_stored_once(mailroom: Mailroom) -> None:
    mail = victim_mail("Only once, please.", message_id="<same-id@mail.example.org>")
    await mailroom.send(mail)
    await mailroom.send(mail)
    [case] = await mailroom.cases()
    assert len(await mailroom.texts(case.id)) == 1
    assert await count(mailroom, EmailReceived) == 1


async def test_too_many_attachments_are_quarantined_not_lost(mailroom: Mailroom) -> None:
    mail = victim_mail("Four files")
    for number in range(4):  # the limit is 3
        mail.add_attachment(PNG, maintype="image", subtype="png", filename=f"{number}.png")
    await mailroom.send(mail)
    assert await mailroom.cases() == []
    async with mailroom.services.db.transaction() as session:
        [held] = (await session.execute(select(QuarantinedEmail))).scalars().all()
    assert (held.reason, held.detail) == ("attachment_limit", "4 attachments")


async def test_a_long_text_is_kept_whole_in_several_messages(mailroom: Mailroom) -> None:
    paragraphs = [f"Paragraph {n}: " + "woord " * 150 for n in range(20)]  # ~18,000 chars
    await mailroom.send(victim_mail("\n\n".join(paragraphs)))
    [case] = await mailroom.cases()
    texts = [text for _, text in await mailroom.texts(case.id)]
    assert len(texts) > 1 and all(len(t) <= 4000 for t in texts)
    joined = " ".join(" ".join(texts).split())
    for paragraph in paragraphs:
        assert " ".join(paragraph.split()) in joined


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_no_sender_address_helo_name_or_received_header_is_stored(
    mailroom: Mailroom, database_url: str
) -> None:
    """The raw database file holds no trace of where a mail came from, and nothing the victim
    wrote in the clear: sent from 127.0.0.77 with a marked HELO name and Received header."""
    received = "from marker-relay.example (marker-relay.example [203.0.113.99]) by mx"
    readable = victim_mail("secret-body-marker", subject="subject-marker", Received=received)
    readable.add_attachment(PNG, maintype="image", subtype="png", filename="name-marker.png")
    broken = victim_mail("second-body-marker", Received=received)
    broken.replace_header("Content-Type", "text/plain; charset=x-no-such-charset")
    for mail in (readable, broken):
        await mailroom.send(mail, source="127.0.0.77", helo="helo-marker.example")
    assert await count(mailroom, QuarantinedEmail) == 1
    await mailroom.services.db.dispose()  # write everything into the file
    path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
    stored = b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )
    assert b"email_quarantine" in stored and b"email_threads" in stored  # the right file
    for marker in (
        b"127.0.0.77",
        b"helo-marker",
        b"marker-relay",
        b"203.0.113.99",
        VICTIM.encode(),
        b"secret-body-marker",
        b"second-body-marker",
        b"subject-marker",
        b"name-marker",
    ):
        assert marker not in stored, marker


async def test_the_listener_restarts_on_its_port_and_survives_a_dropped_connection(
    mailroom: Mailroom,
) -> None:
    services = mailroom.services
    async with smtp_listener(services, host="127.0.0.1", port=0) as first:
        port = first.port
        await mailroom.send(victim_mail("before the restart"), port=port)
        # a client that goes away in the middle of DATA: no case, no quarantine, no crash
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        for command in ("EHLO x", "MAIL FROM:<a@b.test>", f"RCPT TO:<{HELPLINE}>", "DATA"):
            writer.write(command.encode() + b"\r\n")
            while (await reader.readline())[3:4] != b" ":
                pass
        writer.write(b"Subject: cut off\r\n\r\nhalf a")
        await writer.drain()
        writer.close()
        # and one that is still connected when the listener stops
        _, idle = await asyncio.open_connection("127.0.0.1", port)
    async with smtp_listener(services, host="127.0.0.1", port=port) as second:
        assert second.port == port
        await mailroom.send(victim_mail("after the restart"), port=port)
    idle.close()
    assert len(await mailroom.cases()) == 2
    assert await count(mailroom, QuarantinedEmail) == 0


async def test_files_sent_to_a_possible_minor_case_are_kept_nowhere(mailroom: Mailroom) -> None:
    """The minor rule: attachments to such a case are not stored as evidence, and not kept in
    the quarantine either (even when there are more than the limit allows)."""
    agent = await mailroom.staff("sanne")
    await mailroom.send(victim_mail("Het gaat om mijn zusje van 14."))
    [case] = await mailroom.cases()
    await agent.claim(case.id)
    marked = await agent.http.post(f"/api/staff/cases/{case.id}/possible-minor")
    assert marked.status_code == 200, marked.text
    await agent.reply(case.id, "Stuur geen beelden, alleen de links.", client_id="r1")
    await mailroom.run_outbox()
    reply_to = mailroom.sink.received[-1].message["Reply-To"]
    answer = victim_mail("Hier zijn ze toch.")
    for number in range(5):
        answer.add_attachment(PNG, maintype="image", subtype="png", filename=f"{number}.png")
    await mailroom.send(answer, to=[reply_to])
    assert await count(mailroom, EvidenceItem) == 0
    assert await count(mailroom, QuarantinedEmail) == 0
    text = (await mailroom.texts(case.id))[-1][1]
    assert "Hier zijn ze toch." in text
    assert text.count("not stored (files are not stored for this case") == 5
