"""The agent console in real browsers: the triage queue, a high-risk case moving to the top, a
canned response, a private note the victim never sees, a warm transfer to a supervisor who
reads the handover note first and closes the case with an outcome."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from helpline.core.clock import FrozenClock, SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.casework import PLACEHOLDERS
from helpline.staff.models import Role
from helpline.triage.vocabulary import CATEGORIES, FLAGS, OUTCOMES, STATUSES, Priority
from tests.e2e.team import PASSWORD
from tests.live import LiveServer, free_port, live_server

CANNED_TITLE = "Welkom (e2e)"
CANNED_BODY = "Hoi, ik ben {agent_name}. Je referentie is {reference}."
NOTE = "PRIVENOTITIE-7Q: slachtoffer noemde zelfbeschadiging, niet herhalen"
HANDOVER = "OVERDRACHT-3K: graag jij verder, risico op zelfbeschadiging"
FIRST_WORDS = ("Iemand zet mijn foto's online.", "Ik word gechanteerd en weet het niet meer.")

pytestmark = pytest.mark.slow


async def add_staff(database_url: str) -> None:
    db = Database(database_url)
    async with db.transaction() as session:
        for username, name, role in (
            ("anouk", "Anouk", Role.agent),
            ("sanne", "Sanne", Role.supervisor),
        ):
            await create_staff(
                session,
                SystemClock(),
                username=username,
                password=PASSWORD,
                role=role,
                display_name=name,
            )
    await db.dispose()


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    await add_staff(sqlite_url)
    async with live_server(settings, port=port) as running:
        yield running


def watch(page: Page, errors: list[str]) -> Page:
    """Collect uncaught script errors (any is a failure) and CSP violations."""
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"{page.url}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    return page


async def staff_logs_in(
    context: BrowserContext, server: LiveServer, username: str, at: datetime | None = None
) -> Page:
    """Log in with password and a first TOTP enrolment; `at`: the server clock's time."""
    page = await context.new_page()
    await page.goto(f"{server.url}/console/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    secret_element = page.locator("#enrol-secret")
    await expect(secret_element).to_have_text(re.compile(r"[A-Z2-7]{4}"))
    secret = re.sub(r"\s", "", await secret_element.inner_text())
    totp = pyotp.TOTP(secret)
    await page.fill("#enrol-code", totp.at(at) if at else totp.now())
    await page.click("#enrol-submit")
    await expect(page.locator("#queue")).to_be_visible()
    await expect(page.locator("#queue-live")).to_have_attribute("data-live", "yes")
    return page


async def victim_starts_chat(
    context: BrowserContext, server: LiveServer, words: str
) -> tuple[Page, str]:
    """A victim starts a chat and writes; returns their page and the case reference."""
    page = await context.new_page()
    await page.goto(f"{server.url}/")
    await page.click("#start-chat")
    receipt = page.locator("#receipt-reference")
    await expect(receipt).to_have_text(re.compile(r"\w{4}-\w{4}"))
    reference = (await receipt.inner_text()).strip()
    await page.check("#saved-check")
    await page.click("#receipt-continue")
    await page.fill("#message-input", words)
    await page.click("#send-button")
    await expect(page.locator("#messages .message.from-victim[data-seq='1']")).to_be_visible()
    return page, reference


def row(page: Page, reference: str) -> Locator:
    return page.locator(f"#queue .queue-row[data-reference='{reference}']")


def pane(page: Page, reference: str) -> Locator:
    return page.locator("#panes .pane").filter(
        has=page.locator(f".pane-title .ref:text-is('{reference}')")
    )


async def test_agent_works_a_high_risk_chat_and_hands_it_to_a_supervisor(
    browser: Browser, server: LiveServer
) -> None:
    errors: list[str] = []
    laptop: ViewportSize = {"width": 1366, "height": 800}
    supervisor_context = await browser.new_context(viewport=laptop)
    agent_context = await browser.new_context(viewport=laptop)
    victim_contexts = [
        await browser.new_context(viewport={"width": 390, "height": 800}) for _ in FIRST_WORDS
    ]
    try:
        # the supervisor writes a canned response with placeholders
        supervisor = watch(await staff_logs_in(supervisor_context, server, "sanne"), errors)
        await expect(supervisor.locator("#views")).to_be_visible()
        await supervisor.click("#view-btn-canned")
        await expect(supervisor.locator("#canned-placeholders [data-placeholder]")).to_have_count(4)
        await supervisor.fill("#canned-title", CANNED_TITLE)
        await supervisor.fill("#canned-body", CANNED_BODY)
        await supervisor.click("#canned-save")
        entry = supervisor.locator("#canned-list .canned-entry").filter(has_text=CANNED_TITLE)
        await expect(entry).to_have_count(1)
        await expect(entry).to_contain_text("{reference}")
        # an unknown placeholder is refused with a clear message, nothing saved
        await supervisor.fill("#canned-title", "Fout")
        await supervisor.fill("#canned-body", "Hallo {voornaam}")
        await supervisor.click("#canned-save")
        await expect(supervisor.locator("#canned-msg")).to_contain_text("{voornaam}")
        await expect(
            supervisor.locator("#canned-list .canned-entry").filter(has_text="Fout")
        ).to_have_count(0)
        await supervisor.click("#view-btn-work")

        # an agent logs in; the queue is empty of these chats so far
        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        await expect(agent.locator("#views")).to_be_hidden()  # agents have no supervisor views

        # two victims start chats, each in their own browser
        started = [
            await victim_starts_chat(context, server, words)
            for context, words in zip(victim_contexts, FIRST_WORDS, strict=True)
        ]
        victims = [watch(page, errors) for page, _ in started]
        first_ref, second_ref = [reference for _, reference in started]
        rows = agent.locator("#queue .queue-row")
        await expect(row(agent, first_ref)).to_be_visible()
        await expect(row(agent, second_ref)).to_be_visible()
        # same priority: the one waiting longest first
        await expect(rows.first).to_have_attribute("data-reference", first_ref)
        await expect(row(agent, second_ref).locator(".prio")).to_contain_text("Normaal")
        await expect(row(agent, second_ref).locator(".sla")).to_be_visible()

        # the supervisor opens the second chat and marks a self-harm risk
        supervisor_row = row(supervisor, second_ref)
        await supervisor_row.locator("button.open").click()
        sup_pane = pane(supervisor, second_ref)
        await expect(sup_pane).to_be_visible()
        await sup_pane.locator(".triage-toggle").click()
        await sup_pane.locator(".flag-box-self_harm").check()
        await expect(sup_pane.locator(".triage-msg")).to_have_attribute("data-tone", "ok")
        await expect(sup_pane.locator(".pane-title .prio")).to_contain_text("Urgent")

        # ... and it jumps to the top of the agent's queue, with its flag and priority in words
        await expect(rows.first).to_have_attribute("data-reference", second_ref)
        top = row(agent, second_ref)
        await expect(top.locator(".prio")).to_contain_text("Urgent")
        await expect(top.locator(".flag-self_harm")).to_contain_text("Risico op zelfbeschadiging")
        # the agent sees the supervisor has it open
        await expect(top.locator(".viewers")).to_contain_text("Sanne")

        # the agent claims it and answers with the canned response, edited before sending
        await top.locator("button.claim").click()
        agent_pane = pane(agent, second_ref)
        await expect(agent_pane).to_be_visible()
        await expect(agent_pane.locator(".messages .message.from-victim").first).to_contain_text(
            FIRST_WORDS[1]
        )
        await expect(agent_pane.locator(".pane-viewers")).to_contain_text("Sanne")
        await agent_pane.locator(".canned-toggle").click()
        await agent_pane.locator(".canned-filter").fill("e2e")
        choice = agent_pane.locator(".canned-item").filter(has_text=CANNED_TITLE)
        await expect(choice).to_have_count(1)
        await choice.click()
        reply = agent_pane.locator("textarea.reply")
        canned_text = f"Hoi, ik ben Anouk. Je referentie is {second_ref}."
        await expect(reply).to_have_value(canned_text)
        await expect(reply).to_be_focused()
        await reply.press("End")
        await reply.press_sequentially(" Je bent hier veilig.")
        await agent_pane.locator("button.send").click()
        await expect(victims[1].locator("#messages .message.from-staff")).to_contain_text(
            f"{canned_text} Je bent hier veilig."
        )

        # status and a priority override (a reason is required), then back to the computed one
        await agent_pane.locator(".triage-toggle").click()
        triage = agent_pane.locator(".triage")
        await triage.locator(".triage-status").select_option("waiting_victim")
        await expect(agent_pane.locator(".pane-title .status")).to_have_text("Wacht op slachtoffer")
        await expect(top.locator(".status")).to_have_text("Wacht op slachtoffer")
        await triage.locator(".prio-select").select_option("2")
        await triage.locator(".prio-apply").click()
        await expect(triage.locator(".triage-msg")).to_contain_text("Geef een reden")
        await triage.locator(".prio-reason").fill("slachtoffer is nu veilig thuis")
        await triage.locator(".prio-apply").click()
        await expect(agent_pane.locator(".pane-title .prio")).to_contain_text("Hoog")
        await expect(triage.locator(".prio-why")).to_have_text("(handmatig aangepast)")
        await expect(top.locator(".prio")).to_contain_text("Hoog")
        await triage.locator(".prio-reset").click()
        await expect(agent_pane.locator(".pane-title .prio")).to_contain_text("Urgent")
        await agent_pane.locator(".triage-toggle").click()
        await expect(triage).to_be_hidden()

        # a private note: in the console, never at the victim's
        await agent_pane.locator(".pane-tab-notes").click()
        await expect(agent_pane.locator(".private-banner")).to_be_visible()
        await agent_pane.locator(".note-input").fill(NOTE)
        await agent_pane.locator(".note-save").click()
        await expect(agent_pane.locator(".notes-list .note")).to_contain_text(NOTE)
        await agent_pane.locator(".pane-tab-timeline").click()
        timeline = agent_pane.locator(".timeline-list")
        await expect(timeline.locator(".tl-note")).to_contain_text(NOTE)
        await expect(timeline.locator(".tl-event").filter(has_text="Anouk").first).to_be_visible()
        await agent_pane.locator(".pane-tab-conversation").click()

        # the supervisor's team view: Anouk is online and carries the case
        await supervisor.click("#view-btn-team")
        anouk = supervisor.locator("#team-staff tr").filter(has_text="Anouk")
        await expect(anouk).to_have_attribute("data-online", "yes")
        await expect(anouk.locator(".team-cases")).to_contain_text(second_ref)
        await supervisor.click("#view-btn-work")

        # warm transfer to the supervisor, with a handover note
        await agent_pane.locator("button.transfer").click()
        dialog = agent.locator("dialog.form-dialog")
        await expect(dialog).to_be_visible()
        sanne = dialog.locator(".colleague").filter(has_text="Sanne")
        await expect(sanne).to_contain_text("online")
        await sanne.locator("input").check()
        await dialog.locator("textarea").fill(HANDOVER)
        await dialog.locator("button[type=submit]").click()
        await expect(dialog).to_have_count(0)
        await expect(agent_pane).to_have_count(0)  # no longer the agent's
        await expect(agent.locator("#queue-notice")).to_contain_text(second_ref)

        # the supervisor sees the handover note first, the conversation only after reading it
        handover = sup_pane.locator(".handover")
        await expect(handover).to_be_visible()
        await expect(handover).to_contain_text(HANDOVER)
        await expect(handover).to_contain_text("Anouk")
        await expect(sup_pane.locator(".tabpanel-conversation")).to_be_hidden()
        await handover.locator("button.handover-seen").click()
        await expect(handover).to_be_hidden()
        await expect(sup_pane.locator(".messages .message.from-staff")).to_contain_text(canned_text)

        # ... and closes the case with an outcome
        await sup_pane.locator("button.close-case").click()
        close = supervisor.locator("dialog.form-dialog")
        await close.locator("button[type=submit]").click()  # no outcome chosen: refused inline
        await expect(close.locator(".form-error")).to_contain_text("Kies een uitkomst")
        await close.get_by_label("Alleen advies").check()
        await close.locator("button[type=submit]").click()
        await expect(close).to_have_count(0)
        await expect(sup_pane.locator(".pane-title .status")).to_have_text("Afgesloten")
        await expect(sup_pane.locator(".pane-banner")).to_contain_text("Alleen advies")
        await expect(row(agent, second_ref)).to_have_count(0)  # gone from the open queue

        # the victim's browser shows the chat ended, and never the note or the handover
        await expect(victims[1].locator("#ended-panel")).to_be_visible()

        # the other chat: "possible minor depicted" brings the hotline referral from the server
        first = row(agent, first_ref)
        case_id = await first.get_attribute("data-case-id")
        assert case_id
        await first.locator("button.claim").click()
        first_pane = pane(agent, first_ref)
        await first_pane.locator(".triage-toggle").click()
        await first_pane.locator(".triage-category").select_option("possible_minor")
        await agent.click("#confirm-yes")
        await expect(first_pane.locator(".minor-banner")).to_be_visible()
        await expect(first_pane.locator(".minor-referral")).to_contain_text("child-abuse hotline")
        await expect(first_pane.locator(".pane-title .prio")).to_contain_text("Hoog")
        # released: back in the queue for anyone to claim
        await first_pane.locator("button.release").click()
        await agent.click("#confirm-yes")
        await expect(first_pane).to_have_count(0)
        await expect(first.locator("button.claim")).to_be_visible()

        # the supervisor gives it to the agent from the team view
        await supervisor.click("#view-btn-team")
        await supervisor.click("#team-assign")
        assign = supervisor.locator("dialog.form-dialog")
        await assign.locator("select").select_option(case_id)
        await assign.locator(".colleague").filter(has_text="Anouk").locator("input").check()
        await assign.locator("button[type=submit]").click()
        await expect(assign).to_have_count(0)
        await expect(supervisor.locator("#team-msg")).to_contain_text(first_ref)
        await expect(
            supervisor.locator("#team-staff tr").filter(has_text="Anouk").locator(".team-cases")
        ).to_contain_text(first_ref)
        await expect(first.locator(".owner")).to_have_text("Bij jou")

        # the supervisor deletes the canned response again
        await supervisor.click("#view-btn-canned")
        await entry.locator("button.delete").click()
        await supervisor.click("#confirm-yes")
        await expect(entry).to_have_count(0)
        for victim in victims:
            everything = await victim.evaluate(
                "document.documentElement.textContent + document.documentElement.innerHTML"
            )
            assert NOTE not in everything
            assert HANDOVER not in everything
            assert "PRIVENOTITIE" not in everything
        assert errors == []
    finally:
        for context in (supervisor_context, agent_context, *victim_contexts):
            await context.close()


# ---------------------------------------------------------------- SLA timers, controlled clock


async def test_queue_timers_run_on_server_time_and_breaches_are_announced(
    browser: Browser, settings_for: Any, sqlite_url: str
) -> None:
    """The server's clock stands still months away from the browser's: the timers count from
    the server's `now`, turn to a warning in the last quarter and say "overdue" when breached,
    and the breach is announced to screen readers."""
    clock = FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    port = free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        run_workers=True,  # the SLA watch job runs on the frozen clock
        worker_poll_seconds=0.2,
        staff_idle_minutes=600,
    )
    await add_staff(sqlite_url)
    errors: list[str] = []
    async with live_server(settings, clock, port=port) as server:
        agent_context = await browser.new_context(viewport={"width": 1280, "height": 800})
        victim_context = await browser.new_context(viewport={"width": 390, "height": 800})
        try:
            agent = watch(await staff_logs_in(agent_context, server, "anouk", clock.now()), errors)
            victim, reference = await victim_starts_chat(victim_context, server, FIRST_WORDS[0])
            watch(victim, errors)
            timer = row(agent, reference).locator(".sla")
            # normal priority: a first reply within 15 minutes, counting down from the server's now
            await expect(timer).to_have_attribute("data-state", "ok")
            await expect(timer.locator(".sla-time")).to_have_text(re.compile(r"^1[45]:\d\d$"))
            await expect(timer).to_contain_text("1e reactie")

            # 12 minutes later (less than a quarter left) the next load shows a warning
            clock.advance(minutes=12)
            await agent.locator("#queue-filter-box summary").click()
            await agent.select_option("#filter-channel", "chat")
            await expect(timer).to_have_attribute("data-state", "warning")
            await expect(timer.locator(".sla-time")).to_have_text(re.compile(r"^[23]:\d\d$"))
            await expect(timer).to_contain_text("bijna")

            # past the target: the server's watch job notices, every console hears of it
            clock.advance(minutes=4)
            await expect(agent.locator("#announcer")).to_contain_text(
                f"Servicenorm gemist: {reference}, Eerste reactie"
            )
            await expect(row(agent, reference)).to_have_attribute("data-sla", "breached")
            await expect(timer).to_have_attribute("data-state", "breached")
            await expect(timer).to_contain_text("te laat")
            await expect(timer.locator(".sla-time")).to_have_text(re.compile(r"^\+1:\d\d$"))
            # the filter is remembered for this tab
            await agent.reload()
            await expect(agent.locator("#filter-channel")).to_have_value("chat")
            await expect(row(agent, reference)).to_be_visible()
            assert errors == []
        finally:
            await agent_context.close()
            await victim_context.close()


# ---------------------------------------------------------------- the console's words


CONSOLE = Path(__file__).resolve().parents[2] / "frontend" / "console"


def test_every_console_string_exists_in_dutch_and_english() -> None:
    """Both languages have the same keys (none empty), every key the page names exists, and
    every code the server's vocabulary can send has a label."""
    strings = {
        lang: json.loads((CONSOLE / "i18n" / f"{lang}.json").read_text()) for lang in ("nl", "en")
    }
    assert strings["nl"].keys() == strings["en"].keys()
    for lang, table in strings.items():
        assert [k for k, v in table.items() if not isinstance(v, str) or not v.strip()] == [], lang
    page = (CONSOLE / "index.html").read_text()
    named = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', page))
    assert named - strings["nl"].keys() == set()
    codes = (
        [f"category.{c}" for c in CATEGORIES]
        + [f"flag.{f}" for f in FLAGS]
        + [f"flag_short.{f}" for f in FLAGS]
        + [f"status.{s}" for s in STATUSES]
        + [f"outcome.{o}" for o in OUTCOMES]
        + [f"priority.{p.name}" for p in Priority]
        + [f"placeholder.{p}" for p in PLACEHOLDERS]
    )
    assert [c for c in codes if c not in strings["nl"]] == []
