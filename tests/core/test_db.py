"""Storage: SQLite settings, one transaction per unit of work, migrations that match the models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from helpline.app import create_app
from helpline.core.clock import FrozenClock
from helpline.core.db import Database
from helpline.core.migrate import NotMigrated, current_revision, head_revision, upgrade
from helpline.core.models import ScheduledJob
from helpline.models import import_all_models


async def test_sqlite_runs_with_wal_foreign_keys_busy_timeout_and_secure_delete(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    async with db.engine.connect() as connection:
        pragma = {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "secure_delete")
        }
    await db.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 10_000,
        "secure_delete": 1,
    }


async def test_a_transaction_commits_when_the_block_ends(db: Database, clock: FrozenClock) -> None:
    async with db.transaction() as session:
        session.add(ScheduledJob(name="committed", next_run_at=clock.now()))
    async with db.transaction() as session:
        assert await session.get(ScheduledJob, "committed") is not None


async def test_a_transaction_rolls_back_when_the_block_raises(
    db: Database, clock: FrozenClock
) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            session.add(ScheduledJob(name="lost", next_run_at=clock.now()))
            await session.flush()
            raise RuntimeError("the request failed half-way")
    async with db.transaction() as session:
        assert await session.get(ScheduledJob, "lost") is None


async def test_concurrent_read_then_write_transactions_all_succeed(
    db: Database, clock: FrozenClock
) -> None:
    """On SQLite, BEGIN IMMEDIATE makes writers queue instead of failing on a stale snapshot."""

    async def bump(index: int) -> None:
        async with db.transaction() as session:
            count = (await session.execute(select(func.count()).select_from(ScheduledJob))).scalar()
            await asyncio.sleep(0)
            session.add(ScheduledJob(name=f"job-{index}-{count}", next_run_at=clock.now()))

    await asyncio.gather(*(bump(i) for i in range(12)))
    async with db.transaction() as session:
        total = (await session.execute(select(func.count()).select_from(ScheduledJob))).scalar()
    assert total == 12


async def test_the_migrations_create_exactly_the_models(db: Database) -> None:
    import_all_models()

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    assert await current_revision(db) == head_revision()


async def test_the_app_refuses_to_start_on_an_unmigrated_database(
    tmp_path: Path, settings_for: Any
) -> None:
    app = create_app(settings_for(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"))
    with pytest.raises(NotMigrated, match="helpline migrate"):
        async with app.router.lifespan_context(app):
            pass


async def test_migrating_twice_changes_nothing(db: Database) -> None:
    await upgrade(db)
    assert await current_revision(db) == head_revision()
