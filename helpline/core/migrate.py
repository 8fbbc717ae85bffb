"""Applying and checking Alembic migrations from async code."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from helpline.core.db import Database

# the advisory lock that migrations take on PostgreSQL ("helpline" in ASCII, as a bigint)
MIGRATION_LOCK = int.from_bytes(b"helpline", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("helpline") / "migrations"))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several processes may migrate at once (a deploy's migrate job, an operator, each
            # pod of a rollout): one at a time, and the next finds the schema current. The lock
            # ends with this transaction. (SQLite serialises writers by itself.)
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(run)


async def current_revision(db: Database) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as connection:
        return await connection.run_sync(read)


class NotMigrated(RuntimeError):
    pass


async def require_current_schema(db: Database) -> None:
    current, head = await current_revision(db), head_revision()
    if current != head:
        raise NotMigrated(
            f"the database is at revision {current or 'none'}, the code needs {head}: "
            "run `helpline migrate`"
        )
