"""A platform reviewer in a real browser (Debian's Chromium through Playwright): opens the
portal link, reads the notice in English and Dutch, answers one URL, and the page breaks no
rule of the CSP and keeps nothing of the notice in the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Response, expect

from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from tests.e2e.conftest import browser  # noqa: F401  (the fixture)
from tests.takedown_platform.conftest import PDQ, Desk, served

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # a browser test is about the page, once is enough


@pytest.fixture
async def base(settings: Settings, clock: FrozenClock, desk: Desk) -> AsyncIterator[str]:
    async with served(settings, clock) as url:
        yield url


async def open_page(
    browser: Browser,  # noqa: F811
    base: str,
    path: str,
    *,
    refusals: tuple[str, ...] = (),
) -> tuple[Page, list[str]]:
    """The page, and a list that collects script errors, CSP violations and refused requests
    (but the browser's favicon and the `refusals` the test expects)."""
    url = base + path
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # a refused request shows as its response below; anything else (a CSP violation, a
        # script error) is a problem
        if message.type in ("error", "warning") and "Failed to load resource" not in message.text:
            problems.append(message.text)

    def on_response(response: Response) -> None:
        path = response.url.removeprefix(base)
        if response.status >= 400 and path not in ("/favicon.ico", *refusals):
            problems.append(f"{response.status} {path}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(url)
    return page, problems


async def test_a_reviewer_answers_in_the_portal(
    browser: Browser,  # noqa: F811
    base: str,
    desk: Desk,
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    page, problems = await open_page(
        browser, base, f"/portal/n/{sent.token}", refusals=("/api/portal/answers",)
    )

    notice = page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(page.locator("#notice-title")).to_contain_text(sent.notice.reference)
    # Dutch by default; the switch turns the page to English
    await expect(page.locator("#why-title")).to_have_text("Waarom deze inhoud onrechtmatig is")
    await page.click("#lang-switch")
    await expect(page.locator("#why-title")).to_have_text("Why this content is illegal")
    await expect(page.locator("#hashes")).to_contain_text(PDQ)
    await expect(page.locator("#urls > li")).to_have_count(2)
    # opening the notice confirmed its receipt
    await expect(page.locator("#facts")).to_contain_text("receipt confirmed")

    first = page.locator("#urls > li").first
    await first.locator("input[value=removed]").check()
    await first.locator("input[name=ground]").fill("art. 139h Sr")
    await first.locator("textarea[name=explanation]").fill("Removed: intimate image.")
    await first.locator("input[name=territorial_scope]").fill("nl, be")
    await first.locator("button[type=submit]").click()
    # the schema's error comes back readable
    await expect(first.locator(".answer-error")).to_contain_text("puid: String should have")
    await first.locator("input[name=puid]").fill("post-4711")
    await first.locator("button[type=submit]").click()
    await expect(page.locator("#urls > li").first.locator(".url-status")).to_contain_text(
        "honoured"
    )

    rows = {u.id: u for u in await desk.urls(sent.notice.id)}
    answered = rows[sent.url_ids[0]]
    assert answered.status == "honoured" and answered.answered_via == "portal"
    assert answered.territorial_scope == "NL,BE" and answered.puid == "post-4711"

    stored: Any = await page.evaluate(
        "() => JSON.stringify({s: {...sessionStorage}, l: {...localStorage}, c: document.cookie})"
    )
    assert sent.token not in stored and sent.notice.reference not in stored
    assert problems == [], problems
    await page.context.close()


async def test_an_expired_link_says_what_to_do(
    browser: Browser,  # noqa: F811
    base: str,
    desk: Desk,
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    desk.clock.advance(days=desk.services.settings.notice_portal_days + 1)
    page, problems = await open_page(
        browser, base, f"/portal/n/{sent.token}", refusals=("/api/portal/notice",)
    )
    await expect(page.locator("#problem")).to_be_visible()
    await expect(page.locator("#problem-text")).to_contain_text("verlopen")
    await expect(page.locator("#notice")).to_be_hidden()
    assert problems == [], problems
    await page.context.close()
