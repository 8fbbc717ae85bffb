"""The takedown engine in the console, in real browsers: an admin adds a platform and gives it
an API key in the platform directory; an agent with a claimed chat adds a URL as evidence,
builds a removal request to that platform, previews it, sends it (a web-form platform: the
agent pastes the prepared text and marks it submitted); the notices view lists it; the
platform answers one URL through its portal link and the console shows it removed; the agent
records the other URL's outcome by hand; a supervisor sees the figures and their charts."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Locator, ViewportSize, expect

from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from helpline.takedown.builder import LANGUAGES
from helpline.takedown.states import Delivery, EscalationStatus, EscalationStep, NoticeStatus
from tests.e2e.test_console_e2e import (
    PASSWORD,
    pane,
    row,
    staff_logs_in,
    victim_starts_chat,
    watch,
)
from tests.live import LiveServer, free_port, live_server

pytestmark = pytest.mark.slow

LAPTOP: ViewportSize = {"width": 1366, "height": 900}
TYPED_URL = "https://fotoforum.example.org/p/4712"
PLATFORM = "Fotoforum Demo"
WEB_FORM = "https://fotoforum.example.org/legal/dsa"


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        snapshot_allow_loopback=True,  # the "forum" page kept as evidence is this server's
    )
    db = Database(sqlite_url)
    async with db.transaction() as session:
        for username, name, role in (("anouk", "Anouk", Role.agent), ("ada", "Ada", Role.admin)):
            await create_staff(
                session,
                SystemClock(),
                username=username,
                password=PASSWORD,
                role=role,
                display_name=name,
            )
    await db.dispose()
    async with live_server(settings, port=port) as running:
        yield running


def a_zone_on_another_day(zone: str = "Europe/Amsterdam") -> str:
    """A time zone whose date is not `zone`'s right now (12–13 hours behind before noon there,
    13–14 ahead after), for a browser: a page that took the browser's date for the
    helpline's would show another day."""
    return "Pacific/Pago_Pago" if datetime.now(ZoneInfo(zone)).hour < 12 else "Pacific/Kiritimati"


def url_row(notice: Locator, url: str) -> Locator:
    return notice.locator(".notice-url").filter(
        has=notice.page.locator(f".notice-url-text:text-is('{url}')")
    )


async def test_agent_sends_a_removal_request_and_sees_the_platform_remove_it(
    browser: Browser, server: LiveServer
) -> None:
    errors: list[str] = []
    EVIDENCE_URL = f"{server.url}/?post=4711"  # noqa: N806
    # the admin's browser is on another day than the helpline (Europe/Amsterdam, the default)
    admin_context = await browser.new_context(viewport=LAPTOP, timezone_id=a_zone_on_another_day())
    agent_context = await browser.new_context(viewport=LAPTOP)
    victim_context = await browser.new_context(viewport={"width": 390, "height": 800})
    platform_context = await browser.new_context(viewport=LAPTOP)
    try:
        # the admin adds a web-form platform in the platform directory
        admin = watch(await staff_logs_in(admin_context, server, "ada"), errors)
        await admin.click("#view-btn-platforms")
        await expect(admin.locator("#platforms-new")).to_be_visible()
        await admin.click("#platforms-new")
        form = admin.locator(".platform-form")
        await form.locator(".pf-name").fill(PLATFORM)
        await form.locator(".pf-slug").fill("fotoforum-demo")
        await form.locator(".pf-delivery").select_option("web_form")
        await form.locator(".pf-web_form_url").fill(WEB_FORM)
        await form.locator(".pf-languages").fill("nl, en")
        await form.locator(".pf-save").click()
        entry = admin.locator("#platforms-list .platform-row[data-slug='fotoforum-demo']")
        await expect(entry).to_contain_text(PLATFORM)
        await expect(entry).to_contain_text("Alleen webformulier")
        # a taken slug is refused with a clear message
        await admin.click("#platforms-new")
        await admin.locator(".platform-form .pf-name").fill("Dubbel")
        await admin.locator(".platform-form .pf-slug").fill("fotoforum-demo")
        await admin.locator(".platform-form .pf-delivery").select_option("web_form")
        await admin.locator(".platform-form .pf-web_form_url").fill(WEB_FORM)
        await admin.locator(".platform-form .pf-save").click()
        await expect(admin.locator(".platform-form .form-error")).to_contain_text("al in gebruik")
        await admin.locator(".platform-form button:text-is('Annuleren')").click()
        # an API key, shown once with a warning
        await entry.locator(".platform-key").click()
        await admin.click("#confirm-yes")
        key = entry.locator(".platform-key-value")
        await expect(key).to_have_value(re.compile(r"^hlk_"))
        await expect(entry.locator(".platform-key-once .warning")).to_contain_text(
            "niet nog eens getoond"
        )
        prefix = (await key.input_value())[:8]

        # a victim starts a chat; the agent claims it
        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        await expect(agent.locator("#views")).to_be_hidden()
        await expect(agent.locator("#view-btn-notices")).to_be_visible()
        victim_page, reference = await victim_starts_chat(
            victim_context, server, "Iemand heeft mijn foto's op een forum gezet."
        )
        watch(victim_page, errors)
        await row(agent, reference).locator("button.claim").click()
        case = pane(agent, reference)
        await expect(case).to_be_visible()

        # the agent keeps the forum's URL as evidence
        await case.locator(".evidence-toggle").click()
        await case.locator(".evidence-url").fill(EVIDENCE_URL)
        await case.locator(".evidence-url-submit").click()
        await expect(case.locator(".evidence-msg")).to_have_attribute(
            "data-tone", "ok", timeout=30000
        )
        await expect(case.locator(".evidence-item")).to_have_count(1)

        # ... and builds a removal request: one URL from the evidence, one typed
        await case.locator(".pane-tab-notices").click()
        await expect(case.locator(".notices-empty")).to_be_visible()
        await case.locator(".notice-new").click()
        builder = case.locator(".notice-builder")
        await expect(builder.locator(".nb-platform option", has_text=PLATFORM)).to_have_count(1)
        await builder.locator(".nb-platform").select_option(label=PLATFORM)
        await builder.locator(".nb-category").select_option("intimate_images")
        await expect(builder.locator(".nb-basis")).to_have_value("sr_139h")
        await builder.locator(".nb-evidence-url").check()
        # a URL that is no URL is refused with a clear message
        await builder.locator(".nb-urls").fill("javascript:alert(1)")
        await builder.locator(".nb-create").click()
        await expect(builder.locator(".form-error")).to_be_visible()
        await builder.locator(".nb-urls").fill(TYPED_URL)
        await builder.locator(".nb-create").click()
        notice = case.locator(".notice-row")
        await expect(notice).to_have_count(1)
        await expect(notice.locator(".notice-summary .notice-status")).to_have_text("Concept")
        detail = notice.locator(".notice-detail")
        await expect(url_row(detail, EVIDENCE_URL)).to_have_count(1)
        await expect(url_row(detail, TYPED_URL)).to_have_count(1)
        notice_ref = (await notice.locator(".notice-ref").inner_text()).strip()
        assert re.fullmatch(r"N-\w{4}-\w{4}", notice_ref)

        # the preview: text and JSON, never live HTML
        await detail.locator(".notice-preview-btn").click()
        preview = detail.locator(".notice-preview-text")
        await expect(preview).to_contain_text(EVIDENCE_URL)
        await expect(preview).to_contain_text(TYPED_URL)
        assert await case.locator("iframe").count() == 0
        document = await detail.locator(".notice-preview-json").text_content()
        assert document is not None and "STATEMENT_CATEGORY_CYBER_VIOLENCE" in document
        assert reference not in document  # nothing about the victim's case

        # send: a web-form platform gets a prepared text to paste, then "submitted"
        await detail.locator(".notice-send").click()
        status = notice.locator(".notice-summary .notice-status")
        await expect(status).to_have_text("Klaar om te versturen")
        pasted = detail.locator(".notice-webform-text")
        await expect(pasted).to_have_value(re.compile(re.escape(TYPED_URL)))
        await expect(pasted).to_have_value(re.compile(r"/portal/n/"))
        await expect(detail.locator(f".notice-webform a[href='{WEB_FORM}']")).to_have_count(1)
        await detail.locator(".notice-submitted").click()
        await expect(status).to_have_text("Verstuurd")
        await expect(notice.locator(".notice-summary .notice-clock")).to_contain_text("Uiterlijk")
        await expect(detail.locator(".notice-webform")).to_have_count(0)

        # the notices view lists it, with its platform and state
        await agent.click("#view-btn-notices")
        await expect(agent.locator("#queue")).to_be_hidden()
        listed = agent.locator(
            f"#notices-list .notices-row:has(.notices-ref:text-is('{notice_ref}'))"
        )
        await expect(listed).to_have_count(1)
        await expect(listed.locator(".notices-platform")).to_have_text(PLATFORM)
        await expect(listed.locator(".notice-status")).to_have_text("Verstuurd")
        await expect(listed).to_have_attribute("data-overdue", "no")
        # back to the conversations, and again to the notices view
        await agent.click("#view-btn-work-agent")
        await expect(agent.locator("#queue")).to_be_visible()
        await agent.click("#view-btn-notices")
        # "open case" brings the case's notices back
        await listed.locator(".notices-open-case").click()
        await expect(agent.locator("#view-notices")).to_be_hidden()
        await expect(case.locator(".tabpanel-notices")).to_be_visible()

        # a portal link for the platform, shown once
        await detail.locator(".notice-portal-link").click()
        link = (await detail.locator(".notice-portal-url").inner_text()).strip()
        assert link.startswith(f"{server.url}/portal/n/")
        token = link.rsplit("/", 1)[1]

        # the platform's reviewer opens the portal (no account) and the notice is there
        reviewer = watch(await platform_context.new_page(), errors)
        await reviewer.goto(link)
        await expect(reviewer.locator("body")).to_contain_text(notice_ref)
        await expect(reviewer.locator("body")).to_contain_text(EVIDENCE_URL)
        # it answers the first URL: removed (statement of reasons)
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            seen = (await http.get("/api/portal/notice", headers=auth)).json()
            first = next(u["id"] for u in seen["urls"] if u["url"] == EVIDENCE_URL)
            answer = await http.post(
                "/api/portal/answers",
                headers=auth,
                json={
                    "answers": [
                        {
                            "url_id": first,
                            "decision": "removed",
                            "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
                            "ground": "art. 139h Sr",
                            "explanation": "Removed: shared without consent.",
                            "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
                            "territorial_scope": ["NL"],
                            "puid": "post-4711",
                        }
                    ]
                },
            )
            assert answer.status_code == 200, answer.text

        # the console shows it without a reload: the first URL removed, the second still open
        await expect(url_row(detail, EVIDENCE_URL)).to_have_attribute("data-status", "honoured")
        await expect(url_row(detail, EVIDENCE_URL).locator(".notice-answer")).to_contain_text(
            "portal"
        )
        await expect(url_row(detail, TYPED_URL)).to_have_attribute(
            "data-status", "receipt_confirmed"
        )

        # the agent records the second URL's outcome by hand: the whole request is honoured
        second = url_row(detail, TYPED_URL)
        await second.locator(".notice-outcome-box summary").click()
        await second.locator(".notice-outcome-status").select_option("honoured")
        await second.locator(".notice-outcome-text").fill("Gecontroleerd: de pagina is weg.")
        await second.locator(".notice-outcome-save").click()
        await expect(url_row(detail, TYPED_URL)).to_have_attribute("data-status", "honoured")
        await expect(status).to_have_text("Verwijderd")

        # the portal links can be revoked: then the platform's link stops working
        await detail.locator(".notice-links-box summary").click()
        active = detail.locator(".notice-links li[data-active='yes']")
        await expect(active).to_have_count(2)  # the one made when it was queued, and ours
        for link_id in [await li.get_attribute("data-link-id") for li in await active.all()]:
            link_row = detail.locator(f".notice-links li[data-link-id='{link_id}']")
            await link_row.locator(".notice-link-revoke").click()
            await expect(link_row).to_have_attribute("data-active", "no")
        await expect(detail.locator(".notice-links li[data-active='no']")).to_have_count(2)
        async with httpx.AsyncClient(base_url=server.url) as http:
            gone = await http.get("/api/portal/notice", headers=auth)
            assert gone.status_code == 401
            assert gone.json()["error"]["code"] == "link_revoked"

        # the admin (a supervisor's view) sees it in the figures, with charts from the server
        await admin.click("#view-btn-figures")
        overall = admin.locator("#figures-out .figures-overall")
        await expect(overall.locator(".figures-sent")).to_have_text("1")
        # the period's dates are the helpline's, whatever day the browser thinks it is
        today = datetime.now(ZoneInfo("Europe/Amsterdam")).date().isoformat()
        await expect(admin.locator("#figures-to")).to_have_value(today)
        await expect(overall.locator(".figures-honour")).to_contain_text("100")
        charts = admin.locator("#figures-out img")
        await expect(charts).to_have_count(4)
        for i in range(4):
            await charts.nth(i).evaluate(
                "i => i.complete && i.naturalWidth > 0 ? true : new Promise((ok, fail) => {"
                " i.onload = () => ok(true); i.onerror = () => fail(new Error('no chart')); })"
            )
        await expect(admin.locator(".figures-report-csv")).to_have_attribute(
            "href", re.compile(r"/api/staff/takedown/report/\d{4}\.csv$")
        )
        # and the key's prefix in the directory, never the key
        await admin.click("#view-btn-platforms")
        await expect(entry).to_contain_text(prefix)
        await expect(entry.locator(".platform-key-value")).to_have_count(0)
        assert errors == []
    finally:
        for context in (admin_context, agent_context, victim_context, platform_context):
            await context.close()


# ---------------------------------------------------------------- the words of these screens

CONSOLE = Path(__file__).resolve().parents[2] / "frontend" / "console"


def test_every_takedown_code_and_string_has_words_in_both_languages() -> None:
    """Every status, delivery and escalation step the server can send has a label, and every
    literal key the notices, platforms and figures screens use exists in Dutch and English."""
    strings = {
        lang: json.loads((CONSOLE / "i18n" / f"{lang}.json").read_text()) for lang in ("nl", "en")
    }
    codes = (
        [f"notice.status.{s}" for s in NoticeStatus]
        + [f"platform.delivery.{d}" for d in Delivery]
        + [f"notice.step.{s}" for s in EscalationStep]
        + [f"notice.escalation_status.{s}" for s in EscalationStatus]
        + [f"notice.lang.{lang}" for lang in LANGUAGES]
    )
    used: set[str] = set()
    for name in ("notices.js", "platforms.js", "figures.js"):
        source = (CONSOLE / name).read_text()
        used |= set(
            re.findall(r"'((?:notice|notices|platforms|figures|views)\.[a-z0-9_.-]+)'", source)
        )
    for lang, table in strings.items():
        assert [c for c in codes if c not in table] == [], lang
        # a prefix the script completes with a code (`label('notice.status', …)`) is no key
        prefixes = {key for key in used if any(k.startswith(f"{key}.") for k in table)}
        assert sorted(used - prefixes - table.keys()) == [], lang


async def test_four_eyes_a_colleague_approves_from_the_notices_view(
    browser: Browser, server: LiveServer
) -> None:
    errors: list[str] = []
    admin_context = await browser.new_context(viewport=LAPTOP)
    agent_context = await browser.new_context(viewport=LAPTOP)
    victim_context = await browser.new_context(viewport={"width": 390, "height": 800})
    try:
        admin = watch(await staff_logs_in(admin_context, server, "ada"), errors)
        me = await (await admin.request.get(f"{server.url}/api/staff/me")).json()
        headers = {"X-CSRF-Token": me["csrf_token"]}
        rules = await admin.request.put(
            f"{server.url}/api/staff/takedown/approval-rules",
            data={"categories": ["intimate_images"]},
            headers=headers,
        )
        assert rules.ok, await rules.text()
        made = await admin.request.post(
            f"{server.url}/api/staff/platforms",
            data={"name": PLATFORM, "slug": "fotoforum-demo", "delivery": "web_form",
                  "web_form_url": WEB_FORM, "languages": ["en"]},
            headers=headers,
        )  # fmt: skip
        assert made.status == 201, await made.text()

        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        victim_page, reference = await victim_starts_chat(
            victim_context, server, "Er staat een naaktfoto van mij online."
        )
        watch(victim_page, errors)
        await row(agent, reference).locator("button.claim").click()
        case = pane(agent, reference)
        await case.locator(".pane-tab-notices").click()
        await case.locator(".notice-new").click()
        builder = case.locator(".notice-builder")
        await builder.locator(".nb-platform").select_option(label=PLATFORM)
        await builder.locator(".nb-category").select_option("intimate_images")
        await builder.locator(".nb-urls").fill(TYPED_URL)
        await builder.locator(".nb-create").click()
        notice = case.locator(".notice-row")
        detail = notice.locator(".notice-detail")
        await detail.locator(".notice-send").click()
        status = notice.locator(".notice-summary .notice-status")
        await expect(status).to_have_text("Wacht op goedkeuring")
        # the author cannot approve their own request
        await expect(detail.locator(".notice-reject")).to_be_visible()
        await expect(detail.locator(".notice-approve")).to_have_count(0)
        notice_ref = (await notice.locator(".notice-ref").inner_text()).strip()

        # a colleague finds it in the notices view and approves it
        await admin.click("#view-btn-notices")
        listed = admin.locator(
            f"#notices-list .notices-row:has(.notices-ref:text-is('{notice_ref}'))"
        )
        await expect(listed.locator(".notice-status")).to_have_text("Wacht op goedkeuring")
        await listed.locator(".notices-details").click()
        shown = admin.locator("#notices-list .notices-detail-row .notice-detail")
        await expect(shown.locator(".notice-url-text")).to_have_text(TYPED_URL)
        await shown.locator(".notice-approve").click()
        await expect(listed.locator(".notice-status")).to_have_text("Klaar om te versturen")
        # ... and the author's pane follows without a reload
        await expect(status).to_have_text("Klaar om te versturen")
        await expect(detail.locator(".notice-webform-text")).to_have_value(
            re.compile(re.escape(TYPED_URL))
        )
        assert errors == []
    finally:
        for context in (admin_context, agent_context, victim_context):
            await context.close()
