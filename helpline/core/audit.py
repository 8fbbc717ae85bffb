"""The audit log: append-only, each line chained to the one before by a SHA-256 hash.

`verify()` walks the chain and names the first line that was changed, inserted or deleted.
Details must never hold personal data: ids, codes and counts only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpline.core.clock import Clock, as_utc
from helpline.core.models import AuditEntry, AuditHead

GENESIS = "0" * 64
Detail = str | int | float | bool | None


def line_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
    details: str,
) -> str:
    body = json.dumps(
        [seq, as_utc(at).isoformat(), actor, action, target, details],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


async def record(
    session: AsyncSession,
    clock: Clock,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Detail] | None = None,
) -> AuditEntry:
    """Append a line in the caller's transaction. `actor` is `staff:<id>` or a role such as
    `victim`, `platform`, `system`."""
    # Taking the head row first serialises writers (row lock on PostgreSQL, the write lock that
    # BEGIN IMMEDIATE already holds on SQLite), so two lines never claim the same predecessor.
    locked = await session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq)  # type: ignore[arg-type]
    )
    if not locked.rowcount:  # type: ignore[attr-defined]
        session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        await session.flush()
    head = (
        await session.execute(
            select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)  # type: ignore[arg-type]
        )
    ).scalar_one()
    text = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    seq = head.seq + 1
    at = clock.now()
    digest = line_hash(head.hash, seq, at, actor, action, target, text)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=text,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    await session.flush()
    return entry


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"line {self.seq}: {self.what}"


async def _lines(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    after = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEntry)
                    .where(AuditEntry.seq > after)
                    .order_by(AuditEntry.seq)
                    .limit(batch)  # type: ignore[arg-type]
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].seq


async def verify(session: AsyncSession) -> list[Problem]:
    """Check the whole chain; an empty list means it is intact."""
    problems: list[Problem] = []
    prev_seq, prev_hash = 0, GENESIS
    async for line in _lines(session):
        own = line_hash(
            line.prev_hash, line.seq, line.at, line.actor, line.action, line.target, line.details
        )
        if own != line.hash:
            problems.append(Problem(line.seq, "changed (its content does not match its hash)"))
        elif line.seq != prev_seq + 1:
            missing = (
                f"{prev_seq + 1}" if line.seq == prev_seq + 2 else f"{prev_seq + 1}-{line.seq - 1}"
            )
            problems.append(Problem(line.seq, f"line(s) {missing} before it were deleted"))
        elif line.prev_hash != prev_hash:
            problems.append(
                Problem(line.seq, "inserted or replaced (it does not follow the line before)")
            )
        prev_seq, prev_hash = line.seq, line.hash
    head = await session.get(AuditHead, 1)
    if head is not None and (head.seq, head.hash) != (prev_seq, prev_hash):
        if head.seq > prev_seq:
            problems.append(Problem(head.seq, f"line(s) {prev_seq + 1}-{head.seq} were deleted"))
        else:
            problems.append(Problem(prev_seq, "the log does not end where its head says"))
    return problems


async def count_lines(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(AuditEntry))).scalar_one()
