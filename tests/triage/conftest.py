"""Triage tests: the real app (in-process, or under uvicorn for websockets) on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from helpline.app import create_app
from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.staff import accounts
from tests.triage.kit import Desk


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here makes staff accounts and chats: the real Argon2id code, at a tiny cost
    (the defaults take ~0.25 s a hash here)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def desk(
    settings_for: Any, database_url: str, clock: FrozenClock, desk_overrides: dict[str, Any]
) -> AsyncIterator[Desk]:
    settings = settings_for(database_url, **desk_overrides)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app) as state:
        running = Desk(app, state, clock)
        try:
            yield running
        finally:
            await running.close()
