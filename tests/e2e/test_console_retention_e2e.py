"""Retention and handover confirmations in the staff console, in real browsers (issues 9 and 8):
an agent sees the purges of the coming week for their own cases; a supervisor opens such a case
from that list, places a legal hold with a reason and lifts it again; an admin runs the purge,
a dry run first showing what would go; and a consent an agent recorded by phone shows up in a
colleague's "Waiting for your confirmation", who confirms it from there."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect
from sqlalchemy import select

from helpline.cases.models import Case, CaseStatus
from helpline.core.db import Database
from helpline.retention.policy import CASE_KINDS
from helpline.retention.purge import COUNTED
from helpline.staff.models import Staff
from tests.e2e.test_console_channels_e2e import callback_form
from tests.e2e.test_console_e2e import (
    FIRST_WORDS,
    pane,
    row,
    staff_logs_in,
    victim_starts_chat,
    watch,
)
from tests.e2e.test_console_handover_e2e import (
    add_partner,
    import_and_confirm,
    propose,
    record_yes_by_phone,
)
from tests.live import LiveServer

pytestmark = pytest.mark.slow

LAPTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 780}
HOLD_REASON = "Vordering officier van justitie, zaaknummer 12/345"


async def closed_long_ago(database_url: str, reference: str, *, days: int, agent: str) -> str:
    """Make the case one `agent` closed `days` ago (the default keeps messages 90 days);
    returns its id."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            case = (
                await session.execute(select(Case).where(Case.reference == reference))
            ).scalar_one()
            staff_id = (
                await session.execute(select(Staff.id).where(Staff.username == agent))
            ).scalar_one()
            ended = datetime.now(UTC) - timedelta(days=days)
            case.status = CaseStatus.closed.value
            case.outcome = "advice_only"
            case.assigned_staff_id = staff_id
            case.ended_at = ended
            case.last_activity_at = ended
            session.add(case)
            case_id: str = case.id
    finally:
        await db.dispose()
    return case_id


async def api_get(page: Page, path: str) -> Any:
    """A GET with the page's staff session (cookies shared with the browser context)."""
    answer = await page.request.get(page.url.split("/console/")[0] + path)
    assert answer.ok, await answer.text()
    return await answer.json()


def upcoming_row(page: Page, reference: str) -> Any:
    return page.locator(f"#retention-list tr.rt-case[data-reference='{reference}']")


async def test_upcoming_purges_a_legal_hold_and_a_purge_run(
    browser: Browser, team_server: LiveServer, sqlite_url: str
) -> None:
    errors: list[str] = []
    contexts: list[BrowserContext] = [await browser.new_context(viewport=LAPTOP) for _ in range(3)]
    narrow = await browser.new_context(viewport=PHONE)
    victim_contexts = [await browser.new_context(viewport=PHONE) for _ in range(2)]
    try:
        # two victims chat; their cases were closed 88 and 100 days ago (messages: 90 days)
        _, soon = await victim_starts_chat(victim_contexts[0], team_server, FIRST_WORDS[0])
        _, overdue = await victim_starts_chat(victim_contexts[1], team_server, FIRST_WORDS[1])
        soon_id = await closed_long_ago(sqlite_url, soon, days=88, agent="anouk")
        await closed_long_ago(sqlite_url, overdue, days=100, agent="anouk")

        anouk = watch(await staff_logs_in(narrow, team_server, "anouk"), errors)
        bram = watch(await staff_logs_in(contexts[0], team_server, "bram"), errors)
        sanne = watch(await staff_logs_in(contexts[1], team_server, "sanne"), errors)
        ada = watch(await staff_logs_in(contexts[2], team_server, "ada"), errors)

        # the agent sees the purges of the coming week of her own cases, on a phone
        await anouk.click("#view-btn-retention")
        await expect(anouk.locator("#retention-title")).to_be_focused()
        mine = upcoming_row(anouk, soon)
        await expect(mine).to_have_attribute("data-hold", "off")
        messages = mine.locator(".rt-purges li[data-kind='messages']")
        await expect(messages).to_contain_text("Berichten")
        await expect(messages.locator(".rt-due")).to_have_attribute("data-due", "later")
        await expect(messages.locator(".rt-due")).to_have_text("over 2 dagen")
        await expect(
            upcoming_row(anouk, overdue).locator(".rt-purges li[data-kind='messages'] .rt-due")
        ).to_have_attribute("data-due", "overdue")
        await expect(anouk.locator("#retention-runs")).to_be_hidden()  # admins only
        assert await anouk.evaluate("document.documentElement.scrollWidth") <= 360
        # another agent: not his cases, so nothing listed
        await bram.click("#view-btn-retention")
        await expect(bram.locator("#retention-empty")).to_be_visible()
        await expect(bram.locator("#retention-list tr")).to_have_count(0)

        # supervisors have the statistics (a server-rendered page) a click away, in a new tab
        statistics = sanne.locator("#view-link-statistics")
        await expect(statistics).to_have_attribute("href", "/staff/statistics?lang=nl")
        await expect(statistics).to_have_attribute("target", "_blank")
        await expect(statistics).to_have_attribute("rel", "noopener")
        async with sanne.context.expect_page() as opened:
            await statistics.click()
        page = await opened.value
        await page.wait_for_load_state()
        assert page.url.endswith("/staff/statistics?lang=nl")
        assert (await sanne.request.get(page.url)).status == 200
        await page.close()
        await expect(anouk.locator("#view-link-statistics")).to_be_hidden()
        year = datetime.now(UTC).year
        annual = sanne.locator("#figures-annual-last")
        await expect(annual).to_have_attribute("href", f"/staff/report/{year - 1}?lang=nl")

        # the supervisor opens the case from the list, on its "Retention" tab
        await sanne.click("#view-btn-retention")
        await upcoming_row(sanne, soon).locator("button.rt-open").click()
        case = pane(sanne, soon)
        await expect(case).to_be_visible()
        await expect(case.locator(".pane-tab-retention")).to_have_attribute("aria-selected", "true")
        tab = case.locator(".rt-panel")
        await expect(tab.locator(".rt-schedule tr[data-kind='messages']")).to_have_attribute(
            "data-has-data", "yes"
        )
        await expect(tab.locator(".rt-from")).to_contain_text("afsluiting")
        hold = tab.locator(".rt-hold")
        await expect(hold).to_have_attribute("data-hold", "off")
        await expect(hold.locator(".help")).to_contain_text("niet gewist zolang de blokkade")

        # a hold needs a reason
        await hold.locator("button.rt-place").click()
        dialog = sanne.locator("dialog.form-dialog[open]")
        await expect(dialog).to_contain_text(soon)
        await dialog.locator("button[type=submit]").click()
        await expect(dialog.locator(".form-error")).to_contain_text("reden")
        await dialog.locator("textarea.rt-reason").fill(HOLD_REASON)
        await dialog.locator("button[type=submit]").click()
        await expect(dialog).to_have_count(0)
        await expect(hold).to_have_attribute("data-hold", "on")
        await expect(hold.locator(".rt-hold-reason")).to_contain_text(HOLD_REASON)
        await expect(hold.locator(".rt-hold-state")).to_contain_text("Sanne")
        await expect(hold.locator("button.rt-lift")).to_be_focused()
        await expect(tab.locator(".rt-schedule .rt-held").first).to_be_visible()
        shown = await api_get(sanne, f"/api/staff/cases/{soon_id}/retention")
        assert shown["hold"]["reason"] == HOLD_REASON
        assert shown["hold"]["placed_by"]["name"] == "Sanne"
        # the list says so too, for the agent as well
        await sanne.click("#view-btn-retention")
        await expect(upcoming_row(sanne, soon)).to_have_attribute("data-hold", "on")
        await anouk.click("#retention-refresh")
        await expect(upcoming_row(anouk, soon)).to_have_attribute("data-hold", "on")
        await expect(upcoming_row(anouk, soon).locator(".rt-held")).to_have_text(
            "Juridische blokkade"
        )

        # lifted, after a question that says what that means
        await sanne.click("#view-btn-work")
        await hold.locator("button.rt-lift").click()
        await expect(sanne.locator("#confirm")).to_contain_text("kan niet terug")
        await sanne.click("#confirm-yes")
        await expect(hold).to_have_attribute("data-hold", "off")
        await expect(hold.locator("button.rt-place")).to_be_focused()
        shown = await api_get(sanne, f"/api/staff/cases/{soon_id}/retention")
        assert shown["hold"] is None

        # agents cannot place a hold: the button is not there
        await anouk.click("#view-btn-retention")
        await upcoming_row(anouk, soon).locator("button.rt-open").click()
        own = pane(anouk, soon)
        await expect(own.locator(".rt-hold")).to_have_attribute("data-hold", "off")
        await expect(own.locator("button.rt-place")).to_have_count(0)
        assert await anouk.evaluate("document.documentElement.scrollWidth") <= 360

        # the admin: a dry run first, which removes nothing and shows what would go
        await expect(sanne.locator("#retention-runs")).to_be_hidden()
        await ada.click("#view-btn-retention")
        await expect(ada.locator("#retention-runs")).to_be_visible()
        await expect(ada.locator("#retention-runs .empty")).to_be_visible()
        await ada.click("#retention-run")
        result = ada.locator("#retention-result")
        await expect(result).to_have_attribute("data-dry-run", "yes")
        await expect(result.locator("[data-count='messages'] dd")).to_have_text("1")
        await expect(result.locator("[data-count='cases'] dd")).to_have_text("0")
        await expect(ada.locator("#confirm")).to_contain_text("1 berichten")
        await ada.click("#confirm-no")
        await expect(ada.locator("#retention-runs-msg")).to_have_text("Niet opgeschoond.")
        await expect(ada.locator("#retention-runs-list tr[data-dry-run='yes']")).to_have_count(1)
        await expect(upcoming_row(ada, overdue)).to_have_count(1)  # still there
        runs = await api_get(ada, "/api/staff/retention/runs")
        assert [(r["dry_run"], r["counts"]["messages"]) for r in runs["runs"]] == [(True, 1)]

        # then for real: the overdue messages go, the case leaves the week's list
        await ada.click("#retention-run")
        await expect(ada.locator("#confirm")).to_be_visible()
        await ada.click("#confirm-yes")
        await expect(result).to_have_attribute("data-dry-run", "no")
        await expect(result.locator("[data-count='messages'] dd")).to_have_text("1")
        await expect(ada.locator("#retention-runs-msg")).to_have_text("Opschoonronde klaar.")
        await expect(ada.locator("#retention-runs-list tr[data-dry-run='no']")).to_have_count(1)
        await expect(upcoming_row(ada, overdue)).to_have_count(0)
        await expect(upcoming_row(ada, soon)).to_have_count(1)  # due in two days: kept
        assert errors == []
    finally:
        for context in (*contexts, narrow, *victim_contexts):
            await context.close()


async def test_a_recorded_consent_waits_in_a_colleagues_list_and_is_confirmed_there(
    browser: Browser, team_server: LiveServer
) -> None:
    errors: list[str] = []
    contexts = [await browser.new_context(viewport=LAPTOP) for _ in range(2)]
    narrow = await browser.new_context(viewport=PHONE)
    try:
        admin = watch(await staff_logs_in(contexts[0], team_server, "ada"), errors)
        anouk = watch(await staff_logs_in(contexts[1], team_server, "anouk"), errors)
        bram = watch(await staff_logs_in(narrow, team_server, "bram"), errors)
        await admin.click("#view-btn-partners")
        fier = await add_partner(admin, "Fier (e2e)", "sexual_violence_care", "intake@fier.test")
        await import_and_confirm(fier)

        async with httpx.AsyncClient(base_url=team_server.url) as victims:
            filed = await victims.post(
                "/api/callback/request", json={**callback_form(), "language": "nl"}
            )
            assert filed.status_code == 201, filed.text
            reference = filed.json()["reference"]
        await row(anouk, reference).locator("button.claim").click()
        case = pane(anouk, reference)
        await case.locator(".pane-tab-handover").click()
        handover = await propose(case, "Fier (e2e)", ["categories"], None)
        handover_ref = (await handover.locator(".ph-ref").inner_text()).strip()
        await expect(bram.locator("#confirmations")).to_be_hidden()  # nothing waits yet
        await record_yes_by_phone(case, handover)

        # the colleague (who does not hold the case) hears of it at once; the recorder does not
        waiting = bram.locator("#confirmations")
        await expect(waiting).to_be_visible()
        await expect(bram.locator("#confirmations-count")).to_have_text("1")
        await expect(bram.locator("#announcer")).to_contain_text("wachten op jouw bevestiging")
        await expect(anouk.locator("#confirmations")).to_be_hidden()
        await bram.click("#confirmations-toggle")
        await expect(bram.locator("#confirmations-toggle")).to_have_attribute(
            "aria-expanded", "true"
        )
        entry = bram.locator("#confirmations-list .cf-item")
        await expect(entry).to_have_count(1)
        await expect(entry).to_contain_text(handover_ref)
        await expect(entry).to_contain_text("Fier (e2e)")
        await expect(entry).to_contain_text("Vastgelegd door Anouk")
        assert await bram.evaluate("document.documentElement.scrollWidth") <= 360

        # it opens the confirmation dialog; confirmed, the list empties and the case moves on
        await entry.locator("a.cf-open").click()
        dialog = bram.locator("dialog.form-dialog[open]")
        await expect(dialog).to_contain_text(handover_ref)
        await expect(dialog.locator(".ph-confirm-text")).not_to_be_empty()
        await dialog.locator("button[type=submit]").click()
        await expect(dialog).to_have_count(0)
        await expect(bram.locator("#queue-notice")).to_contain_text("bevestigd")
        await expect(waiting).to_be_hidden()
        await expect(bram.locator("#confirmations-panel")).to_be_hidden()
        await expect(handover.locator(".ph-status")).to_have_attribute("data-status", "consented")
        assert errors == []
    finally:
        for context in (*contexts, narrow):
            await context.close()


# ---------------------------------------------------------------- the words of these screens

CONSOLE = Path(__file__).resolve().parents[2] / "frontend" / "console"


def test_every_retention_and_confirmation_string_has_words_in_both_languages() -> None:
    """Every kind, count and trigger the retention API can send has a label, and every literal
    key retention.js and confirmations.js use exists in Dutch and English."""
    strings = {
        lang: json.loads((CONSOLE / "i18n" / f"{lang}.json").read_text()) for lang in ("nl", "en")
    }
    codes = (
        [f"retention.kind.{k}" for k in CASE_KINDS]
        + ["retention.kind.notice", "retention.kind.handover"]
        + [f"retention.count.{c}" for c in COUNTED]
        + [f"retention.count_n.{c}" for c in COUNTED]
        + [f"retention.trigger.{t}" for t in ("schedule", "cli", "staff")]
        + [f"retention.run_status.{s}" for s in ("running", "done", "failed")]
        + ["timeline.event.legal_hold", "timeline.event.legal_hold_lifted"]
    )
    used: set[str] = set()
    for name in ("retention.js", "confirmations.js"):
        source = (CONSOLE / name).read_text()
        used |= set(re.findall(r"'((?:retention|confirmations)\.[a-z0-9_.-]+)'", source))
    for lang, table in strings.items():
        assert [c for c in codes if c not in table] == [], lang
        prefixes = {key for key in used if any(k.startswith(f"{key}.") for k in table)}
        assert sorted(used - prefixes - table.keys()) == [], lang
