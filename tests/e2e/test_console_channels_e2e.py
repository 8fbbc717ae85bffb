"""The console's other channels in a real browser (issue 6): an e-mail case answered by mail
over real SMTP in both directions, the supervisors' e-mail quarantine, and a callback request
worked from the case pane until the number is deleted."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.db import Database
from helpline.intake.callback.models import CallbackRequest
from tests.e2e.test_console_e2e import add_staff, pane, row, staff_logs_in, watch
from tests.email.conftest import Received, Sink, start_sink
from tests.live import LiveServer, free_port, live_server

pytestmark = pytest.mark.slow

HELPLINE = "help@helpline.test"
VICTIM = "slachtoffer@example.org"
LAPTOP: ViewportSize = {"width": 1366, "height": 860}
FIRST_WORDS = "Iemand dreigt mijn foto's te delen als ik niet betaal. Wat moet ik doen?"
CANNED_TITLE = "Eerste mail (e2e)"
CANNED_BODY = "Dank je voor je mail. Je referentie is {reference}."
REFUSED = "550 5.1.1 mailbox unavailable"


# ---------------------------------------------------------------- a server that takes mail


@dataclass
class Mailroom:
    server: LiveServer
    smtp_port: int
    sink: Sink

    async def deliver(self, mail: EmailMessage, *, mail_from: str = VICTIM) -> None:
        """Hand a mail to the app's own SMTP listener, as the mail server in front would."""
        raw = mail.as_bytes(policy=SMTP_POLICY)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
                client.sendmail(mail_from, [HELPLINE], raw)

        await asyncio.to_thread(send)

    async def relayed(self, count: int) -> list[Received]:
        """Wait until the relay (an aiosmtpd sink) has been given `count` mails."""
        for _ in range(200):
            if len(self.sink.received) >= count:
                return self.sink.received
            await asyncio.sleep(0.05)
        raise AssertionError(f"the relay got {len(self.sink.received)} mails, not {count}")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


@pytest.fixture
async def mailroom(settings_for: Any, sqlite_url: str, sink: Sink) -> AsyncIterator[Mailroom]:
    port, smtp_port = free_port(), free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        inbound_addresses=HELPLINE,
        mail_from=HELPLINE,
        mail_from_name="Test Helpline",
        smtp_in_host="127.0.0.1",
        smtp_in_port=smtp_port,  # `helpline serve` runs the listener with the app
        smtp_out_host="127.0.0.1",
        smtp_out_port=sink.port,
        smtp_out_security="none",
        smtp_out_timeout_seconds=10,
        run_workers=True,  # the outbox worker sends the replies
        worker_poll_seconds=0.2,
    )
    await add_staff(sqlite_url)
    async with live_server(settings, port=port) as running:
        yield Mailroom(running, smtp_port, sink)


def victim_mail(
    text: str, *, message_id: str, subject: str = "Hulp nodig", **headers: str
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Slachtoffer <{VICTIM}>"
    mail["To"] = HELPLINE
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    return mail


async def csrf_post(page: Page, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """A staff API call from the browser's own session (cookie + CSRF token)."""
    me = await (await page.request.get(url.split("/api/")[0] + "/api/staff/me")).json()
    answer = await page.request.post(url, data=body, headers={"X-CSRF-Token": me["csrf_token"]})
    assert answer.ok, await answer.text()
    result: dict[str, Any] = await answer.json()
    return result


# ---------------------------------------------------------------- e-mail


async def test_an_agent_answers_an_email_case_by_mail(browser: Browser, mailroom: Mailroom) -> None:
    server = mailroom.server
    errors: list[str] = []
    supervisor_context = await browser.new_context(viewport=LAPTOP)
    agent_context = await browser.new_context(viewport=LAPTOP)
    try:
        supervisor = watch(await staff_logs_in(supervisor_context, server, "sanne"), errors)
        await csrf_post(
            supervisor,
            f"{server.url}/api/staff/canned",
            {"language": "nl", "title": CANNED_TITLE, "body": CANNED_BODY},
        )
        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)

        # a victim writes to the helpline's address; the mail opens a case in the queue
        await mailroom.deliver(victim_mail(FIRST_WORDS, message_id="<first-e2e@mail.example.org>"))
        email_row = agent.locator("#queue .queue-row").filter(has=agent.locator(".channel-email"))
        await expect(email_row).to_have_count(1)
        await expect(email_row.locator(".channel-email")).to_contain_text("E-mail")
        await expect(email_row.locator(".channel-email .channel-icon")).to_have_text("\u2709")
        reference = await email_row.get_attribute("data-reference")
        case_id = await email_row.get_attribute("data-case-id")
        assert reference and case_id

        # the agent claims it: the mail is in the pane, the reply box answers by mail
        await email_row.locator("button.claim").click()
        mail_pane = pane(agent, reference)
        await expect(mail_pane).to_have_attribute("data-channel", "email")
        await expect(mail_pane.locator(".messages .message.from-victim").first).to_contain_text(
            "Subject: Hulp nodig"
        )
        await expect(mail_pane.locator(".messages")).to_contain_text(FIRST_WORDS)
        await expect(mail_pane.locator("button.send")).to_have_text("Mail versturen")
        reply = mail_pane.locator("textarea.reply")
        await reply.fill("Eerste regel")
        await reply.press("Enter")  # a new line in a mail, not "send"
        await expect(reply).to_have_value("Eerste regel\n")
        await reply.fill("")

        # a canned response, with the case's reference filled in, edited before sending
        await mail_pane.locator(".canned-toggle").click()
        await mail_pane.locator(".canned-filter").fill("e2e")
        await mail_pane.locator(".canned-item").filter(has_text=CANNED_TITLE).click()
        canned_text = f"Dank je voor je mail. Je referentie is {reference}."
        await expect(reply).to_have_value(canned_text)
        await reply.press("End")
        await reply.press_sequentially(" We helpen je.")
        # ... with the reference and how to continue in the chat
        await mail_pane.locator(".mail-chat-access").check()
        await mail_pane.locator("button.send").click()
        mine = mail_pane.locator(".messages .message.from-staff")
        await expect(mine).to_have_count(1)
        await expect(mine).to_contain_text(canned_text)
        await expect(mine).to_have_attribute("data-seq", re.compile(r"^\d+$"))
        await expect(mail_pane.locator(".mail-chat-access")).not_to_be_checked()  # for one mail

        # the worker sends it through the relay, threaded on the victim's mail
        [sent] = await mailroom.relayed(1)
        mail = sent.message
        assert sent.rcpt_tos == [VICTIM]
        assert mail["Subject"] == "Re: Hulp nodig"
        assert mail["In-Reply-To"] == "<first-e2e@mail.example.org>"
        assert "<first-e2e@mail.example.org>" in str(mail["References"])
        assert re.fullmatch(r"help\+[0-9a-f]{32}@helpline\.test", str(mail["Reply-To"]))
        body = mail.get_content().replace("\r\n", "\n")
        assert canned_text in body and "We helpen je." in body
        found = re.search(r"Gesprekscode: (\S+)\nWachtwoord: (.+)\n", body)
        assert found is not None and found.group(1) == reference
        passphrase = found.group(2).strip()

        # ... and the console shows it as sent, as stored: the passphrase is only in the mail
        await expect(mine).to_have_attribute("data-mark", "mail_sent")
        await expect(mine).to_contain_text(f"Gesprekscode: {reference}")
        await expect(mine).to_contain_text("Wachtwoord: ••••")
        await expect(mine.locator(".mark")).to_have_text("Verstuurd")
        assert passphrase not in await agent.evaluate("document.body.textContent")
        # the victim can continue in the chat with what the mail says
        async with httpx.AsyncClient(base_url=server.url) as victim:
            resumed = await victim.post(
                "/api/chat/resume", json={"reference": reference, "passphrase": passphrase}
            )
        assert resumed.status_code == 200, resumed.text

        # the relay refuses the next one for good: the case and its queue row say so
        mailroom.sink.handler.refuse_rcpt = REFUSED
        await reply.fill("Heb je mijn vorige mail gekregen?")
        await reply.press("Control+Enter")
        await expect(mine).to_have_count(2)
        failed = mine.nth(1)
        await expect(failed).to_have_attribute("data-mark", "mail_failed")
        await expect(failed.locator(".delivery-detail")).to_contain_text(
            "geweigerd door de mailserver (550)"
        )
        banner = mail_pane.locator(".mail-failed")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("E-mail niet bezorgd")
        await expect(banner).to_contain_text("550")
        await expect(row(agent, reference).locator(".mail-failed-badge")).to_have_text(
            "Mail niet bezorgd"
        )
        # the first mail still shows as sent
        await expect(mine.first).to_have_attribute("data-mark", "mail_sent")

        # the timeline names the failure in words
        await mail_pane.locator(".pane-tab-timeline").click()
        event = mail_pane.locator(".timeline-list .tl-event").filter(
            has_text="e-mail niet afgeleverd"
        )
        await expect(event).to_have_count(1)
        await expect(event).to_contain_text("geweigerd door de mailserver")
        assert errors == []
    finally:
        await supervisor_context.close()
        await agent_context.close()


async def test_a_supervisor_works_the_email_quarantine(
    browser: Browser, mailroom: Mailroom
) -> None:
    server = mailroom.server
    errors: list[str] = []
    context = await browser.new_context(viewport=LAPTOP, accept_downloads=True)
    try:
        # two automatic mails (never answered, never a case): kept in the quarantine
        await mailroom.deliver(
            victim_mail(
                "Ik ben afwezig tot maandag.",
                message_id="<ooo-e2e@mail.example.org>",
                subject="Afwezig: Hulp nodig",
                Auto_Submitted="auto-replied",
            )
        )
        await mailroom.deliver(
            victim_mail(
                "Weg ermee.",
                message_id="<bulk-e2e@mail.example.org>",
                subject="Nieuwsbrief",
                Precedence="bulk",
            )
        )
        supervisor = watch(await staff_logs_in(context, server, "sanne"), errors)
        await supervisor.click("#view-btn-quarantine")
        await expect(supervisor.locator("#view-quarantine")).to_be_visible()
        await expect(supervisor.locator("#queue")).to_be_hidden()
        rows = supervisor.locator("#quarantine-list tr")
        await expect(rows).to_have_count(2)
        auto_reply = rows.filter(has_text="Afwezig: Hulp nodig")
        await expect(auto_reply.locator(".q-reason")).to_contain_text("Automatische mail")
        await expect(auto_reply).to_contain_text(VICTIM)
        await expect(auto_reply.locator(".q-size")).to_have_text(re.compile(r"^\d+(,\d)? (B|KB)$"))

        # the raw mail is a download, never shown in the page
        async with supervisor.expect_download() as waiting:
            await auto_reply.locator("a.q-download").click()
        download = await waiting.value
        assert download.suggested_filename.endswith(".eml")
        raw = (await download.path()).read_bytes()
        assert b"Ik ben afwezig tot maandag." in raw and b"Auto-Submitted: auto-replied" in raw
        assert supervisor.url.endswith("/console/")

        # released into a new case, which the queue shows
        await auto_reply.locator("button.q-release").click()
        await supervisor.click("#confirm-yes")
        message = supervisor.locator("#quarantine-msg")
        await expect(message).to_contain_text("nieuwe zaak")
        released = re.search(r"\w{4}-\w{4}", await message.inner_text())
        assert released is not None
        await expect(rows).to_have_count(1)

        # deleting asks first; "cancel" keeps it
        newsletter = rows.filter(has_text="Nieuwsbrief")
        await newsletter.locator("button.q-delete").click()
        await expect(supervisor.locator("#confirm")).to_be_visible()
        await supervisor.click("#confirm-no")
        await expect(rows).to_have_count(1)
        await newsletter.locator("button.q-delete").click()
        await supervisor.click("#confirm-yes")
        await expect(rows).to_have_count(0)
        await expect(supervisor.locator("#quarantine-empty")).to_be_visible()

        await supervisor.click("#view-btn-work")
        released_row = row(supervisor, released.group(0))
        await expect(released_row).to_be_visible()
        await expect(released_row.locator(".channel-email")).to_be_visible()
        assert errors == []
    finally:
        await context.close()


# ---------------------------------------------------------------- callback requests


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    await add_staff(sqlite_url)
    async with live_server(settings, port=port) as running:
        yield running


def callback_form(**more: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "phone": "06 12345678",
        # begun already (it counts from now), open for two more hours
        "windows": [
            {
                "start": (now - timedelta(minutes=10)).isoformat(),
                "end": (now + timedelta(hours=2)).isoformat(),
            }
        ],
        "voicemail_safe": False,
        "may_say_name": False,
        "code_word": "zonnebloem",
        **more,
    }


async def stored_phone(database_url: str, reference: str) -> CallbackRequest:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            found: CallbackRequest = (
                await session.execute(
                    select(CallbackRequest)
                    .join(Case, col(Case.id) == col(CallbackRequest.case_id))
                    .where(col(Case.reference) == reference)
                )
            ).scalar_one()
            return found
    finally:
        await db.dispose()


async def test_an_agent_calls_back_and_the_number_is_deleted(
    browser: Browser, server: LiveServer, sqlite_url: str
) -> None:
    errors: list[str] = []
    agent_context = await browser.new_context(viewport=LAPTOP)
    supervisor_context = await browser.new_context(viewport=LAPTOP)
    try:
        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        supervisor = watch(await staff_logs_in(supervisor_context, server, "sanne"), errors)

        async with httpx.AsyncClient(base_url=server.url) as victims:
            # a victim asks to be called back (its window is open: in the queue at once)
            filed = await victims.post(
                "/api/callback/request", json={**callback_form(), "language": "nl"}
            )
            assert filed.status_code == 201, filed.text
            reference = filed.json()["reference"]
            # another victim, in a chat, asks for a call as well
            chat = (await victims.post("/api/chat/start", json={"language": "nl"})).json()
            in_chat = await victims.post(
                "/api/chat/callback",
                json=callback_form(phone="+32 470 12 34 56", code_word="tulp"),
                headers={"Authorization": f"Bearer {chat['token']}"},
            )
            assert in_chat.status_code == 201, in_chat.text
            # and one for later today: not in the queue before its window opens
            later = datetime.now(UTC) + timedelta(hours=3)
            window = {"start": later.isoformat(), "end": (later + timedelta(hours=1)).isoformat()}
            upcoming = await victims.post(
                "/api/callback/request",
                json={**callback_form(phone="06 87654321", windows=[window]), "language": "nl"},
            )
            assert upcoming.status_code == 201, upcoming.text

        # the queue: a phone icon and the window on the callback, "wants a call" on the chat
        call_row = row(agent, reference)
        await expect(call_row.locator(".channel-callback .channel-icon")).to_have_text("\u260e")
        await expect(call_row.locator(".channel-callback")).to_contain_text("Terugbelverzoek")
        await expect(call_row.locator(".row-window")).to_have_text(
            re.compile(r"\d\d:\d\d–(\S+ )*\d\d:\d\d")
        )
        await expect(row(agent, chat["reference"]).locator(".wants-call")).to_contain_text(
            "wil gebeld worden"
        )
        await expect(call_row.locator(".wants-call")).to_have_count(0)
        # supervisors see the calls to come; the queue does not list them yet
        calls = supervisor.locator("#upcoming-calls")
        await expect(calls).to_be_visible()
        await expect(calls.locator("summary")).to_have_text("Komende terugbelverzoeken (1)")
        await calls.locator("summary").click()
        await expect(calls.locator(".upcoming-call")).to_contain_text(upcoming.json()["reference"])
        await expect(row(supervisor, upcoming.json()["reference"])).to_have_count(0)
        await expect(agent.locator("#upcoming-calls")).to_be_hidden()

        # a supervisor looking in sees the request, but the number masked
        await row(supervisor, reference).locator("button.open").click()
        looking = pane(supervisor, reference).locator(".callback")
        await expect(looking.locator(".cb-safe.cb-voicemail")).to_contain_text("NIET veilig")
        await expect(looking.locator(".cb-number-masked")).to_have_text("+31 •••••••78")
        await expect(looking.locator(".cb-claim-hint")).to_be_visible()
        await expect(looking.locator(".cb-code-word")).to_have_count(0)
        await expect(looking.locator(".cb-pass-give")).to_be_hidden()  # not theirs to give

        # the agent claims it: the safety instructions first, then the number and the code word
        case_id = await call_row.get_attribute("data-case-id")
        assert case_id
        await call_row.locator("button.claim").click()
        call_pane = pane(agent, reference)
        panel = call_pane.locator(".callback")
        await expect(panel).to_be_visible()
        safety = panel.locator(".cb-safety")
        await expect(safety.locator(".cb-voicemail")).to_contain_text(
            "Voicemail inspreken: NIET veilig"
        )
        await expect(safety.locator(".cb-voicemail")).to_have_attribute("data-safe", "no")
        await expect(safety.locator(".cb-name")).to_contain_text("Onze naam noemen: NEE")
        await expect(safety.locator(".cb-code-reminder")).to_contain_text("codewoord")
        number = panel.locator("a.cb-number")
        await expect(number).to_have_text("+31 6 12345678")
        await expect(number).to_have_attribute("href", "tel:+31612345678")
        await expect(panel.locator(".cb-code-word")).to_have_text("zonnebloem")
        await expect(panel.locator(".cb-window")).to_have_count(1)
        await expect(panel.locator(".cb-window")).to_have_attribute("data-when", "now")
        # the supervisor's view follows the claim: still masked for them
        await expect(looking.locator(".cb-number-masked")).to_have_text("+31 •••••••78")

        # nobody answers: recorded with a note, the number stays for the next try
        await panel.locator(".cb-note").fill("ging vijf keer over")
        await panel.locator(".cb-outcome-no_answer").click()
        attempts = panel.locator(".cb-attempts .cb-attempt-entry")
        await expect(attempts).to_have_count(1)
        await expect(attempts.first).to_contain_text("Geen gehoor")
        await expect(attempts.first).to_contain_text("Anouk")
        await expect(attempts.first).to_contain_text("ging vijf keer over")
        await expect(panel.locator(".cb-note")).to_have_value("")
        await expect(number).to_have_text("+31 6 12345678")
        await expect(looking.locator(".cb-attempts .cb-attempt-entry")).to_have_count(1)

        # a passphrase for the chat, shown once to read out
        await panel.locator(".cb-pass-give").click()
        shown = panel.locator(".cb-pass")
        await expect(shown.locator(".cb-pass-reference")).to_have_text(reference)
        passphrase = (await shown.locator(".cb-pass-phrase").inner_text()).strip()
        assert len(passphrase) > 10
        async with httpx.AsyncClient(base_url=server.url) as victim:
            resumed = await victim.post(
                "/api/chat/resume", json={"reference": reference, "passphrase": passphrase}
            )
        assert resumed.status_code == 200, resumed.text
        await shown.locator(".cb-pass-hide").click()
        await expect(shown).to_be_hidden()
        assert passphrase not in await agent.evaluate("document.body.textContent")
        stored = await agent.evaluate(
            "JSON.stringify(sessionStorage) + JSON.stringify(localStorage)"
        )
        assert "12345678" not in stored and "zonnebloem" not in stored and passphrase not in stored

        # reached: asked first, then the number and the code word are gone
        await panel.locator(".cb-outcome-reached").click()
        await expect(agent.locator("#confirm-text")).to_contain_text("verwijderd")
        await agent.click("#confirm-yes")
        await expect(panel.locator(".cb-contact")).to_have_attribute("data-contact", "deleted")
        await expect(panel.locator(".cb-deleted")).to_contain_text("Nummer en codewoord verwijderd")
        await expect(panel.locator(".cb-deleted")).to_contain_text("bereikt")
        await expect(panel.locator("a.cb-number")).to_have_count(0)
        await expect(panel.locator(".cb-attempt")).to_be_hidden()  # nothing left to call
        await expect(attempts).to_have_count(2)
        page_text = await agent.evaluate("document.body.textContent")
        assert "12345678" not in page_text and "zonnebloem" not in page_text
        await expect(looking.locator(".cb-contact")).to_have_attribute("data-contact", "deleted")

        # the API says so too, and the database holds nothing
        answer = await agent.request.get(f"{server.url}/api/staff/cases/{case_id}/callback")
        assert answer.ok
        cb = await answer.json()
        assert cb["state"] == "reached" and cb["contact_deleted_at"]
        assert (cb["number"], cb["number_masked"], cb["code_word"]) == (None, None, None)
        request = await stored_phone(sqlite_url, reference)
        assert (request.phone, request.code_word, request.state) == (None, None, "reached")

        # the timeline names each step
        await call_pane.locator(".pane-tab-timeline").click()
        timeline = call_pane.locator(".timeline-list")
        await expect(timeline.locator(".tl-event").filter(has_text="belpoging")).to_have_count(2)
        await expect(timeline).to_contain_text("terugbelverzoek ingediend")
        await expect(timeline).to_contain_text("wachtwoordzin gegeven voor de chat")
        await expect(timeline).to_contain_text("nummer en codewoord verwijderd")
        await expect(timeline).to_contain_text("Geen gehoor")
        assert errors == []
    finally:
        await agent_context.close()
        await supervisor_context.close()
