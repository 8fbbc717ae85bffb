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
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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
        update(AuditHead).where(col(AuditHead.id) == 1).values(seq=AuditHead.seq)
    )
    if not cast(CursorResult[Any], locked).rowcount:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        await session.flush()
    head = (
        await session.execute(
            select(AuditHead)
            .where(col(AuditHead.id) == 1)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    text = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    seq = head.seq + 1
    # SQLite keeps only the wall-clock digits of a timestamp: store UTC, or the hash of a line
    # written with a non-UTC clock would not match what is read back
    at = as_utc(clock.now())
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
    """Every line in order of `seq`, including any forged with a number below 1."""
    after: int | None = None
    while True:
        query = select(AuditEntry).order_by(col(AuditEntry.seq)).limit(batch)
        if after is not None:
            query = query.where(col(AuditEntry.seq) > after)
        rows = (await session.execute(query)).scalars().all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].seq


def _span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


async def verify(session: AsyncSession) -> list[Problem]:
    """Check the whole chain; an empty list means it is intact."""
    problems: list[Problem] = []
    prev_seq, prev_hash = 0, GENESIS
    async for line in _lines(session):
        if line.seq < 1:
            problems.append(Problem(line.seq, "inserted (numbered before the first line)"))
            continue
        own = line_hash(
            line.prev_hash, line.seq, line.at, line.actor, line.action, line.target, line.details
        )
        changed = own != line.hash
        if changed:
            problems.append(Problem(line.seq, "changed (its content does not match its hash)"))
        if line.seq > prev_seq + 1:
            gap = _span(prev_seq + 1, line.seq - 1)
            problems.append(Problem(line.seq, f"{gap} before it deleted"))
        elif line.prev_hash != prev_hash and not changed:  # a changed prev_hash proves nothing
            if prev_seq == 0:
                problems.append(Problem(line.seq, "inserted (it does not start the log)"))
            else:
                # Whoever forges a line chains it to the one before (that hash is right there),
                # so the break shows after the forgery: name the line before the break first.
                problems.append(
                    Problem(
                        prev_seq,
                        f"replaced or inserted: line {line.seq} does not chain to it "
                        f"(or line {line.seq} is the forgery)",
                    )
                )
        prev_seq, prev_hash = line.seq, line.hash
    head = await session.get(AuditHead, 1)
    if head is None:
        if prev_seq:
            problems.append(Problem(prev_seq, "the head row of the log was deleted"))
    elif head.seq > prev_seq:
        problems.append(Problem(head.seq, f"{_span(prev_seq + 1, head.seq)} at the end deleted"))
    elif head.seq < prev_seq:
        extra = _span(head.seq + 1, prev_seq)
        problems.append(Problem(prev_seq, f"inserted ({extra} after the head of the log)"))
    elif head.hash != prev_hash:
        problems.append(Problem(prev_seq, "replaced (the head of the log records another line)"))
    return problems


async def count_lines(session: AsyncSession) -> int:
    count: int = (await session.execute(select(func.count()).select_from(AuditEntry))).scalar_one()
    return count
