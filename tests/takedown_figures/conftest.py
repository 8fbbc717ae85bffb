"""Figures tests: the fixed data set of dataset.py in a real database (SQLite and PostgreSQL),
and the real app with the figure routes, staff logged in with password and TOTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.staff import accounts
from helpline.takedown.routes_figures import figures_routes
from tests.takedown_figures import dataset
from tests.triage.kit import Desk


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staff accounts and the data set's case: the real Argon2id code at a tiny cost."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dataset.NOW)


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the figure routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/takedown/figures" for r in app.routes):
        app.router.routes.extend(figures_routes())
    return app


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    """More settings for the app under test (a test module may override this fixture)."""
    return {}


@pytest.fixture
async def desk(
    settings_for: Any, database_url: str, clock: FrozenClock, desk_overrides: dict[str, Any]
) -> AsyncIterator[Desk]:
    settings = settings_for(
        database_url, timezone="Europe/Amsterdam", mail_from_name="Hulplijn", **desk_overrides
    )
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        running = Desk(app, state, clock)
        try:
            yield running
        finally:
            await running.close()


@pytest.fixture
async def loaded(desk: Desk) -> dataset.Loaded:
    services = desk.services
    return await dataset.load(services.db, services.keyring, desk.clock)
