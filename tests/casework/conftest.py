"""The real app under uvicorn, with a clock the test moves: it starts at the real time, so
that staff can log in with TOTP codes from their authenticator (tests/intake/chatkit.py),
and moves forward between steps, so that the timeline's order is the order of the steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.bus import Bus
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.core.models import AuditEntry
from tests.live import LiveServer, free_port, live_server


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def live_settings(settings_for: Any, database_url: str, port: int) -> Settings:
    result: Settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    return result


@pytest.fixture
async def server(
    live_settings: Settings, port: int, clock: FrozenClock
) -> AsyncIterator[LiveServer]:
    async with live_server(live_settings, clock, port=port) as running:
        yield running


def bus_of(server: LiveServer) -> Bus:
    """The running app's bus, to listen to what it publishes."""
    bus: Bus = server.server.lifespan.state["services"].bus  # type: ignore[attr-defined]
    return bus


async def case_id_of(db: Database, reference: str) -> str:
    async with db.transaction() as session:
        found = await session.execute(select(col(Case.id)).where(col(Case.reference) == reference))
        return str(found.scalar_one())


async def audit_lines(db: Database, action: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(AuditEntry).where(col(AuditEntry.action) == action).order_by(col(AuditEntry.seq))
        )
        return list(rows.scalars().all())
