"""What several instances on one PostgreSQL database and one Redis must share, and did not: an
instance that starts late learns at once who has which case open, and several processes may
migrate the same database at once. (The chat, the console's changes, presence, rate limits and
scheduled jobs across two instances are tested with those features; docs/architecture.md,
"Several instances", has the whole table.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from helpline.core.clock import FrozenClock
from helpline.core.db import Database
from helpline.core.migrate import current_revision, head_revision, upgrade
from tests.conftest import PG_ENV, _asyncpg_dsn, _require, _reset_postgresql
from tests.intake.chatkit import ChatClient, StaffMember, Victim
from tests.live import free_port, live_server


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    asyncio.run(_reset_postgresql(pg_server_url))
    return pg_server_url


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url)
    yield database
    await database.dispose()


async def open_console(member: StaffMember, ws_url: str) -> ChatClient:
    cookies = "; ".join(f"{k}={v}" for k, v in member.http.cookies.items())
    socket = await connect(
        f"{ws_url}/ws/console", additional_headers={"Cookie": cookies, "Origin": member.base_url}
    )
    return ChatClient(socket)


def presence_of(member: StaffMember, **expected: Any) -> Any:
    def matches(frame: dict[str, Any]) -> bool:
        return (
            frame["type"] == "presence"
            and frame["staff"]["id"] == member.id
            and all(frame[k] == v for k, v in expected.items())
        )

    return matches


async def test_an_instance_that_starts_later_knows_at_once_who_has_which_case_open(
    settings_for: Any, pg_url: str, db: Database, redis_server_url: str
) -> None:
    port = free_port()
    # one public address for both (the proxy's): staff logins check the Origin against it
    settings = settings_for(
        pg_url,
        base_url=f"http://127.0.0.1:{port}",
        redis_url=redis_server_url,
        opening_hours="mo-su 00:00-24:00",
    )
    # real time: staff log in with codes from their authenticator; frozen: nothing expires
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    async with live_server(settings, clock, port=port) as one:
        victim = await Victim(one.url).start()
        agent = await StaffMember.create(db, one.url, "iris")
        supervisor = await StaffMember.create(db, one.url, "joost")
        case_id = await agent.claim(victim.reference)
        mine = await open_console(agent, one.ws_url)
        try:
            await mine.send({"type": "viewing", "case_ids": [case_id]})
            await mine.wait_for(presence_of(agent, online=True, viewing=[case_id]))
            # a second instance starts (a rollout, a scale-up) long after that announcement;
            # the agent's console will not beat again for up to 20 s
            async with live_server(settings, clock) as two:
                watching = await open_console(supervisor, two.ws_url)
                try:
                    await watching.wait_for(
                        presence_of(agent, online=True, viewing=[case_id]), timeout=5
                    )
                finally:
                    await watching.close()
        finally:
            await mine.close()
            await agent.close()
            await supervisor.close()


async def test_several_processes_may_migrate_one_database_at_once() -> None:
    base = _require(PG_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    name = f"helpline_migrate_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_asyncpg_dsn(base), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        databases = [Database(url) for _ in range(3)]  # three processes' engines
        try:
            # without one lock they wait for each other's catalog rows, or fail on them
            async with asyncio.timeout(60):
                await asyncio.gather(*(upgrade(each) for each in databases))
            assert await current_revision(databases[0]) == head_revision()
        finally:
            for each in databases:
                await each.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
