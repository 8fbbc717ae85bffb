"""Statistics tests: the real app (SQLite and PostgreSQL) with the statistics routes and the
time zone registered, staff logged in with password and TOTP, a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.staff import accounts
from helpline.stats.counters import parse_dims, register_stats
from helpline.stats.models import StatCounter
from helpline.stats.routes import report_routes, stats_pages, stats_routes
from tests.triage.kit import Desk

# Tuesday 10 March 2026, 12:00 UTC (13:00 in Amsterdam)
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the statistics routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/stats" for r in app.routes):
        app.router.routes.extend([*stats_routes(), *stats_pages(), *report_routes()])
    return app


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def desk(
    settings_for: Any, database_url: str, clock: FrozenClock, desk_overrides: dict[str, Any]
) -> AsyncIterator[Desk]:
    settings = settings_for(
        database_url,
        timezone="Europe/Amsterdam",
        mail_from_name="Hulplijn",
        staff_idle_minutes=60 * 24 * 30,  # the tests move the clock by days
        **desk_overrides,
    )
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        register_stats(state["services"])  # idempotent: create_app may do it already
        running = Desk(app, state, clock)
        try:
            yield running
        finally:
            await running.close()


Counters = dict[tuple[str, str, tuple[tuple[str, str], ...]], int]


async def counters(desk: Desk) -> Counters:
    """Every counter row: (day, metric, sorted dims) -> count."""
    async with desk.services.db.transaction() as session:
        return await counters_in(session)


async def counters_in(session: AsyncSession) -> Counters:
    rows = (await session.execute(select(StatCounter))).scalars().all()
    return {
        (row.day, row.metric, tuple(sorted(parse_dims(row.dims).items()))): row.count
        for row in rows
    }


def total(found: Counters, metric: str) -> int:
    return sum(count for (_, name, _), count in found.items() if name == metric)
