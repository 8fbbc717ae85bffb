"""The number and code word are gone — from the raw database, not just from the API — after
the victim was reached, and when every window has passed without reaching them.

The SQLite file is scanned byte for byte after a checkpoint (the WAL written back into the
file and truncated), like the key-shredding test in tests/core/test_crypto.py: what is still
on a page or a free page would be found. The ciphertext is what is looked for, since the plain
number is never stored at all (checked too).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from helpline.intake.callback.service import JOB_NAME
from tests.callback.conftest import CODE_WORD, E164, callback_row, file_request
from tests.triage.kit import Desk


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """These tests read the SQLite file itself."""
    return sqlite_url


async def raw_database(desk: Desk) -> bytes:
    """Every byte of the database, after the WAL was checkpointed into the file."""
    path = Path(str(make_url(desk.services.settings.database_url).database))
    checkpoint = sqlite3.connect(path)  # a connection of its own, outside any transaction
    try:
        busy, _, _ = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        checkpoint.close()
    assert busy == 0
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


async def stored_secrets(desk: Desk, case_id: str) -> list[bytes]:
    row = await callback_row(desk, case_id)
    assert row.phone is not None and row.code_word is not None
    return [row.phone, row.code_word]


async def test_the_number_is_gone_from_the_file_after_the_victim_was_reached(
    desk: Desk,
) -> None:
    agent = await desk.staff("anouk")
    kept = await file_request(desk, phone="06 87654321")  # a second request stays as it is
    filed = await file_request(desk, urgent=True)
    await agent.act(filed["case_id"], "claim")
    doomed = await stored_secrets(desk, filed["case_id"])
    control = await stored_secrets(desk, kept["case_id"])
    before = await raw_database(desk)
    assert all(secret in before for secret in doomed + control)  # the scan sees them
    for plain in (E164, "612345678", CODE_WORD):
        assert plain.encode() not in before  # and never the number in the clear
    answer = await agent.post(
        f"/api/staff/cases/{filed['case_id']}/callback/attempts", {"outcome": "reached"}
    )
    assert answer.status_code == 201, answer.text
    after = await raw_database(desk)
    for secret in doomed:
        assert secret not in after
    assert all(secret in after for secret in control)


async def test_the_number_is_deleted_when_every_window_has_passed(desk: Desk) -> None:
    filed = await file_request(desk)  # Friday 14:00-16:00 (Amsterdam)
    doomed = await stored_secrets(desk, filed["case_id"])
    scheduler = desk.services.scheduler
    last_end = (await callback_row(desk, filed["case_id"])).last_window_end
    desk.clock.set(last_end.replace(tzinfo=desk.clock.now().tzinfo) - timedelta(seconds=1))
    assert JOB_NAME in await scheduler.run_due()
    assert (await callback_row(desk, filed["case_id"])).phone is not None  # not yet
    desk.clock.advance(seconds=31)
    assert JOB_NAME in await scheduler.run_due()
    row = await callback_row(desk, filed["case_id"])
    assert (row.state, row.phone, row.code_word) == ("expired", None, None)
    raw = await raw_database(desk)
    assert not any(secret in raw for secret in doomed)
    # the case stays open for staff to close (no contact), with the reason on its timeline
    assert (await desk.row(filed["case_id"])).status == "new"
    [deleted] = [e for e in await desk.events(filed["case_id"]) if e.kind.endswith("deleted")]
    assert (deleted.actor, '"reason":"windows_passed"' in deleted.details) == ("system", True)


async def test_closing_the_case_deletes_a_waiting_number(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    filed = await file_request(desk, urgent=True)
    await agent.act(filed["case_id"], "claim")
    await agent.act(filed["case_id"], "close", {"outcome": "no_contact"})
    assert JOB_NAME in await desk.services.scheduler.run_due()
    row = await callback_row(desk, filed["case_id"])
    assert (row.state, row.phone, row.code_word) == ("cancelled", None, None)
    async with desk.services.db.transaction() as session:
        left = await session.execute(
            text("SELECT count(*) FROM callback_requests WHERE phone IS NOT NULL")
        )
        assert left.scalar_one() == 0
