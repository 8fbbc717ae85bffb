"""Takedown tests: the real app in-process on both databases, a clock the test moves, a real
SMTP sink and a real HTTP "platform" on loopback (see kit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.staff import accounts
from tests.email.conftest import Sink, start_sink
from tests.takedown.kit import Office, PlatformSite, build_app, platform_site

HELPLINE_MAIL = "meldpunt@helpline.test"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Argon2id code, at a tiny cost."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


@pytest.fixture
async def site() -> AsyncIterator[PlatformSite]:
    async with platform_site() as running:
        yield running


@pytest.fixture
def office_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def office(
    settings_for: Any,
    database_url: str,
    clock: FrozenClock,
    sink: Sink,
    office_overrides: dict[str, Any],
) -> AsyncIterator[Office]:
    settings = settings_for(
        database_url,
        **{
            # the tests move the clock by days: staff stay logged in meanwhile
            "staff_idle_minutes": 60 * 24 * 60,
            "mail_from": HELPLINE_MAIL,
            "inbound_addresses": HELPLINE_MAIL,
            "notice_notifier_name": "Meldpunt Online Misbruik",
            "smtp_out_host": "127.0.0.1",
            "smtp_out_port": sink.port,
            "smtp_out_security": "none",
            "smtp_out_timeout_seconds": 10,
            "notice_api_allow_http": True,
            "snapshot_allow_loopback": True,
            **office_overrides,
        },
    )
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        running = Office(app, state, clock)
        await running.start()
        try:
            yield running
        finally:
            await running.close()
