"""A helpline team for the console's browser tests: agents Anouk and Bram, supervisor Sanne,
admin Ada, all with PASSWORD, on an app open around the clock (the `team_server` fixture)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from tests.live import LiveServer, free_port, live_server

PASSWORD = "a long staff password"  # every test staff member's
TEAM = (
    ("anouk", "Anouk", Role.agent),
    ("bram", "Bram", Role.agent),
    ("sanne", "Sanne", Role.supervisor),
    ("ada", "Ada", Role.admin),
)


@contextlib.asynccontextmanager
async def serve_team(settings_for: Any, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    db = Database(sqlite_url)
    async with db.transaction() as session:
        for username, name, role in TEAM:
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
