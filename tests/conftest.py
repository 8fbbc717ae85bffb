"""Shared fixtures: real SQLite and PostgreSQL, real Redis, the real app.

PostgreSQL and Redis tests read HELPLINE_TEST_DATABASE_URL and HELPLINE_TEST_REDIS_URL. When a
variable is unset the tests that need it are skipped, with a message saying how to enable them;
when it is set (as `.ci/run` does) and the service is unreachable, they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring, MasterKeys, b64e
from helpline.core.db import Database
from helpline.core.migrate import upgrade

PG_ENV = "HELPLINE_TEST_DATABASE_URL"
REDIS_ENV = "HELPLINE_TEST_REDIS_URL"
TEST_MASTER_KEY = bytes(range(32))


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _require(env: str, how: str) -> str:
    value = os.environ.get(env)
    if not value:
        pytest.skip(f"{env} is not set; to run this test: export {env}={how}")
    return value


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped at the end)."""
    base = _require(PG_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    if not base.startswith("postgresql+asyncpg://"):
        base = "postgresql+asyncpg://" + base.split("://", 1)[1]
    name = f"helpline_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(base), timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"{PG_ENV} is set but PostgreSQL is unreachable: {exc}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)

    async def migrate() -> None:
        db = Database(url)
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_postgresql(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as connection:
        tables = (
            (
                await connection.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            )
            .scalars()
            .all()
        )
        await connection.execute(text(f"TRUNCATE {', '.join(tables)}"))
        await connection.execute(
            text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)"),
            {"genesis": "0" * 64},
        )
    await db.dispose()


# ---------------------------------------------------------------- SQLite


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "helpline.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await db.dispose()  # the last connection to close checkpoints the WAL into the file

    asyncio.run(migrate())
    return path


# ---------------------------------------------------------------- the database, both kinds


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        target = tmp_path / "helpline.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_server_url")
    asyncio.run(_reset_postgresql(url))
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """For the tests that are about SQLite only."""
    target = tmp_path / "helpline.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def master() -> MasterKeys:
    return MasterKeys.from_keys([TEST_MASTER_KEY])


@pytest.fixture
def keyring(master: MasterKeys, clock: FrozenClock) -> Keyring:
    return Keyring(master, clock)


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    url = _require(REDIS_ENV, "redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"{REDIS_ENV} is set but Redis is unreachable: {exc}")
    return url


@pytest.fixture
def redis_prefix() -> str:
    """A key/channel prefix of this test's own, so tests never see each other's traffic."""
    return f"helpline-test-{uuid.uuid4().hex[:8]}:"


# ---------------------------------------------------------------- the app


@pytest.fixture
def settings_for(tmp_path: Path) -> Any:
    def make(database_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "database_url": database_url,
            "master_key": b64e(TEST_MASTER_KEY),
            "run_workers": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_for: Any, database_url: str) -> Settings:
    result: Settings = settings_for(database_url)
    return result


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[Starlette]:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application) as state:
        application.state.lifespan_state = state
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, with its lifespan state."""
    state = app.state.lifespan_state

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"] = dict(state)
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as result:
        yield result
