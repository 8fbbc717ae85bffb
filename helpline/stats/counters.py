"""Writing the anonymous counters (`stat_counters`, helpline.stats.models), at the event.

Every counted event calls one named function here, in the caller's transaction, so a counter
commits exactly when its event does and survives the purge of the case it came from. A
counter row is (day, metric, dims) → count: the day in the helpline's time zone, the metric a
name from `METRICS`, the dimensions codes from closed vocabularies. `canonical_dims` refuses an
unknown metric, an unknown or missing dimension and any value outside its vocabulary, so no
caller can write an id, a reference or free text into a counter: the only open vocabulary is
`platform`, whose values must be ids of the platform directory (companies, not people) and are
checked against it.

Which closure counts (docs/statistics.md): a case is counted once in `case_closed`,
`case_risk` and `first_response`, at its first closure (staff close it with an outcome, the
victim ends the chat, deletes the case while it is open, or the purge removes it while open).
A case closed again after a reopen is counted in `case_reclosed` only (with its new outcome);
`contact` is counted once, when the case is created, and a reopen in `case_reopened`. A
notice's first decision (or its first `no_response`) is counted in `notice_decided`; a later
change of that decision (a late answer, a revision after a complaint) in `notice_revised`.

The time zone: a caller that has the settings passes them; the hooks inside domain functions
that only have a session pass None, and the zone comes from the session (`register_stats`
puts it in the sessionmaker's `info`), else the default time zone of the settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case, CaseEvent, CaseStatus, Channel, Outcome
from helpline.core.clock import as_utc
from helpline.core.config import Settings
from helpline.core.services import Services
from helpline.handover.models import Handover
from helpline.handover.states import HandoverStatus, PartnerKind
from helpline.stats.models import StatCounter
from helpline.takedown.models import Notice, NoticeHistory, Platform
from helpline.takedown.states import NoticeStatus
from helpline.triage.vocabulary import CATEGORIES, FLAGS, OUTCOMES, parse_flags

ZONE_INFO_KEY = "helpline.timezone"  # the session's info: the helpline's time zone
DEFAULT_TIMEZONE: str = cast(str, Settings.model_fields["timezone"].default)
_COUNTERS = cast(Table, StatCounter.__table__)  # type: ignore[attr-defined]  # set by SQLModel

NONE = "none"
YES, NO = "yes", "no"

# time to first response, minutes: (upper bound exclusive, label); the last is open-ended
FIRST_RESPONSE_BUCKETS: tuple[tuple[float, str], ...] = (
    (5, "0-5"),
    (15, "5-15"),
    (60, "15-60"),
    (240, "60-240"),
    (float("inf"), "240+"),
)
# time from sending a notice to the platform's decision, hours
REMOVAL_BUCKETS: tuple[tuple[float, str], ...] = (
    (1, "0-1"),
    (6, "1-6"),
    (24, "6-24"),
    (72, "24-72"),
    (float("inf"), "72+"),
)

# how a case left the helpline, besides the staff outcomes (cases.models.Outcome)
ENDED_BY_VICTIM = "ended_by_victim"
DELETED_BY_VICTIM = "deleted_by_victim"
PURGED_OPEN = "purged_open"
CLOSING_REASONS: dict[str, str | None] = {
    "closed": None,  # staff closed it: the case's own outcome
    "ended": ENDED_BY_VICTIM,
    "deleted": DELETED_BY_VICTIM,
    "purged_open": PURGED_OPEN,
}
CASE_OUTCOMES = frozenset({*OUTCOMES, ENDED_BY_VICTIM, DELETED_BY_VICTIM, PURGED_OPEN})
NOTICE_OUTCOMES = frozenset(
    {
        NoticeStatus.honoured.value,
        NoticeStatus.partly_honoured.value,
        NoticeStatus.declined.value,
        NoticeStatus.no_response.value,
    }
)


class Directory:
    """An open vocabulary: ids of a directory table (platforms), which `bump` looks up there;
    `canonical_dims` checks only that the value has the shape of an id."""

    PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")

    def __repr__(self) -> str:
        return "<platform directory id>"


PLATFORM_DIRECTORY = Directory()
Vocabulary = frozenset[str] | Directory

CHANNELS = frozenset(c.value for c in Channel)
CATEGORY_CODES = frozenset({*CATEGORIES, NONE})
NOTICE_CATEGORIES = frozenset(CATEGORIES)
YES_NO = frozenset({YES, NO})
MINUTES = frozenset({NONE, *(label for _, label in FIRST_RESPONSE_BUCKETS)})
HOURS = frozenset({NONE, *(label for _, label in REMOVAL_BUCKETS)})

# metric -> its dimensions -> their vocabularies; every dimension is required
METRICS: dict[str, dict[str, Vocabulary]] = {
    "contact": {"channel": CHANNELS},
    "case_reopened": {"channel": CHANNELS},
    "case_closed": {
        "channel": CHANNELS,
        "category": CATEGORY_CODES,
        "outcome": CASE_OUTCOMES,
        "referred": YES_NO,
        "takedown": YES_NO,
    },
    "case_reclosed": {"channel": CHANNELS, "outcome": CASE_OUTCOMES},
    "case_risk": {"flag": frozenset(FLAGS)},
    "first_response": {"channel": CHANNELS, "minutes": MINUTES},
    "notice_sent": {"platform": PLATFORM_DIRECTORY, "category": NOTICE_CATEGORIES},
    "notice_decided": {
        "platform": PLATFORM_DIRECTORY,
        "category": NOTICE_CATEGORIES,
        "outcome": NOTICE_OUTCOMES,
        "hours": HOURS,
    },
    "notice_revised": {
        "platform": PLATFORM_DIRECTORY,
        "category": NOTICE_CATEGORIES,
        "previous": NOTICE_OUTCOMES,
        "outcome": NOTICE_OUTCOMES,
        "hours": HOURS,
    },
    "handover": {
        "partner_kind": frozenset(k.value for k in PartnerKind),
        "status": frozenset(s.value for s in HandoverStatus),
    },
}


class UnknownDimension(ValueError):
    """A counter that may not be written: a programming error, never a user's."""


def canonical_dims(metric: str, dims: Mapping[str, str]) -> str:
    """`dims` as stored: `k=v;k=v`, keys sorted; refuses anything outside `METRICS`."""
    schema = METRICS.get(metric)
    if schema is None:
        raise UnknownDimension(f"unknown metric {metric!r}")
    unknown = sorted(set(dims) - set(schema))
    if unknown:
        raise UnknownDimension(f"{metric}: unknown dimension {unknown[0]!r}")
    missing = sorted(set(schema) - set(dims))
    if missing:
        raise UnknownDimension(f"{metric}: dimension {missing[0]!r} is missing")
    for key, value in dims.items():
        vocabulary = schema[key]
        if not isinstance(value, str):
            raise UnknownDimension(f"{metric}.{key}: not a code")
        if isinstance(vocabulary, Directory):
            if not Directory.PATTERN.fullmatch(value):
                raise UnknownDimension(f"{metric}.{key}: not a directory id")
        elif value not in vocabulary:
            raise UnknownDimension(f"{metric}.{key}: {value!r} is not in its vocabulary")
    return ";".join(f"{key}={dims[key]}" for key in sorted(dims))


def parse_dims(stored: str) -> dict[str, str]:
    """The inverse of `canonical_dims`."""
    return dict(part.split("=", 1) for part in stored.split(";") if part)


def zone_of(session: AsyncSession, settings_or_tz: Settings | str | None) -> ZoneInfo:
    if isinstance(settings_or_tz, Settings):
        return ZoneInfo(settings_or_tz.timezone)
    if isinstance(settings_or_tz, str):
        return ZoneInfo(settings_or_tz)
    return ZoneInfo(str(session.info.get(ZONE_INFO_KEY, DEFAULT_TIMEZONE)))


def register_stats(services: Services) -> None:
    """Every session of this app carries the helpline's time zone, so that counters written
    deep in domain code (which has a session and a clock, not the settings) fall on the
    helpline's day. Call once, where the services are built."""
    services.db.sessionmaker.configure(info={ZONE_INFO_KEY: services.settings.timezone})


def day_of(moment: datetime, zone: ZoneInfo) -> str:
    return as_utc(moment).astimezone(zone).date().isoformat()


async def bump(
    session: AsyncSession,
    settings_or_tz: Settings | str | None,
    *,
    at: datetime,
    metric: str,
    dims: Mapping[str, str],
    n: int = 1,
) -> None:
    """Add `n` to the counter of (`at`'s day, `metric`, `dims`), in the caller's transaction:
    one upsert (INSERT … ON CONFLICT DO UPDATE count = count + n)."""
    stored = canonical_dims(metric, dims)
    for key, vocabulary in METRICS[metric].items():
        if isinstance(vocabulary, Directory) and await session.get(Platform, dims[key]) is None:
            raise UnknownDimension(f"{metric}.{key}: not in the directory")
    values = {
        "day": day_of(at, zone_of(session, settings_or_tz)),
        "metric": metric,
        "dims": stored,
        "count": n,
    }
    keys = [_COUNTERS.c.day, _COUNTERS.c.metric, _COUNTERS.c.dims]
    if session.get_bind().dialect.name == "postgresql":
        pg = pg_insert(_COUNTERS).values(**values)
        await session.execute(
            pg.on_conflict_do_update(index_elements=keys, set_={"count": _COUNTERS.c.count + n})
        )
    else:
        lite = sqlite_insert(_COUNTERS).values(**values)
        await session.execute(
            lite.on_conflict_do_update(index_elements=keys, set_={"count": _COUNTERS.c.count + n})
        )


def bucket(duration: timedelta | None, buckets: tuple[tuple[float, str], ...], unit: float) -> str:
    """The label of the bucket `duration` falls in (`unit` seconds per bucket unit); `none`
    for no duration. A negative duration (an answer before the window opened) counts as 0."""
    if duration is None:
        return NONE
    amount = max(duration.total_seconds(), 0.0) / unit
    for upper, label in buckets:
        if amount < upper:
            return label
    return buckets[-1][1]  # pragma: no cover - the last bound is infinite


# ---------------------------------------------------------------- cases


async def count_contact(session: AsyncSession, settings: Settings | None, case: Case) -> None:
    """A contact opened: a new case by chat, e-mail or callback request."""
    await bump(
        session, settings, at=case.created_at, metric="contact", dims={"channel": case.channel}
    )


async def count_case_reopened(
    session: AsyncSession, settings: Settings | None, case: Case, *, now: datetime
) -> None:
    """A victim came back to a closed case (not a new contact)."""
    await bump(session, settings, at=now, metric="case_reopened", dims={"channel": case.channel})


async def _was_reopened(session: AsyncSession, case_id: str) -> bool:
    """Reopened before: then its first closure was counted already."""
    found = await session.execute(
        select(exists().where(col(CaseEvent.case_id) == case_id, col(CaseEvent.kind) == "reopen"))
    )
    return bool(found.scalar_one())


async def _referred(session: AsyncSession, case_id: str) -> bool:
    """A handover of the case reached the partner (delivered, perhaps downloaded since)."""
    found = await session.execute(
        select(
            exists().where(
                col(Handover.case_id) == case_id, col(Handover.delivered_at).is_not(None)
            )
        )
    )
    return bool(found.scalar_one())


async def _takedown(session: AsyncSession, case_id: str) -> bool:
    """A removal request of the case was sent to a platform."""
    found = await session.execute(
        select(exists().where(col(Notice.case_id) == case_id, col(Notice.sent_at).is_not(None)))
    )
    return bool(found.scalar_one())


async def count_case_closed(
    session: AsyncSession,
    settings: Settings | None,
    case: Case,
    *,
    now: datetime,
    reason: str = "closed",
) -> bool:
    """A case left the helpline: staff closed it (`closed`, its outcome), the victim ended the
    chat (`ended`), deleted it while open (`deleted`), or the purge removed it while open
    (`purged_open`). Call it before the case's rows go. Counted once per case (see the module
    docstring); True if this call counted the case, False for a re-closure (counted in
    `case_reclosed`) or a deletion of a case that was closed already (not counted again)."""
    if reason not in CLOSING_REASONS:
        raise UnknownDimension(f"unknown closing reason {reason!r}")
    if reason in ("deleted", "purged_open") and case.status == CaseStatus.closed:
        return False  # counted when it closed
    outcome = CLOSING_REASONS[reason] or case.outcome or ENDED_BY_VICTIM
    if reason == "closed" and outcome not in {o.value for o in Outcome}:
        raise UnknownDimension(f"case_closed: {outcome!r} is not an outcome")
    if await _was_reopened(session, case.id):
        await bump(
            session,
            settings,
            at=now,
            metric="case_reclosed",
            dims={"channel": case.channel, "outcome": outcome},
        )
        return False
    referred = await _referred(session, case.id)
    takedown = await _takedown(session, case.id)
    await bump(
        session,
        settings,
        at=now,
        metric="case_closed",
        dims={
            "channel": case.channel,
            "category": case.category or NONE,
            "outcome": outcome,
            "referred": YES if referred else NO,
            "takedown": YES if takedown else NO,
        },
    )
    for flag in parse_flags(case.risk_flags):
        await bump(session, settings, at=now, metric="case_risk", dims={"flag": flag})
    # from joining the queue (a callback: its first window) to staff's first message; the
    # first closure comes before any reopen, so `queued_at` is still the first one
    waited = (
        as_utc(case.first_response_at) - as_utc(case.queued_at)
        if case.first_response_at is not None
        else None
    )
    await bump(
        session,
        settings,
        at=now,
        metric="first_response",
        dims={"channel": case.channel, "minutes": bucket(waited, FIRST_RESPONSE_BUCKETS, 60)},
    )
    return True


# ---------------------------------------------------------------- notices


async def _earlier_decision(session: AsyncSession, notice_id: str) -> str | None:
    """The notice's latest decision (or no_response) in its history so far, if any."""
    found = await session.execute(
        select(col(NoticeHistory.to_status))
        .where(
            col(NoticeHistory.notice_id) == notice_id,
            col(NoticeHistory.url_id).is_(None),
            col(NoticeHistory.to_status).in_(NOTICE_OUTCOMES),
        )
        .order_by(col(NoticeHistory.seq).desc())
        .limit(1)
    )
    return found.scalar_one_or_none()


async def count_notice_moved(
    session: AsyncSession, notice: Notice, before: str, *, at: datetime
) -> None:
    """A notice moved from `before` to its current status. Call it before the move's history
    row is written (`_earlier_decision` must not see this move)."""
    after = notice.status
    if before == NoticeStatus.queued and after == NoticeStatus.sent:
        await bump(
            session,
            None,
            at=at,
            metric="notice_sent",
            dims={"platform": notice.platform_id, "category": notice.category},
        )
        return
    if after not in NOTICE_OUTCOMES:
        return
    took = as_utc(at) - as_utc(notice.sent_at) if notice.sent_at is not None else None
    dims = {
        "platform": notice.platform_id,
        "category": notice.category,
        "outcome": after,
        "hours": bucket(took, REMOVAL_BUCKETS, 3600),
    }
    previous = before if before in NOTICE_OUTCOMES else await _earlier_decision(session, notice.id)
    if previous is None:
        await bump(session, None, at=at, metric="notice_decided", dims=dims)
    else:
        await bump(
            session, None, at=at, metric="notice_revised", dims={**dims, "previous": previous}
        )


# ---------------------------------------------------------------- handovers


async def count_handover_moved(session: AsyncSession, handover: Handover, *, at: datetime) -> None:
    """A handover reached its current status (every transition is counted)."""
    await bump(
        session,
        None,
        at=at,
        metric="handover",
        dims={"partner_kind": handover.partner_kind, "status": handover.status},
    )
