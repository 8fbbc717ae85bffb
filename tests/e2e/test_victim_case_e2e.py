"""A victim's own copy of their case, and deleting it, in a real browser (issue 9, item 3).

The victim chats, leaves with quick exit, comes back in a fresh browser with reference +
passphrase, opens "your data" from the chat, downloads a readable page and a JSON copy (after
the warning about the device), and deletes the case from the same page; afterwards the
reference + passphrase open nothing. A staff note written meanwhile is in neither copy."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.e2e.test_console_e2e import add_staff, staff_logs_in, watch
from tests.e2e.test_handover_e2e import claim, staff_call
from tests.live import LiveServer, free_port, live_server

pytestmark = pytest.mark.slow

NEUTRAL_SITE = "https://neutral.example/"
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1366, "height": 860}
MESSAGE = "Mijn ex dreigt mijn foto's te delen <BERICHT-5J> als ik niet terugkom."
NOTE = "NOTITIE-8W: slachtoffer noemde een broer, niet herhalen"
PLAIN_FIELDS = {"helpline.token", "helpline.reference", "helpline.lang"}
FRONTEND = Path(__file__).resolve().parents[2] / "frontend"

# Every object URL the page makes and revokes (the copy must not stay reachable in the page).
COUNT_BLOBS = """
window.__blobs = { created: [], revoked: [] };
const create = URL.createObjectURL.bind(URL);
const revoke = URL.revokeObjectURL.bind(URL);
URL.createObjectURL = (blob) => {
  const url = create(blob);
  window.__blobs.created.push(url);
  return url;
};
URL.revokeObjectURL = (url) => {
  window.__blobs.revoked.push(url);
  return revoke(url);
};
"""


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


STRINGS = {
    lang: _flat(json.loads((FRONTEND / "common" / "i18n" / f"{lang}.json").read_text()))
    for lang in ("nl", "en")
}


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        quick_exit_url=NEUTRAL_SITE,
    )
    await add_staff(sqlite_url)
    async with live_server(settings, port=port) as running:
        yield running


async def neutral_site(route: Route) -> None:
    await route.fulfill(status=200, content_type="text/html", body="<h1>Het weer</h1>")


async def phone(browser: Browser) -> BrowserContext:
    context = await browser.new_context(viewport=PHONE, accept_downloads=True)
    await context.route(NEUTRAL_SITE, neutral_site)
    return context


async def storage_is_plain(page: Page) -> None:
    """Nothing but the chat's own few fields in this tab's storage; nothing in localStorage."""
    assert await page.evaluate("localStorage.length") == 0
    keys = await page.evaluate("Object.keys(sessionStorage)")
    assert set(keys) <= PLAIN_FIELDS, keys


async def fits_the_phone(page: Page) -> None:
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def resume(page: Page, reference: str, passphrase: str) -> None:
    await page.click("#continue-link")
    await page.fill("#resume-reference", reference)
    await page.fill("#resume-passphrase", passphrase)
    await page.click("#resume-submit")


async def test_victim_downloads_their_case_and_deletes_it(
    browser: Browser, server: LiveServer
) -> None:
    errors: list[str] = []
    first = await phone(browser)
    staff_context = await browser.new_context(viewport=LAPTOP)
    later = await phone(browser)
    try:
        # the victim starts a chat, writes, and looks at "your data" right away
        victim = watch(await first.new_page(), errors)
        await victim.goto(f"{server.url}/")
        await victim.click("#start-chat")
        await expect(victim.locator("#receipt-reference")).to_have_text(re.compile(r"\w{4}-\w{4}"))
        reference = (await victim.locator("#receipt-reference").inner_text()).strip()
        passphrase = (await victim.locator("#receipt-passphrase").inner_text()).strip()
        await victim.check("#saved-check")
        await victim.click("#receipt-continue")
        await victim.fill("#message-input", MESSAGE)
        await victim.click("#send-button")
        await expect(victim.locator("#messages .message.from-victim[data-seq='1']")).to_be_visible()
        await victim.click("#mycase-open")
        await expect(victim.locator("#mycase-title")).to_be_focused()
        await expect(victim.locator("#view-chat")).to_be_hidden()
        await expect(victim.locator("#mycase-download-html")).to_be_disabled()
        await fits_the_phone(victim)
        # back to the conversation and to "your data" again; then quick exit still works
        await victim.click("#mycase-back")
        await expect(victim.locator("#mycase-open")).to_be_focused()
        await expect(victim.locator("#messages .message.from-victim")).to_contain_text("BERICHT-5J")
        await victim.click("#mycase-open")
        await victim.click("#quick-exit")
        await victim.wait_for_url(NEUTRAL_SITE)

        # a staff member claims the case and writes a private note
        staff = watch(await staff_logs_in(staff_context, server, "anouk"), errors)
        staff, case_id = await claim(staff, reference)
        await staff_call(staff, "POST", f"/api/staff/cases/{case_id}/notes", {"text": NOTE})

        # the victim comes back in a fresh browser with reference + passphrase
        await later.add_init_script(COUNT_BLOBS)
        page = watch(await later.new_page(), errors)
        await page.goto(f"{server.url}/")
        await resume(page, reference, passphrase)
        await expect(page.locator("#messages .message.from-victim")).to_contain_text("BERICHT-5J")
        await page.click("#mycase-open")
        await expect(page.locator("#mycase-title")).to_be_focused()
        await expect(page.locator("#mycase-reference")).to_contain_text(reference)
        await expect(page.locator("#mycase-warning")).to_be_visible()

        # the warning comes first: no download before the victim says they understand it
        html_button = page.locator("#mycase-download-html")
        json_button = page.locator("#mycase-download-json")
        await expect(html_button).to_be_disabled()
        await expect(json_button).to_be_disabled()
        await page.focus("#mycase-understood")
        await page.keyboard.press("Space")
        await expect(html_button).to_be_enabled()
        await page.keyboard.press("Tab")
        await expect(html_button).to_be_focused()
        async with page.expect_download() as html_download:
            await page.keyboard.press("Enter")
        readable = await html_download.value
        assert readable.suggested_filename == f"case-{reference}.html"
        path = await readable.path()
        page_text = path.read_text()
        assert html.escape(MESSAGE) in page_text  # the message, escaped
        assert "<BERICHT-5J>" not in page_text
        assert "<script" not in page_text.lower()
        assert "NOTITIE-8W" not in page_text
        await expect(page.locator("#mycase-download-status")).to_contain_text(
            readable.suggested_filename
        )

        async with page.expect_download() as json_download:
            await json_button.click()
        data_copy = await json_download.value
        assert data_copy.suggested_filename == f"case-{reference}.json"
        raw = (await data_copy.path()).read_text()
        document = json.loads(raw)
        assert document["reference"] == reference
        assert [(m["from"], m["text"]) for m in document["messages"] if m["from"] == "you"] == [
            ("you", MESSAGE)
        ]
        assert "NOTITIE-8W" not in raw
        assert "anouk" not in raw.lower()

        # each copy was handed over through an object URL that was revoked straight away
        blobs = await page.evaluate("window.__blobs")
        assert len(blobs["created"]) == 2
        assert sorted(blobs["revoked"]) == sorted(blobs["created"])
        await storage_is_plain(page)
        await fits_the_phone(page)

        # on the same page: delete everything
        await page.click("#mycase-delete")
        await expect(page.locator("#mycase-delete")).to_have_attribute("aria-expanded", "true")
        await expect(page.locator("#mycase-confirm-title")).to_be_focused()
        await page.click("#mycase-delete-yes")
        await expect(page.locator("#goodbye-title")).to_have_text(
            STRINGS["nl"]["goodbye.deleted_title"]
        )
        assert await page.evaluate("sessionStorage.getItem('helpline.token')") is None
        await storage_is_plain(page)

        # reference + passphrase open nothing any more
        await page.click("#goodbye-home")
        await resume(page, reference, passphrase)
        await expect(page.locator("#resume-error")).to_have_text(STRINGS["nl"]["resume.wrong"])
        assert errors == []
    finally:
        await first.close()
        await staff_context.close()
        await later.close()


# ---------------------------------------------------------------- the words


def test_every_your_data_string_exists_in_dutch_and_english() -> None:
    """The "your data" page has the same keys in both languages, none empty, and every key the
    page and its script name exists in both."""
    dutch = {k for k in STRINGS["nl"] if k.startswith("mycase.")}
    english = {k for k in STRINGS["en"] if k.startswith("mycase.")}
    assert dutch == english
    assert dutch
    page = (FRONTEND / "chat" / "index.html").read_text()
    section = re.search(r'<section id="view-mycase".*?\n    </section>', page, re.S)
    assert section is not None
    named = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', section.group(0)))
    named |= set(re.findall(r'id="mycase-open"[^>]*data-i18n="([^"]+)"', page))
    script = (FRONTEND / "chat" / "mycase.js").read_text()
    named |= set(re.findall(r"'((?:mycase|chat|common)\.[a-z_]+)'", script))
    assert "mycase.open" in named
    for lang, table in STRINGS.items():
        assert sorted(named - table.keys()) == [], lang
        assert [k for k in named | dutch if not str(table[k]).strip()] == [], lang
