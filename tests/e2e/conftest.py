"""Browser tests: Debian's Chromium driven by Playwright (no browser download here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from tests.e2e.team import serve_team
from tests.live import LiveServer

CHROMIUM = os.environ.get("HELPLINE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} not found: apt-get install chromium (or set HELPLINE_TEST_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def team_server(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The app on SQLite, open around the clock, with a team: agents Anouk and Bram, supervisor
    Sanne, admin Ada (all with `tests.e2e.team.PASSWORD`)."""
    async with serve_team(settings_for, sqlite_url) as running:
        yield running
