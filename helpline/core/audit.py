"""The audit log: append-only, each line chained to the one before by a SHA-256 hash.

`verify()` walks the chain and names the first line that was changed, inserted or deleted.
Details must never hold personal data: ids, codes and counts only.

The retention purge removes the oldest lines. Before it does, it writes a line of its own
(`audit.cut`, `cut()`) naming the first line that stays and the hash that line chains to; the
cut line is part of the chain like any other, so it cannot be forged or dropped unnoticed.
`verify()` then checks the chain from the first remaining line: lines before the newest cut may
be gone, any other missing line is still reported.
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
CUT_ACTION = "audit.cut"
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


@dataclass(frozen=True)
class Cut:
    """Lines before `first_seq` were removed by the retention purge (at `at`, by line `seq`)."""

    seq: int
    at: datetime
    first_seq: int
    prev_hash: str


async def cut(session: AsyncSession, clock: Clock, before: datetime) -> Cut | None:
    """Mark every line written before `before` as removable: append the `audit.cut` line
    naming the first line that stays, in the caller's transaction. None if no line is that
    old. The caller then deletes the lines below `first_seq` (in batches, in transactions of
    their own: an interrupted deletion is finished by the next one)."""
    last_old = (
        await session.execute(
            select(func.max(col(AuditEntry.seq))).where(col(AuditEntry.at) < before)
        )
    ).scalar_one_or_none()
    if last_old is None:
        return None
    newest = await newest_cut(session)
    if newest is not None and newest.first_seq > last_old:
        return newest  # cut there already; its deletion may be unfinished
    chained_to = (
        await session.execute(select(col(AuditEntry.hash)).where(col(AuditEntry.seq) == last_old))
    ).scalar_one()
    entry = await record(
        session,
        clock,
        actor="system",
        action=CUT_ACTION,
        details={"first_seq": last_old + 1, "prev_hash": chained_to},
    )
    return Cut(entry.seq, as_utc(entry.at), last_old + 1, chained_to)


async def newest_cut(session: AsyncSession) -> Cut | None:
    line = (
        await session.execute(
            select(AuditEntry)
            .where(col(AuditEntry.action) == CUT_ACTION)
            .order_by(col(AuditEntry.seq).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if line is None:
        return None
    try:
        details = json.loads(line.details)
        return Cut(line.seq, as_utc(line.at), int(details["first_seq"]), str(details["prev_hash"]))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cut line: verify() reports it as changed


async def verify(session: AsyncSession) -> list[Problem]:
    """Check the whole chain (from the first line the retention purge left, see `cut`); an
    empty list means it is intact."""
    problems: list[Problem] = []
    prev_seq, prev_hash = 0, GENESIS
    allowed = await newest_cut(session)
    first = True
    async for line in _lines(session):
        if line.seq < 1:
            problems.append(Problem(line.seq, "inserted (numbered before the first line)"))
            continue
        if first and allowed is not None and 1 < line.seq <= allowed.first_seq:
            # the lines before it were purged: start the chain here. At the cut itself the
            # link is known; a line above it is what an interrupted purge left (unchained).
            prev_seq = line.seq - 1
            prev_hash = allowed.prev_hash if line.seq == allowed.first_seq else line.prev_hash
        first = False
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
