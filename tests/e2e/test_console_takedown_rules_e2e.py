"""The four-eyes rules editor in the figures view, in a real browser: a supervisor (here an
admin) sees the categories with the current rules ticked, changes them and saves; the server
holds exactly what was ticked, a fresh view shows the saved rules, and the
link to the yearly report page follows the console's language."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_console_e2e import staff_logs_in, watch
from tests.e2e.test_console_notices_e2e import LAPTOP, server  # noqa: F401  (the fixture)
from tests.live import LiveServer

pytestmark = pytest.mark.slow

RULES = "/api/staff/takedown/approval-rules"


async def test_a_supervisor_edits_the_four_eyes_rules(
    browser: Browser,
    server: LiveServer,  # noqa: F811
) -> None:
    errors: list[str] = []
    context = await browser.new_context(viewport=LAPTOP)
    try:
        admin = watch(await staff_logs_in(context, server, "ada"), errors)
        me = await (await admin.request.get(f"{server.url}/api/staff/me")).json()
        headers = {"X-CSRF-Token": me["csrf_token"]}
        before = await admin.request.put(
            f"{server.url}{RULES}", data={"categories": ["sextortion"]}, headers=headers
        )
        assert before.ok, await before.text()

        await admin.click("#view-btn-figures")
        section = admin.locator(".figures-rules")
        await expect(section.locator("h2")).to_be_visible()
        boxes = section.locator("input.figures-rule")
        await expect(boxes.first).to_be_visible()
        assert await boxes.count() >= 10  # every category of the vocabulary
        await expect(section.locator("#figures-rule-sextortion")).to_be_checked()
        await expect(section.locator("#figures-rule-deepfake")).not_to_be_checked()
        # each box has its category's words as its label
        label = section.locator("label[for='figures-rule-deepfake']")
        assert (await label.inner_text()).strip() not in ("", "category.deepfake")

        await section.locator("#figures-rule-deepfake").check()
        await section.locator("#figures-rule-sextortion").uncheck()
        await section.locator("#figures-rule-intimate_images").check()
        await section.locator("#figures-rules-save").click()
        message = section.locator("#figures-rules-msg")
        await expect(message).to_be_visible()
        await expect(message).to_contain_text("2")
        assert await message.get_attribute("data-tone") == "ok"

        stored = await (await admin.request.get(f"{server.url}{RULES}")).json()
        assert sorted(stored["categories"]) == ["deepfake", "intimate_images"]

        # a fresh view shows the saved rules
        await admin.reload()
        await expect(admin.locator("#view-btn-figures")).to_be_visible()
        await admin.click("#view-btn-figures")
        await expect(admin.locator("#figures-rule-deepfake")).to_be_checked()
        await expect(admin.locator("#figures-rule-intimate_images")).to_be_checked()
        await expect(admin.locator("#figures-rule-sextortion")).not_to_be_checked()

        # the report page link follows the console's language
        lang = await admin.evaluate("document.documentElement.lang")
        link = admin.locator(".figures-report-html")
        expected = r"\.html\?lang=nl$" if lang == "nl" else r"\.html$"
        await expect(link).to_have_attribute("href", re.compile(expected))
        assert errors == []
    finally:
        await context.close()
