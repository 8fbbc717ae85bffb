"""Replies over real SMTP: out through the outbox and aiosmtplib to an aiosmtpd relay, and
the victim's answer back through the listener into the same case by its reply token."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy import select

from helpline.cases.models import Case, CaseEvent, CaseStatus
from helpline.cases.service import ACTIVITY_CHANNEL, channel, end
from helpline.core.models import OutboxEntry
from helpline.core.outbox import DEAD, DELIVERED, PENDING
from helpline.intake.email.models import EmailToken
from helpline.staff.models import Role
from tests.email.conftest import (
    HELPLINE,
    VICTIM,
    Mailroom,
    Sink,
    StaffClient,
    start_sink,
    victim_mail,
)

TOKEN_IN_REPLY_TO = re.compile(r"^help\+([0-9a-f]{32})@helpline\.test$")


async def opened_case(room: Mailroom, agent: StaffClient, text: str = "Help me please") -> str:
    await room.send(victim_mail(text, message_id="<first@mail.example.org>"))
    [case] = await room.cases()
    await agent.claim(case.id)
    return case.id


async def outbox_entries(room: Mailroom) -> list[OutboxEntry]:
    async with room.services.db.transaction() as session:
        return list((await session.execute(select(OutboxEntry))).scalars().all())


async def email_state(agent: StaffClient, case_id: str) -> dict[str, Any]:
    answer = await agent.http.get(f"/api/staff/cases/{case_id}/email")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_a_reply_goes_out_and_the_victims_answer_comes_back_into_the_case(
    mailroom: Mailroom,
) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent)
    answer = await agent.reply(case_id, "Wat vervelend. We helpen je.", client_id="r1")
    assert answer.status_code == 201, answer.text
    assert answer.json()["outgoing"]["status"] == "queued"
    again = await agent.reply(case_id, "Wat vervelend. We helpen je.", client_id="r1")
    assert again.status_code == 200  # the same client_id: not sent twice
    assert again.json()["outgoing"]["id"] == answer.json()["outgoing"]["id"]

    assert await mailroom.run_outbox() == 1
    [sent] = mailroom.sink.received
    mail = sent.message
    assert sent.mail_from == HELPLINE and sent.rcpt_tos == [VICTIM]
    assert mail["From"] == f"Test Helpline <{HELPLINE}>" and mail["To"] == VICTIM
    assert mail["Subject"] == "Re: Hulp nodig"
    assert mail["In-Reply-To"] == "<first@mail.example.org>"
    assert mail["References"] == "<first@mail.example.org>"
    assert mail["Auto-Submitted"] is None  # a person wrote this
    token = TOKEN_IN_REPLY_TO.match(mail["Reply-To"]).group(1)  # type: ignore[union-attr]
    assert mail["Message-ID"] == f"<hl-{token}@helpline.test>"
    assert mail.get_content().strip() == "Wat vervelend. We helpen je."
    state = await email_state(agent, case_id)
    assert state["can_reply"] is True and VICTIM not in json.dumps(state)
    [outgoing] = state["outgoing"]
    assert (outgoing["status"], outgoing["seq"], outgoing["attempts"]) == ("sent", 2, 1)
    async with mailroom.services.db.transaction() as session:  # the token only as its hash
        [stored] = (await session.execute(select(EmailToken))).scalars().all()
    assert stored.token_hash != token and token not in json.dumps(stored.model_dump(), default=str)

    # the victim answers: to the plus-address, threaded under our Message-ID
    answer_mail = victim_mail("Dank je, hier is meer.", subject="Re: Hulp nodig")
    answer_mail["In-Reply-To"] = mail["Message-ID"]
    answer_mail["References"] = f"<first@mail.example.org> {mail['Message-ID']}"
    answer_mail.set_content(
        "Dank je, hier is meer.\n\nOp maandag schreef de hulplijn:\n> Wat vervelend.\n"
    )
    await mailroom.send(answer_mail, to=[mail["Reply-To"]])
    # a mail server that drops the +token: the References still find the case
    by_references = victim_mail("En nog iets.")
    by_references["References"] = f"<first@mail.example.org> {mail['Message-ID']}"
    await mailroom.send(by_references, to=[HELPLINE])
    assert len(await mailroom.cases()) == 1
    texts = await mailroom.texts(case_id)
    assert [sender for sender, _ in texts] == ["victim", "staff", "victim", "victim"]
    assert texts[2][1] == "Subject: Re: Hulp nodig\n\nDank je, hier is meer."  # quote trimmed
    assert "En nog iets." in texts[3][1]

    # the next reply threads onto the victim's latest mail
    await agent.reply(case_id, "Goed dat je het stuurt.", client_id="r2")
    await mailroom.run_outbox()
    second = mailroom.sink.received[-1].message
    assert second["In-Reply-To"] == by_references["Message-ID"]
    assert second["Reply-To"] != mail["Reply-To"]  # a fresh token for every mail


async def test_a_mail_with_an_unknown_token_opens_a_new_case(mailroom: Mailroom) -> None:
    await mailroom.send(victim_mail("first"))
    stray = victim_mail("guessing")
    stray["In-Reply-To"] = "<hl-0123456789abcdef0123456789abcdef@helpline.test>"
    await mailroom.send(stray, to=["help+fedcba9876543210fedcba9876543210@helpline.test"])
    assert len(await mailroom.cases()) == 2


async def test_an_answer_to_a_closed_case_reopens_it(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("gijs")
    case_id = await opened_case(mailroom, agent)
    await agent.reply(case_id, "Tot ziens.", client_id="bye")
    await mailroom.run_outbox()
    async with mailroom.services.db.transaction() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        await end(session, mailroom.clock, case, by=f"staff:{agent.id}")
    refused = await agent.reply(case_id, "Nog iets", client_id="late")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "ended"
    reply_to = mailroom.sink.received[-1].message["Reply-To"]
    await mailroom.send(victim_mail("Het gaat weer mis."), to=[reply_to])
    [case] = await mailroom.cases()
    assert case.status == CaseStatus.new and case.assigned_staff_id is None


async def test_a_permanent_refusal_is_dead_lettered_at_once_and_shows_on_the_case(
    mailroom: Mailroom,
) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent)
    mailroom.sink.handler.refuse_rcpt = f"550 5.1.1 <{VICTIM}>: Recipient address rejected"
    await agent.reply(case_id, "Hallo?", client_id="r1")
    bus = mailroom.services.bus
    async with (
        bus.subscribe(channel(case_id)) as case_bus,
        bus.subscribe(ACTIVITY_CHANNEL) as console,
    ):
        assert await mailroom.run_outbox() == 1
        assert await case_bus.get(timeout=5) == {
            "type": "email_status",
            "outgoing_id": (await email_state(agent, case_id))["outgoing"][0]["id"],
            "status": "failed",
        }
        assert await console.get(timeout=5) == {"type": "case_changed", "case_id": case_id}
    [entry] = await outbox_entries(mailroom)
    assert (entry.status, entry.attempts) == (DEAD, 1)
    assert entry.last_error == "SMTP 550" and VICTIM not in (entry.last_error or "")
    [outgoing] = (await email_state(agent, case_id))["outgoing"]
    assert (outgoing["status"], outgoing["error"]) == ("failed", "refused 550")
    async with mailroom.services.db.transaction() as session:
        [event] = (
            (await session.execute(select(CaseEvent).where(CaseEvent.kind == "email_failed")))  # type: ignore[arg-type]
            .scalars()
            .all()
        )
    assert event.kind == "email_failed" and event.case_id == case_id
    assert json.loads(event.details)["code"] == 550
    # the queue shows it too, without opening the case
    queue = (await agent.http.get("/api/staff/cases")).json()["cases"]
    assert [c["email_failed"] for c in queue if c["id"] == case_id] == [1]
    assert event.text is not None and VICTIM.encode() not in event.text  # encrypted
    mailroom.clock.advance(minutes=20)
    assert await mailroom.run_outbox() == 0  # no retries


async def test_a_temporary_failure_is_retried_with_back_off(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent)
    mailroom.sink.handler.refuse_rcpt = "451 4.7.1 Greylisted, try again later"
    await agent.reply(case_id, "Hallo?", client_id="r1")
    await mailroom.run_outbox()
    [entry] = await outbox_entries(mailroom)
    assert (entry.status, entry.last_error) == (PENDING, "SMTP 451")
    assert (await email_state(agent, case_id))["outgoing"][0]["status"] == "retrying"
    assert await mailroom.run_outbox() == 0  # not before its back-off
    mailroom.sink.handler.refuse_rcpt = None
    mailroom.clock.advance(minutes=5)
    assert await mailroom.run_outbox() == 1
    [entry] = await outbox_entries(mailroom)
    assert entry.status == DELIVERED
    [outgoing] = (await email_state(agent, case_id))["outgoing"]
    assert (outgoing["status"], outgoing["attempts"], outgoing["error"]) == ("sent", 2, None)


@pytest.mark.parametrize("mail_overrides", [{"outbox_max_attempts": 2}])
async def test_exhausted_retries_show_on_the_case(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent)
    await agent.reply(case_id, "Hallo?", client_id="r1")
    mailroom.sink.server.close()  # the relay is gone
    await mailroom.sink.server.wait_closed()
    await mailroom.run_outbox()
    mailroom.clock.advance(minutes=10)
    await mailroom.run_outbox()
    [entry] = await outbox_entries(mailroom)
    assert entry.status == DEAD
    [outgoing] = (await email_state(agent, case_id))["outgoing"]
    assert outgoing["status"] == "failed" and outgoing["error"].startswith("retries_exhausted")
    async with mailroom.services.db.transaction() as session:
        [event] = (
            (await session.execute(select(CaseEvent).where(CaseEvent.kind == "email_failed")))  # type: ignore[arg-type]
            .scalars()
            .all()
        )
    assert json.loads(event.details)["reason"] == "retries_exhausted"


async def test_a_later_bounce_marks_the_mail_failed(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent)
    await agent.reply(case_id, "Hallo?", client_id="r1")
    await mailroom.run_outbox()
    ours = mailroom.sink.received[-1].message["Message-ID"]
    bounce = victim_mail("Delivery failed", subject="Undelivered Mail Returned to Sender")
    bounce.replace_header("From", "MAILER-DAEMON@mail.example.org")
    bounce.add_attachment(
        f"Message-ID: {ours}\nSubject: Re: Hulp nodig\n", subtype="rfc822-headers"
    )
    await mailroom.send(bounce, mail_from="")
    assert len(await mailroom.cases()) == 1
    [outgoing] = (await email_state(agent, case_id))["outgoing"]
    assert (outgoing["status"], outgoing["error"]) == ("failed", "bounced")


# ---------------------------------------------------------------- TLS and authentication


def certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_replies_go_through_tls_with_authentication(
    mailroom: Mailroom, tmp_path: Path, security: str, settings_for: Any, database_url: str
) -> None:
    cert, key = certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.login == b"helpline" and data.password == b"s3cret")

    options: dict[str, Any] = {"authenticator": authenticator, "auth_required": True}
    if security == "starttls":
        options.update(tls_context=server_tls, require_starttls=True)
    else:
        # implicit TLS: aiosmtpd cannot tell, so it must not insist on STARTTLS before AUTH
        options.update(ssl=server_tls, auth_require_tls=False, auth_required=False)
    relay: Sink = await start_sink(**options)
    try:
        settings = mailroom.services.settings.model_copy(
            update={
                "smtp_out_port": relay.port,
                "smtp_out_security": security,
                "smtp_out_username": "helpline",
                "smtp_out_password": SecretStr("s3cret"),
                "smtp_out_ca_file": cert,
            }
        )
        mailroom.services.settings = settings
        agent = await mailroom.staff("sanne")
        case_id = await opened_case(mailroom, agent)
        await agent.reply(case_id, "Veilig verstuurd.", client_id="r1")
        assert await mailroom.run_outbox() == 1
        assert logins == [(b"helpline", b"s3cret")]
        [sent] = relay.received
        assert sent.rcpt_tos == [VICTIM]
        assert (await email_state(agent, case_id))["outgoing"][0]["status"] == "sent"
    finally:
        relay.server.close()
        await relay.server.wait_closed()


# ---------------------------------------------------------------- chat access, refusals


async def test_a_reply_can_give_the_victim_access_to_the_chat(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne")
    case_id = await opened_case(mailroom, agent, "Hallo, ik heb een probleem met mijn foto's.")
    answer = await agent.reply(case_id, "Je kunt ook chatten.", client_id="r1", chat_access=True)
    assert answer.status_code == 201, answer.text
    await mailroom.run_outbox()
    mailed = mailroom.sink.received[-1].message.get_content()
    [case] = await mailroom.cases()
    assert case.reference in mailed and "Verder met mijn gesprek" in mailed
    passphrase = re.search(r"Wachtwoord: (.+)", mailed).group(1).strip()  # type: ignore[union-attr]
    stored = (await mailroom.texts(case_id))[-1][1]
    assert passphrase not in stored and "only in the e-mail" in stored and case.reference in stored
    async with mailroom.client() as victim:  # the victim continues in the chat
        resumed = await victim.post(
            "/api/chat/resume", json={"reference": case.reference, "passphrase": passphrase}
        )
    assert resumed.status_code == 200, resumed.text


async def test_replies_only_on_e_mail_cases_by_the_agent_who_has_it(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne")
    other = await mailroom.staff("gijs")
    case_id = await opened_case(mailroom, agent)
    refused = await other.reply(case_id, "Mag ik?", client_id="x")
    assert refused.status_code == 403
    for body in (
        {"text": "", "client_id": "a"},
        {"text": "x"},
        {"text": "x", "client_id": "a", "cc": "b"},
    ):
        bad = await agent.http.post(f"/api/staff/cases/{case_id}/email/reply", json=body)
        assert bad.status_code == 422, body
    long = await agent.reply(case_id, "x" * 4001, client_id="long")
    assert long.status_code == 422
    async with mailroom.client() as anonymous:
        assert (await anonymous.get(f"/api/staff/cases/{case_id}/email")).status_code == 401
    async with mailroom.client() as start:
        receipt = (await start.post("/api/chat/start", json={"language": "nl"})).json()
    cases = (await agent.http.get("/api/staff/cases")).json()["cases"]
    [chat] = [c for c in cases if c["reference"] == receipt["reference"]]
    await agent.claim(chat["id"])
    not_email = await agent.reply(chat["id"], "Hallo", client_id="c")
    assert not_email.status_code == 409 and not_email.json()["error"]["code"] == "not_email"


async def test_a_mail_without_a_usable_sender_cannot_be_answered(mailroom: Mailroom) -> None:
    agent = await mailroom.staff("sanne", Role.supervisor)
    nameless = victim_mail("No address")
    nameless.replace_header("From", "nobody")
    await mailroom.send(nameless)
    [case] = await mailroom.cases()
    assert (await email_state(agent, case.id))["can_reply"] is False
    answer = await agent.reply(case.id, "Hallo?", client_id="r")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "no_address"


# ---------------------------------------------------------------- the acknowledgement


@pytest.mark.parametrize("mail_overrides", [{"email_acknowledge": True}])
async def test_an_acknowledgement_is_auto_submitted_and_does_not_loop(mailroom: Mailroom) -> None:
    await mailroom.send(victim_mail("Someone shared my photos, what can I do? Please help me."))
    [case] = await mailroom.cases()
    await mailroom.run_outbox()
    [sent] = mailroom.sink.received
    ack = sent.message
    assert ack["Auto-Submitted"] == "auto-replied"
    assert case.reference in ack.get_content()
    assert [s for s, _ in await mailroom.texts(case.id)] == ["victim", "system"]
    # an auto-responder at the victim's side answers the acknowledgement: quarantined
    echo = victim_mail("I am out of the office", subject="Automatic reply")
    echo["Auto-Submitted"] = "auto-replied"
    echo["In-Reply-To"] = ack["Message-ID"]
    await mailroom.send(echo, to=[ack["Reply-To"]])
    # our own acknowledgement delivered back to us (a forwarding loop): quarantined
    await mailroom.send(sent.raw, mail_from=HELPLINE)
    assert len(await mailroom.texts(case.id)) == 2
    assert len(mailroom.sink.received) == 1


@pytest.mark.parametrize("mail_overrides", [{"email_acknowledge": True}])
async def test_acknowledgements_to_one_address_are_limited(mailroom: Mailroom) -> None:
    """A responder that answers without saying so, each time in a new thread, gets three."""
    for number in range(5):
        await mailroom.send(victim_mail(f"Automatic answer number {number}"))
    assert len(await mailroom.cases()) == 5
    while await mailroom.run_outbox():
        pass
    assert len(mailroom.sink.received) == 3
