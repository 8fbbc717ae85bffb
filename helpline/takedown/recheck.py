"""Re-checking a notice's URLs: is the content still there?

Each URL is fetched through the evidence snapshot fetcher (`fetch_snapshot`: the same SSRF
checks, limits and time-out; the body is read and thrown away). A 404 or 410 is offered to
staff as evidence of removal (`suggests_removal`); they confirm the outcome themselves. A
notice about material that may depict a minor is never fetched (DOMAIN.md). The fetch runs
outside any database transaction: reading the URLs and storing the results are two short
transactions of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Conflict
from helpline.core.services import Services
from helpline.evidence.snapshot import (
    SnapshotFailed,
    SnapshotRefused,
    SnapshotTooLarge,
    fetch_snapshot,
)
from helpline.takedown import builder, state
from helpline.takedown.models import Notice, NoticeUrl, notice_scope
from helpline.takedown.states import NoticeStatus
from helpline.triage.vocabulary import POSSIBLE_MINOR

MIB = 1024 * 1024
REMOVED = frozenset({404, 410})
S = NoticeStatus
# URLs worth re-checking: delivered, not withdrawn
CHECKED = frozenset(
    {
        S.sent,
        S.receipt_confirmed,
        S.more_info_requested,
        S.no_response,
        S.declined,
        S.partly_honoured,
        S.honoured,
    }
)
RECHECK_JOB = "notice-recheck"


class NotFetched(Conflict):
    code = "possible_minor"


def may_fetch(notice: Notice) -> bool:
    """Never for material that may depict a minor (notifier left out marks those too)."""
    return notice.category != POSSIBLE_MINOR and notice.notifier_included


@dataclass(frozen=True)
class Result:
    url_id: str
    status: int | None
    error: str | None


async def fetch_status(found: Services, url: str) -> tuple[int | None, str | None]:
    """The HTTP status the URL answers now, or None and a code: `refused` (not an allowed
    address), `unreachable`, `too_large` (still served, but larger than the limit)."""
    settings = found.settings

    async def discard(_chunk: bytes) -> None:
        return None

    try:
        snapshot = await fetch_snapshot(
            url,
            timeout=settings.snapshot_timeout_seconds,
            max_bytes=settings.snapshot_max_mb * MIB,
            max_redirects=settings.snapshot_max_redirects,
            allow_loopback=settings.snapshot_allow_loopback,
            sink=discard,
        )
    except SnapshotTooLarge:
        return None, "too_large"
    except SnapshotRefused:
        return None, "refused"
    except SnapshotFailed:
        return None, "unreachable"
    return snapshot.status, None


async def recheck_notice(found: Services, notice_id: str, *, actor: str) -> list[Result]:
    """Re-check every delivered URL of a notice and store the results."""
    async with found.db.transaction() as session:
        notice = await session.get(Notice, notice_id)
        if notice is None:
            return []
        if not may_fetch(notice):
            raise NotFetched("URLs that may show a minor are never fetched")
        cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
        targets = [
            (row.id, cipher.decrypt_text(row.url, table="notice_urls", row_id=row.id, field="url"))
            for row in await state.urls_of(session, notice.id)
            if row.status in CHECKED
        ]
    results = [Result(url_id, *await fetch_status(found, url)) for url_id, url in targets]
    now = found.clock.now()
    async with found.db.transaction() as session:
        for result in results:
            row = await session.get(NoticeUrl, result.url_id)
            if row is not None:
                row.recheck_status, row.recheck_error = result.status, result.error
                row.rechecked_at = now
        await record(
            session,
            found.clock,
            actor=actor,
            action="notice.recheck",
            target=f"notice:{notice_id}",
            details={
                "urls": len(results),
                "removed": sum(1 for r in results if r.status in REMOVED),
            },
        )
    return results


def recheck_json(row: NoticeUrl) -> dict[str, Any] | None:
    if row.rechecked_at is None:
        return None
    return {
        "status": row.recheck_status,
        "error": row.recheck_error,
        "at": builder.iso(row.rechecked_at),
        "suggests_removal": row.recheck_status in REMOVED,
    }


async def recheck_due(found: Services, now: datetime) -> int:
    """The periodic re-check (HELPLINE_NOTICE_RECHECK_HOURS > 0): open notices whose URLs
    were not checked within the interval. Returns how many notices were checked."""
    every = timedelta(hours=found.settings.notice_recheck_hours)
    open_statuses = [S.sent.value, S.receipt_confirmed.value, S.no_response.value]
    async with found.db.transaction() as session:
        rows = await session.execute(
            select(col(Notice.id), col(NoticeUrl.rechecked_at))
            .join(NoticeUrl, col(NoticeUrl.notice_id) == col(Notice.id))
            .where(col(Notice.status).in_(open_statuses))
            .where(col(Notice.notifier_included).is_(True))
            .where(col(Notice.category) != POSSIBLE_MINOR)
        )
        due: set[str] = set()
        for notice_id, checked_at in rows.all():
            if checked_at is None or as_utc(checked_at) + every <= now:
                due.add(notice_id)
    for notice_id in sorted(due):
        await recheck_notice(found, notice_id, actor="system")
    return len(due)
