"""The figures `/metrics` reports from the domains' tables (the endpoint itself, its token and
the websocket gauge are in `helpline.core.metrics`).

A handful of aggregate queries on indexed columns, in the scrape's transaction. Every label
value is a code from a closed vocabulary, and every label value of that vocabulary is always
reported (zeros included), so a series never disappears and no label is ever made of data.
`SERIES` is the documented list (docs/operations.md, "Monitoring"; a test keeps them equal).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from prometheus_client.core import Metric
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.routing import BaseRoute

from helpline.cases.models import OPEN_STATUSES, Case, CaseStatus
from helpline.cases.service import in_queue_by
from helpline.core import metrics as core
from helpline.core.clock import as_utc
from helpline.core.metrics import gauge
from helpline.core.models import OutboxEntry
from helpline.core.outbox import DEAD, PENDING
from helpline.core.services import Services
from helpline.handover.models import Handover
from helpline.handover.states import FINAL, HandoverStatus
from helpline.retention.models import PurgeRun
from helpline.retention.purge import COUNTED
from helpline.takedown.models import Notice
from helpline.takedown.sla import RUNNING
from helpline.takedown.states import OPEN
from helpline.triage.models import SlaBreach
from helpline.triage.sla import FIRST_RESPONSE, NEXT_RESPONSE
from helpline.triage.vocabulary import Priority

QUEUE_CASES = "helpline_queue_cases"
QUEUE_OLDEST_WAIT = "helpline_queue_oldest_wait_seconds"
SLA_BREACHES = "helpline_sla_breaches"
NOTICES_OPEN = "helpline_notices_open"
NOTICES_OVERDUE = "helpline_notices_overdue"
OUTBOX_PENDING = "helpline_outbox_pending"
OUTBOX_DEAD = "helpline_outbox_dead"
PURGE_LAST_RUN = "helpline_purge_last_run_timestamp_seconds"
PURGE_LAST_STATUS = "helpline_purge_last_run_status"
PURGE_LAST_ITEMS = "helpline_purge_last_run_items"
HANDOVERS_OPEN = "helpline_handovers_open"

SERIES = (
    *core.CORE_SERIES,
    QUEUE_CASES,
    QUEUE_OLDEST_WAIT,
    SLA_BREACHES,
    NOTICES_OPEN,
    NOTICES_OVERDUE,
    OUTBOX_PENDING,
    OUTBOX_DEAD,
    PURGE_LAST_RUN,
    PURGE_LAST_STATUS,
    PURGE_LAST_ITEMS,
    HANDOVERS_OPEN,
)

PRIORITIES = {level.value: level.name for level in Priority}
SLA_KINDS = (FIRST_RESPONSE, NEXT_RESPONSE)
OPEN_NOTICE_STATUSES = tuple(sorted(status.value for status in OPEN))
OPEN_HANDOVER_STATUSES = tuple(s.value for s in HandoverStatus if s not in FINAL)
PURGE_STATUSES = ("running", "done", "failed")
OTHER = "other"  # an outbox kind no handler of this instance knows


async def _grouped(session: AsyncSession, query: Select[Any, Any]) -> dict[Any, float]:
    """{group: figure} of a two-column aggregate query."""
    return {key: value for key, value in (await session.execute(query)).all()}


async def queue(session: AsyncSession, now: datetime) -> list[Metric]:
    in_queue = (col(Case.status).in_(OPEN_STATUSES), in_queue_by(now))
    counts = await _grouped(
        session,
        select(col(Case.priority), func.count()).where(*in_queue).group_by(col(Case.priority)),
    )
    # waiting to be picked up: the first-response clock runs from `queued_at`
    oldest = await _grouped(
        session,
        select(col(Case.priority), func.min(col(Case.queued_at)))
        .where(col(Case.status) == CaseStatus.new.value, in_queue_by(now))
        .group_by(col(Case.priority)),
    )
    waits: dict[tuple[str, ...], float] = {}
    for level, name in PRIORITIES.items():
        since = oldest.get(level)
        seconds = (now - as_utc(since)).total_seconds() if isinstance(since, datetime) else 0.0
        waits[(name,)] = max(seconds, 0.0)
    return [
        gauge(
            QUEUE_CASES,
            "Open cases in the queue, by priority.",
            {(name,): counts.get(level, 0) for level, name in PRIORITIES.items()},
            "priority",
        ),
        gauge(
            QUEUE_OLDEST_WAIT,
            "Seconds the longest-waiting case nobody has picked up has been in the queue, "
            "by priority (0: none waiting).",
            waits,
            "priority",
        ),
    ]


async def sla_breaches(session: AsyncSession) -> list[Metric]:
    counts = await _grouped(
        session,
        select(col(SlaBreach.kind), func.count()).group_by(col(SlaBreach.kind)),
    )
    return [
        gauge(
            SLA_BREACHES,
            "Service-level breaches on record (of cases not purged yet), by kind.",
            {(kind,): counts.get(kind, 0) for kind in SLA_KINDS},
            "kind",
        )
    ]


async def notices(session: AsyncSession, now: datetime) -> list[Metric]:
    counts = await _grouped(
        session,
        select(col(Notice.status), func.count())
        .where(col(Notice.status).in_(OPEN_NOTICE_STATUSES))
        .group_by(col(Notice.status)),
    )
    overdue = await session.scalar(
        select(func.count())
        .select_from(Notice)
        .where(
            col(Notice.status).in_([status.value for status in RUNNING]),
            col(Notice.due_at) < now,
        )
    )
    return [
        gauge(
            NOTICES_OPEN,
            "Removal notices waiting for the platform, by status.",
            {(status,): counts.get(status, 0) for status in OPEN_NOTICE_STATUSES},
            "status",
        ),
        gauge(
            NOTICES_OVERDUE,
            "Removal notices whose deadline has passed without the platform's decision.",
            {(): overdue or 0},
        ),
    ]


async def outbox(session: AsyncSession, found: Services) -> list[Metric]:
    kinds = sorted(found.outbox.handlers)
    rows = await session.execute(
        select(col(OutboxEntry.status), col(OutboxEntry.kind), func.count())
        .where(col(OutboxEntry.status).in_((PENDING, DEAD)))
        .group_by(col(OutboxEntry.status), col(OutboxEntry.kind))
    )
    by_status: dict[str, dict[tuple[str, ...], float]] = {
        status: {(kind,): 0 for kind in [*kinds, OTHER]} for status in (PENDING, DEAD)
    }
    for status, kind, count in rows.all():
        label = kind if kind in kinds else OTHER
        by_status[status][(label,)] += count
    return [
        gauge(
            OUTBOX_PENDING,
            "Outbox entries waiting for delivery (the backlog), by kind.",
            by_status[PENDING],
            "kind",
        ),
        gauge(
            OUTBOX_DEAD,
            "Dead-lettered outbox entries, by kind (`helpline outbox list --status dead`).",
            by_status[DEAD],
            "kind",
        ),
    ]


async def purge_runs(session: AsyncSession) -> list[Metric]:
    real = col(PurgeRun.dry_run).is_(False)
    latest = await session.scalar(
        select(PurgeRun).where(real).order_by(col(PurgeRun.started_at).desc()).limit(1)
    )
    finished = await session.scalar(
        select(PurgeRun)
        .where(real, col(PurgeRun.finished_at).is_not(None))
        .order_by(col(PurgeRun.finished_at).desc())
        .limit(1)
    )
    when: dict[tuple[str, ...], float] = {}
    items: dict[tuple[str, ...], float] = {}
    if finished is not None and finished.finished_at is not None:
        when[()] = as_utc(finished.finished_at).timestamp()
        try:
            counts = json.loads(finished.counts)
        except ValueError:
            counts = {}
        counts = counts if isinstance(counts, dict) else {}
        items = {(kind,): float(counts.get(kind, 0) or 0) for kind in COUNTED}
    status = latest.status if latest is not None else None
    return [
        gauge(
            PURGE_LAST_RUN,
            "When the last retention purge (not a dry run) finished, as a Unix time.",
            when,
        ),
        gauge(
            PURGE_LAST_STATUS,
            "The status of the last retention purge: 1 for its status, 0 for the others.",
            {(name,): 1 if name == status else 0 for name in PURGE_STATUSES},
            "status",
        ),
        gauge(
            PURGE_LAST_ITEMS,
            "What the last finished retention purge removed, by kind.",
            items,
            "kind",
        ),
    ]


async def handovers(session: AsyncSession) -> list[Metric]:
    counts = await _grouped(
        session,
        select(col(Handover.status), func.count())
        .where(col(Handover.status).in_(OPEN_HANDOVER_STATUSES))
        .group_by(col(Handover.status)),
    )
    return [
        gauge(
            HANDOVERS_OPEN,
            "Handovers to partners not finished yet, by status.",
            {(status,): counts.get(status, 0) for status in OPEN_HANDOVER_STATUSES},
            "status",
        )
    ]


async def read_figures(session: AsyncSession, found: Services, now: datetime) -> list[Metric]:
    """Every domain figure of one scrape."""
    return [
        *await queue(session, now),
        *await sla_breaches(session),
        *await notices(session, now),
        *await outbox(session, found),
        *await purge_runs(session),
        *await handovers(session),
    ]


def metrics_routes() -> list[BaseRoute]:
    return core.metrics_routes(read_figures)
