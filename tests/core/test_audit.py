"""The audit log: a hash chain that names every line changed, inserted or deleted behind its back.

Tampering is done with raw SQL, as someone with database access would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from helpline.core.audit import GENESIS, Problem, count_lines, line_hash, record, verify
from helpline.core.clock import FrozenClock
from helpline.core.crypto import b64e
from helpline.core.db import Database
from helpline.core.models import AuditEntry, AuditHead

HELPLINE = Path(sys.executable).parent / "helpline"


async def write_lines(db: Database, clock: FrozenClock, count: int = 5) -> list[AuditEntry]:
    """`count` lines, each in its own transaction, like requests would write them."""
    entries = []
    for n in range(1, count + 1):
        clock.advance(seconds=7)
        async with db.transaction() as session:
            entries.append(
                await record(
                    session,
                    clock,
                    actor=f"staff:{n:032x}",
                    action="case.assign",
                    target=f"case:{n}",
                    details={"queue": "general", "n": n},
                )
            )
    return entries


async def problems(db: Database) -> list[Problem]:
    async with db.transaction() as session:
        return await verify(session)


async def execute(db: Database, sql: str, **params: Any) -> None:
    async with db.transaction() as session:
        await session.execute(text(sql), params)


async def insert_line(db: Database, entry: AuditEntry) -> None:
    async with db.transaction() as session:
        session.add(entry)


async def stored_lines(db: Database) -> list[AuditEntry]:
    async with db.transaction() as session:
        rows = await session.execute(text("SELECT seq FROM audit_log ORDER BY seq"))
        seqs = rows.scalars().all()
        return [entry for seq in seqs if (entry := await session.get(AuditEntry, seq))]


def forged(seq: int, prev_hash: str, at: datetime, **fields: Any) -> AuditEntry:
    """A line that is consistent in itself: its hash is right for its content."""
    values: dict[str, Any] = {
        "actor": "staff:forger",
        "action": "case.close",
        "target": "case:3",
        "details": '{"reason":"resolved"}',
    }
    values.update(fields)
    digest = line_hash(prev_hash, seq, at, **values)
    return AuditEntry(seq=seq, at=at, prev_hash=prev_hash, hash=digest, **values)


# ---------------------------------------------------------------- an intact log


async def test_lines_are_appended_and_chained_by_hash(db: Database, clock: FrozenClock) -> None:
    written = await write_lines(db, clock)
    lines = await stored_lines(db)

    assert [line.seq for line in lines] == [1, 2, 3, 4, 5]
    assert lines[0].prev_hash == GENESIS
    for before, line in zip(lines, lines[1:], strict=False):
        assert line.prev_hash == before.hash
    for line, entry in zip(lines, written, strict=True):
        assert line.hash == entry.hash
        assert line.hash == line_hash(
            line.prev_hash, line.seq, line.at, line.actor, line.action, line.target, line.details
        )
    assert lines[2].details == '{"n":3,"queue":"general"}'
    assert len({line.hash for line in lines}) == 5
    async with db.transaction() as session:
        head = await session.get(AuditHead, 1)
        assert await count_lines(session) == 5
    assert head is not None and (head.seq, head.hash) == (5, lines[-1].hash)
    assert await problems(db) == []


async def test_an_empty_log_is_intact(db: Database) -> None:
    assert await problems(db) == []


async def test_a_line_of_a_rolled_back_transaction_leaves_no_gap(
    db: Database, clock: FrozenClock
) -> None:
    await write_lines(db, clock, 2)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await record(session, clock, actor="system", action="retention.run")
            raise RuntimeError("the request failed")
    async with db.transaction() as session:
        third = await record(session, clock, actor="victim", action="case.message")
    assert third.seq == 3
    assert [line.seq for line in await stored_lines(db)] == [1, 2, 3]
    assert await problems(db) == []


async def test_a_clock_outside_utc_still_verifies(db: Database) -> None:
    """SQLite keeps only the digits of a timestamp: the line must be hashed as it is stored."""
    paris = FrozenClock(
        datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    )
    await write_lines(db, paris, 2)
    assert await problems(db) == []
    [first, _] = await stored_lines(db)
    assert first.at.replace(tzinfo=first.at.tzinfo or UTC) == paris.now() - timedelta(seconds=7)


# ---------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", '{"n":3,"queue":"vip"}'),
        ("actor", "staff:someone-else"),
        ("action", "case.delete"),
        ("target", "case:99"),
        ("prev_hash", "f" * 64),
    ],
)
async def test_a_changed_line_is_named(
    db: Database, clock: FrozenClock, column: str, value: str
) -> None:
    await write_lines(db, clock)
    await execute(db, f"UPDATE audit_log SET {column} = :value WHERE seq = 3", value=value)
    [problem] = await problems(db)
    assert problem == Problem(3, "changed (its content does not match its hash)")
    assert str(problem).startswith("line 3: changed")


async def test_a_changed_time_is_named(db: Database, clock: FrozenClock) -> None:
    await write_lines(db, clock)
    async with db.transaction() as session:
        line = await session.get(AuditEntry, 2)
        assert line is not None
        line.at = line.at - timedelta(hours=3)  # backdated
    assert await problems(db) == [Problem(2, "changed (its content does not match its hash)")]


async def test_a_changed_line_with_a_recomputed_hash_is_named(
    db: Database, clock: FrozenClock
) -> None:
    lines = await write_lines(db, clock)
    replacement = forged(3, lines[1].hash, lines[2].at)
    await execute(
        db,
        "UPDATE audit_log SET actor = :actor, action = :action, target = :target, "
        "details = :details, hash = :hash WHERE seq = 3",
        actor=replacement.actor,
        action=replacement.action,
        target=replacement.target,
        details=replacement.details,
        hash=replacement.hash,
    )
    [problem] = await problems(db)
    assert problem.seq == 3
    assert str(problem) == (
        "line 3: replaced or inserted: line 4 does not chain to it (or line 4 is the forgery)"
    )


async def test_a_deleted_middle_line_is_named(db: Database, clock: FrozenClock) -> None:
    await write_lines(db, clock)
    await execute(db, "DELETE FROM audit_log WHERE seq = 3")
    [problem] = await problems(db)
    assert problem == Problem(4, "line 3 before it deleted")
    assert str(problem) == "line 4: line 3 before it deleted"


async def test_several_deleted_lines_are_named(db: Database, clock: FrozenClock) -> None:
    await write_lines(db, clock, 6)
    await execute(db, "DELETE FROM audit_log WHERE seq IN (1, 3, 4)")
    assert await problems(db) == [
        Problem(2, "line 1 before it deleted"),
        Problem(5, "lines 3-4 before it deleted"),
    ]


@pytest.mark.parametrize(
    ("deleted", "named"),
    [("seq = 5", "line 5"), ("seq >= 4", "lines 4-5"), ("seq > 0", "lines 1-5")],
)
async def test_deleting_the_last_lines_is_noticed_by_the_head(
    db: Database, clock: FrozenClock, deleted: str, named: str
) -> None:
    await write_lines(db, clock)
    await execute(db, f"DELETE FROM audit_log WHERE {deleted}")
    assert await problems(db) == [Problem(5, f"{named} at the end deleted")]


async def test_a_forged_line_appended_at_the_end_is_named(db: Database, clock: FrozenClock) -> None:
    lines = await write_lines(db, clock)
    await insert_line(db, forged(6, lines[-1].hash, clock.advance(seconds=5)))
    assert await problems(db) == [Problem(6, "inserted (line 6 after the head of the log)")]


async def test_a_forged_line_in_place_of_a_deleted_one_is_named(
    db: Database, clock: FrozenClock
) -> None:
    lines = await write_lines(db, clock)
    await execute(db, "DELETE FROM audit_log WHERE seq = 3")
    await insert_line(db, forged(3, lines[1].hash, lines[2].at))
    [problem] = await problems(db)
    assert problem.seq == 3 and "inserted" in problem.what


async def test_a_forged_last_line_is_named(db: Database, clock: FrozenClock) -> None:
    lines = await write_lines(db, clock)
    await execute(db, "DELETE FROM audit_log WHERE seq = 5")
    await insert_line(db, forged(5, lines[3].hash, lines[4].at))
    assert await problems(db) == [Problem(5, "replaced (the head of the log records another line)")]


@pytest.mark.parametrize("seq", [0, -3])
async def test_a_forged_line_numbered_before_the_first_is_named(
    db: Database, clock: FrozenClock, seq: int
) -> None:
    await write_lines(db, clock)
    await insert_line(db, forged(seq, GENESIS, clock.now()))
    assert await problems(db) == [Problem(seq, "inserted (numbered before the first line)")]


async def test_a_deleted_head_is_noticed(db: Database, clock: FrozenClock) -> None:
    await write_lines(db, clock, 2)
    await execute(db, "DELETE FROM audit_head")
    assert await problems(db) == [Problem(2, "the head row of the log was deleted")]


# ---------------------------------------------------------------- concurrency


async def test_concurrent_writers_make_one_unbroken_chain(db: Database, clock: FrozenClock) -> None:
    if not db.is_postgresql:
        pytest.skip("a race between transactions needs PostgreSQL (SQLite serialises writers)")
    writers = 20
    barrier = asyncio.Barrier(writers)

    async def write(n: int) -> int:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))  # each holds its own connection
            await barrier.wait()  # all are inside a transaction before any writes
            entry = await record(
                session, clock, actor="platform", action="notice.ack", details={"n": n}
            )
            return entry.seq

    seqs = await asyncio.gather(*(write(n) for n in range(writers)))
    assert sorted(seqs) == list(range(1, writers + 1))
    lines = await stored_lines(db)
    assert [line.seq for line in lines] == list(range(1, writers + 1))
    assert sorted(line.details for line in lines) == sorted(f'{{"n":{n}}}' for n in range(writers))
    assert await problems(db) == []


async def test_a_writer_that_read_the_head_earlier_appends_after_newer_lines(
    db: Database, clock: FrozenClock
) -> None:
    if not db.is_postgresql:
        pytest.skip("needs two open writers (SQLite serialises them)")
    async with db.transaction() as slow:
        seen = await slow.get(AuditHead, 1)  # kept: the session's identity map holds it
        assert seen is not None and seen.seq == 0
        async with db.transaction() as fast:
            await record(fast, clock, actor="system", action="job.run")
        late = await record(slow, clock, actor="system", action="job.run")
    assert late.seq == 2 and seen.seq == 2
    assert await problems(db) == []


# ---------------------------------------------------------------- the command


def helpline_audit_verify(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env.update(
        HELPLINE_DATABASE_URL=database_url,
        HELPLINE_MASTER_KEY=b64e(bytes(range(32))),
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
    )
    return subprocess.run(
        [str(HELPLINE), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_says_intact_or_names_the_tampered_line(
    database_url: str, tmp_path: Path
) -> None:
    async def setup() -> None:
        db = Database(database_url)
        try:
            await write_lines(db, FrozenClock(), 4)
        finally:
            await db.dispose()

    async def tamper() -> None:
        db = Database(database_url)
        try:
            await execute(db, "UPDATE audit_log SET details = '{}' WHERE seq = 2")
        finally:
            await db.dispose()

    asyncio.run(setup())
    intact = helpline_audit_verify(database_url, tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout and "4 lines" in intact.stdout

    asyncio.run(tamper())
    tampered = helpline_audit_verify(database_url, tmp_path)
    assert tampered.returncode == 1, tampered.stderr
    assert "line 2: changed" in tampered.stdout
    assert "intact" not in tampered.stdout
