"""A victim and a staff member, each in a real browser, talk through the real app."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pyotp
import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, Route, expect

from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from tests.live import LiveServer, free_port, live_server

NEUTRAL_SITE = "https://neutral.example/"
PASSWORD = "a long staff password"
FIRST = "Iemand dreigt mijn foto's te delen als ik niet betaal."
ANSWER = "Wat naar dat dit gebeurt. Je hoeft niet te betalen. We helpen je."
HOSTILE = "<img src=x onerror=alert(1)><b>vet</b>"

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        quick_exit_url=NEUTRAL_SITE,
    )
    async with live_server(settings, port=port) as running:
        yield running


def png() -> bytes:
    image = Image.new("RGB", (200, 120), "white")
    ImageDraw.Draw(image).text((10, 50), "dreigbericht", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def neutral_site(route: Route) -> None:
    await route.fulfill(status=200, content_type="text/html", body="<h1>Het weer</h1>")


async def staff_logs_in(page: Page, server: LiveServer) -> None:
    await page.goto(f"{server.url}/console/")
    await page.fill("#login-username", "anouk")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    secret_element = page.locator("#enrol-secret")
    await expect(secret_element).to_have_text(re.compile(r"[A-Z2-7]{4}"))
    secret = re.sub(r"\s", "", await secret_element.inner_text())
    await expect(page.locator("#enrol-qr")).to_be_visible()
    await page.fill("#enrol-code", pyotp.TOTP(secret).now())
    await page.click("#enrol-submit")
    await expect(page.locator("#queue")).to_be_visible()


async def test_victim_and_staff_talk_and_the_victim_comes_back(
    browser: Browser, server: LiveServer, sqlite_url: str
) -> None:
    db = Database(sqlite_url)
    async with db.transaction() as session:
        await create_staff(
            session, SystemClock(), username="anouk", password=PASSWORD, role=Role.agent
        )
    await db.dispose()

    victim_context = await browser.new_context(viewport={"width": 360, "height": 780})
    await victim_context.route(NEUTRAL_SITE, neutral_site)
    staff_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    try:
        # the victim starts a chat and saves the receipt
        victim = await victim_context.new_page()
        victim.on("pageerror", lambda error: errors.append(str(error)))
        await victim.goto(f"{server.url}/")
        await victim.click("#start-chat")
        reference_element = victim.locator("#receipt-reference")
        await expect(reference_element).to_have_text(re.compile(r"\w{4}-\w{4}"))
        reference = (await reference_element.inner_text()).strip()
        passphrase = (await victim.locator("#receipt-passphrase").inner_text()).strip()
        assert len(passphrase.split()) >= 5
        await expect(victim.locator("#receipt-continue")).to_be_disabled()
        await victim.check("#saved-check")
        await victim.click("#receipt-continue")
        await victim.fill("#message-input", FIRST)
        await victim.click("#send-button")
        await victim.fill("#message-input", HOSTILE)
        await victim.press("#message-input", "Enter")
        await expect(victim.locator("#messages .message.from-victim[data-seq='2']")).to_be_visible()
        assert victim.url == f"{server.url}/"  # the URL never changes during the chat
        assert await victim_context.cookies() == []  # no cookie, ever

        # a staff member logs in with password + TOTP, claims the chat and answers
        staff = await staff_context.new_page()
        await staff_logs_in(staff, server)
        row = staff.locator(f"#queue .queue-row[data-reference='{reference}']")
        await expect(row).to_be_visible()
        await row.locator(".claim").click()
        pane = staff.locator("#panes .pane").first
        if not await pane.is_visible():
            await row.locator(".open").click()
        await expect(pane.locator(".messages .message.from-victim").first).to_contain_text(FIRST)
        hostile = pane.locator(".messages .message.from-victim").nth(1)
        await expect(hostile).to_contain_text("<b>vet</b>")  # shown as text, never as HTML
        assert await pane.locator(".messages img, .messages b").count() == 0
        await pane.locator("textarea.reply").fill(ANSWER)
        await pane.locator("button.send").click()

        # the victim sees the answer
        await expect(victim.locator("#messages .message.from-staff")).to_contain_text(ANSWER)
        assert await victim.locator("#messages img, #messages b").count() == 0

        # the victim attaches a screenshot; staff see it blurred, and reveal it on purpose
        await victim.click("#attach-button")
        await victim.set_input_files(
            "#evidence-file",
            files=[{"name": "screenshot.png", "mimeType": "image/png", "buffer": png()}],
        )
        await expect(victim.locator("#evidence-list .evidence-item")).to_have_count(1)
        await expect(victim.locator("#evidence-list .evidence-item")).to_contain_text(
            "screenshot.png"
        )
        await pane.locator(".evidence-toggle").click()
        item = pane.locator(".evidence-item")
        await expect(item).to_have_count(1)
        preview = item.locator("img.evidence-preview")
        await expect(preview).to_have_attribute("data-blurred", "true")
        await preview.evaluate(  # the blurred preview really loaded (an image, not an error)
            "i => i.complete && i.naturalWidth > 0 ? true : new Promise((ok, fail) => {"
            " i.onload = () => ok(true); i.onerror = () => fail(new Error('no preview')); })"
        )
        await item.locator("button.reveal").click()
        await staff.click("#confirm-yes")
        await expect(item.locator("img.evidence-preview[data-blurred='false']")).to_be_visible()

        # the victim closes the tab and comes back with reference + passphrase
        await victim.close()
        returning = await victim_context.new_page()
        await returning.goto(f"{server.url}/")
        await returning.click("#continue-link")
        await returning.fill("#resume-reference", reference.lower().replace("-", " "))
        await returning.fill("#resume-passphrase", passphrase.upper())
        await returning.click("#resume-submit")
        messages = returning.locator("#messages .message")
        await expect(messages.filter(has_text=FIRST)).to_have_count(1)
        await expect(messages.filter(has_text=ANSWER)).to_have_count(1)

        # quick exit: a neutral page, and no way back into the chat
        await returning.click("#quick-exit")
        await returning.wait_for_url(NEUTRAL_SITE)
        assert await returning.evaluate("history.length") <= 2
        await returning.go_back()
        if returning.url.startswith(server.url):
            await expect(returning.locator("#messages .message")).to_have_count(0)
            assert await returning.evaluate("sessionStorage.length") == 0
        assert errors == []
    finally:
        await victim_context.close()
        await staff_context.close()
