"""Callback tests: the real app in-process on both databases, with a clock the test moves.

The clock starts on Thursday 1 January 2026, 10:00 in Amsterdam (09:00 UTC); the default
opening hours (mo-fr 09:00-21:00, sa 12:00-17:00) apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import receipts
from helpline.cases.models import Case
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.intake.callback import callback_routes, register_callback
from helpline.intake.callback.models import CallbackRequest
from helpline.intake.callback.service import JOB_NAME
from helpline.staff import accounts
from tests.triage.kit import Desk

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NUMBER = "06 12345678"
E164 = "+31612345678"
CODE_WORD = "zonnebloem"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Argon2id code, at a tiny cost (the defaults take ~0.25 s a hash here)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the callback routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/callback/request" for r in app.routes):
        app.router.routes.extend(callback_routes())
    return app


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    # the tests move the clock by days: staff stay logged in meanwhile
    return {"staff_idle_minutes": 60 * 24 * 30}


@pytest.fixture
async def desk(
    settings_for: Any, database_url: str, clock: FrozenClock, desk_overrides: dict[str, Any]
) -> AsyncIterator[Desk]:
    settings = settings_for(database_url, **desk_overrides)
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        if JOB_NAME not in state["services"].scheduler.jobs:
            register_callback(state["services"])
        running = Desk(app, state, clock)
        try:
            yield running
        finally:
            await running.close()


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in January 2026, Amsterdam time (1 January is a Thursday)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=AMSTERDAM)


def window(start: datetime, end: datetime) -> dict[str, str]:
    """A window as the form sends it: local times without an offset."""
    return {
        "start": start.astimezone(AMSTERDAM).replace(tzinfo=None).isoformat(),
        "end": end.astimezone(AMSTERDAM).replace(tzinfo=None).isoformat(),
    }


def request_body(**changes: Any) -> dict[str, Any]:
    """A valid request: tomorrow (Friday) 14:00-16:00."""
    body: dict[str, Any] = {
        "phone": NUMBER,
        "windows": [window(local(2, 14), local(2, 16))],
        "voicemail_safe": False,
        "may_say_name": False,
        "code_word": CODE_WORD,
        "language": "nl",
    }
    body.update(changes)
    return body


async def file_request(desk: Desk, **changes: Any) -> dict[str, Any]:
    """File a request from the start page; returns the answer with the case id added."""
    answer = await desk.client().post("/api/callback/request", json=request_body(**changes))
    assert answer.status_code == 201, answer.text
    filed: dict[str, Any] = answer.json()
    filed["case_id"] = await case_id_of(desk, filed["reference"])
    return filed


async def case_id_of(desk: Desk, reference: str) -> str:
    async with desk.services.db.transaction() as session:
        found = await session.execute(select(col(Case.id)).where(col(Case.reference) == reference))
        return str(found.scalar_one())


async def callback_row(desk: Desk, case_id: str) -> CallbackRequest:
    async with desk.services.db.transaction() as session:
        row = (
            await session.execute(
                select(CallbackRequest)
                .where(col(CallbackRequest.case_id) == case_id)
                .order_by(col(CallbackRequest.created_at).desc())
            )
        ).scalar()
        assert row is not None
        return row


def victim_client(desk: Desk, token: str) -> httpx.AsyncClient:
    client = desk.client()
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def after(moment: datetime, **delta: float) -> datetime:
    return moment + timedelta(**delta)
