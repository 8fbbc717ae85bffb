"""The audit log past its retention: the oldest lines go, the chain still verifies from the
first line left, and the purge run says where it was cut."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlmodel import col

from helpline.core.audit import CUT_ACTION, newest_cut, record, verify
from helpline.core.models import AuditEntry
from tests.retention.kit import Office, counts, days


async def _lines(office: Office, n: int) -> None:
    async with office.services.db.transaction() as session:
        for index in range(n):
            await record(
                session, office.clock, actor="system", action="test.line", details={"n": index}
            )


async def test_old_audit_lines_go_and_the_chain_still_verifies(office: Office) -> None:
    await _lines(office, 5)  # old
    office.clock.advance(days(10))
    await _lines(office, 3)  # younger
    async with office.services.db.transaction() as session:
        first_young = (
            (await session.execute(select(AuditEntry).order_by(col(AuditEntry.seq).desc())))
            .scalars()
            .all()[2]
            .seq
        )

    office.clock.advance(days(2555 - 5))  # the old lines are past 2555 days, the young not
    run = await office.purge()

    assert counts(run)["audit_lines"] == first_young - 1
    assert run.counts and f'"audit_first_seq":{first_young}' in run.counts
    async with office.services.db.transaction() as session:
        assert await verify(session) == []
        seqs = (await session.execute(select(col(AuditEntry.seq)))).scalars().all()
        assert min(seqs) == first_young
        cut = await newest_cut(session)
        assert cut is not None and cut.first_seq == first_young

    # a second purge a day later finds nothing more to cut, and still verifies
    office.clock.advance(days(1))
    again = await office.purge()
    assert counts(again).get("audit_lines", 0) == 0
    async with office.services.db.transaction() as session:
        assert await verify(session) == []


async def test_a_line_deleted_beyond_the_cut_is_still_found(office: Office) -> None:
    await _lines(office, 4)
    office.clock.advance(days(5))
    await _lines(office, 4)
    office.clock.advance(days(2555 - 2))
    await office.purge()
    async with office.services.db.transaction() as session:
        cut = await newest_cut(session)
        assert cut is not None
        # someone removes the first line the purge kept
        await session.execute(delete(AuditEntry).where(col(AuditEntry.seq) == cut.first_seq))
    async with office.services.db.transaction() as session:
        problems = [str(p) for p in await verify(session)]
    assert problems and "deleted" in problems[0]


async def test_a_forged_cut_line_does_not_hide_a_deletion(office: Office) -> None:
    await _lines(office, 6)
    async with office.services.db.transaction() as session:
        # someone deletes the first lines and appends a cut line of their own making
        await session.execute(delete(AuditEntry).where(col(AuditEntry.seq) <= 3))
        entry = (
            await session.execute(select(AuditEntry).where(col(AuditEntry.seq) == 4))
        ).scalar_one()
        forged = AuditEntry(
            seq=99,
            at=office.clock.now(),
            actor="system",
            action=CUT_ACTION,
            details=f'{{"first_seq":4,"prev_hash":"{entry.prev_hash}"}}',
            prev_hash="0" * 64,
            hash="0" * 64,
        )
        session.add(forged)
    async with office.services.db.transaction() as session:
        assert await verify(session) != []
