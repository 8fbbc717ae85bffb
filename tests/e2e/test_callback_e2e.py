"""A victim in a real browser asks to be called back: from the start page, and from inside a
chat (then withdraws it). The number arrives encrypted and never lands in the browser's
storage."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from sqlmodel import col

from helpline.app import create_app
from helpline.cases.models import Case
from helpline.core.clock import Clock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring, MasterKeys, case_scope
from helpline.core.db import Database
from helpline.intake.callback import callback_routes
from helpline.intake.callback.models import CallbackRequest
from tests import live
from tests.conftest import TEST_MASTER_KEY
from tests.live import LiveServer, free_port, live_server

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(
    settings_for: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LiveServer]:
    def with_callback_routes(settings: Settings, clock: Clock | None = None) -> Any:
        """The real app, plus the callback routes until create_app has them."""
        app = create_app(settings, clock=clock)
        if not any(getattr(r, "path", "") == "/api/callback/request" for r in app.routes):
            app.router.routes.extend(callback_routes())
        return app

    monkeypatch.setattr(live, "create_app", with_callback_routes)
    port = free_port()
    settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    async with live_server(settings, port=port) as running:
        yield running


async def fill_callback_form(page: Page, number: str) -> None:
    await expect(page.locator("#view-callback")).to_be_visible()
    await page.fill("#callback-phone", number)
    day = page.locator("#callback-windows .callback-day").first
    await expect(day.locator("option")).not_to_have_count(0)
    await day.select_option(index=1)  # tomorrow: whatever the time now, 10:00-12:00 is ahead
    await page.locator("#callback-windows .callback-from").first.fill("10:00")
    await page.locator("#callback-windows .callback-to").first.fill("12:00")
    await page.fill("#callback-code-word", "zonnebloem")


async def stored_request(database_url: str, reference: str) -> tuple[CallbackRequest, str]:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            case = (
                await session.execute(select(Case).where(col(Case.reference) == reference))
            ).scalar_one()
            row = (
                await session.execute(
                    select(CallbackRequest).where(col(CallbackRequest.case_id) == case.id)
                )
            ).scalar_one()
            keyring = Keyring(MasterKeys.from_keys([TEST_MASTER_KEY]))
            cipher = await keyring.cipher(session, case_scope(case.id), create=False)
            assert row.phone is not None
            number = cipher.decrypt_text(
                row.phone, table="callback_requests", row_id=row.id, field="phone"
            )
            return row, number
    finally:
        await db.dispose()


async def test_a_victim_asks_to_be_called_back_from_the_start_page(
    browser: Browser, server: LiveServer, sqlite_url: str
) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 780})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{server.url}/")
        await page.click("#start-callback")
        await fill_callback_form(page, "12345")
        await page.click("#callback-submit")
        # a clear message in the victim's language, on the field to fix
        await expect(page.locator("#callback-error")).to_contain_text("telefoonnummer klopt niet")
        await expect(page.locator("#callback-phone")).to_be_focused()
        await page.fill("#callback-phone", "06 12345678")
        await page.check("#callback-urgent")
        await page.check("#callback-name-yes")
        await page.click("#callback-submit")

        done = page.locator("#view-callback-done")
        await expect(done).to_be_visible()
        reference_element = page.locator("#callback-done-reference")
        await expect(reference_element).to_have_text(re.compile(r"^\w{4}-\w{4}$"))
        reference = (await reference_element.inner_text()).strip()
        await expect(page.locator("#callback-done-number")).to_contain_text("+31 6 12345678")
        await expect(page.locator("#callback-done-windows li")).to_have_count(1)
        await expect(page.locator("#callback-done-windows li")).to_contain_text("10:00")
        await expect(page.locator("#callback-done-voicemail")).to_contain_text("geen voicemail")
        await expect(page.locator("#callback-done-name")).to_contain_text("mogen we zeggen")

        # nothing of it in the browser's storage, and no cookie
        stored = await page.evaluate("JSON.stringify(sessionStorage)")
        assert "12345678" not in stored and "zonnebloem" not in stored
        assert await context.cookies() == []

        row, number = await stored_request(sqlite_url, reference)
        assert number == "+31612345678"
        assert (row.urgent, row.voicemail_safe, row.may_say_name) == (True, False, True)
        assert row.state == "pending" and row.source == "start"

        await page.click("#callback-done-home")
        await expect(page.locator("#view-start")).to_be_visible()
        await expect(page.locator("#callback-done-reference")).to_have_text("")
        assert errors == []
    finally:
        await context.close()


async def test_a_victim_in_a_chat_asks_for_a_call_and_withdraws_it(
    browser: Browser, server: LiveServer, sqlite_url: str
) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 780})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{server.url}/")
        await page.click("#lang-switch")  # in English this time
        await expect(page.locator("#start-callback")).to_have_text("Rather be called back?")
        await page.click("#start-chat")
        reference_element = page.locator("#receipt-reference")
        await expect(reference_element).to_have_text(re.compile(r"\w{4}-\w{4}"))
        reference = (await reference_element.inner_text()).strip()
        await page.check("#saved-check")
        await page.click("#receipt-continue")
        await expect(page.locator("#view-chat")).to_be_visible()

        await page.click("#callback-chat-button")
        await expect(page.locator("#callback-topic-field")).to_be_hidden()  # the chat has one
        await fill_callback_form(page, "+32 470 12 34 56")
        await page.check("#callback-voicemail-yes")
        await page.click("#callback-submit")

        line = page.locator("#callback-line")
        await expect(page.locator("#view-chat")).to_be_visible()
        await expect(line).to_be_visible()
        await expect(line).to_contain_text("We'll call you back")
        row, number = await stored_request(sqlite_url, reference)
        assert number == "+32470123456"
        assert (row.source, row.voicemail_safe, row.urgent) == ("chat", True, False)

        await page.click("#callback-withdraw")
        await expect(line).to_contain_text("Your number has been deleted")
        row, _ = await stored_request_after_withdrawal(sqlite_url, reference)
        assert (row.state, row.phone, row.code_word) == ("cancelled", None, None)
        assert errors == []
    finally:
        await context.close()


async def stored_request_after_withdrawal(
    database_url: str, reference: str
) -> tuple[CallbackRequest, None]:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            row = (
                await session.execute(
                    select(CallbackRequest)
                    .join(Case, col(Case.id) == col(CallbackRequest.case_id))
                    .where(col(Case.reference) == reference)
                )
            ).scalar_one()
            return row, None
    finally:
        await db.dispose()
