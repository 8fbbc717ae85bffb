"""Retention tests: the real app in-process on both databases, a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.staff import accounts
from tests.retention.kit import Office, build_app


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Argon2id code, at a tiny cost."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
async def office(settings_for: Any, database_url: str, clock: FrozenClock) -> AsyncIterator[Office]:
    # the tests move the clock by months: staff and victims stay logged in meanwhile
    settings = settings_for(database_url, staff_idle_minutes=60 * 24 * 3650)
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        running = Office(app, state, clock)
        try:
            yield running
        finally:
            await running.close()
