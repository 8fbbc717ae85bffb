"""Figures about our notices, per platform and overall, over a period.

Computed from the notice tables and their append-only history, never from anything that could
name a victim: codes, counts, times. What each figure means (also in docs/api/takedown-figures.md):

- A notice belongs to a period when it was **sent** in it (`notices.sent_at` in `[start, end)`);
  notices never sent (drafts, queued, withdrawn before sending) count nowhere.
- `notices`: those notices by their status now: `honoured`, `partly_honoured`, `declined`,
  `more_info_requested`, `no_response`, `awaiting` (sent or receipt confirmed, no decision yet)
  and `withdrawn` (by us, after sending).
- `honour_rate` = honoured / concluded, where `concluded` = honoured + partly honoured +
  declined + no response: every notice the platform decided, or let pass its deadline without
  a decision. Notices still within their deadline, waiting for our answer to a question, or
  withdrawn do not count. `partly_honoured_rate`, `decline_rate` and `no_response_rate` use the
  same denominator, so the four add up to 1.
- `urls`: the URLs of those notices by their own status: `removed` (honoured: removed or access
  disabled), `restricted` (partly honoured: age or visibility restricted), `declined`,
  `more_info_requested`, `no_response`, `awaiting`, `withdrawn`.
- `declined_reasons`: declined URLs by the platform's reason code (helpline.takedown.answers
  `DECLINE_REASONS`, stored as `DECLINED_<REASON>` in `decision_ground`; `not_given` when there
  is none). Free text (the platform's explanation) is never counted or shown.
- **Time to removal** of a removed URL: from the notice's `sent_at` to the URL's first
  transition to `honoured` in `notice_history` (its `answered_at` if the history has none).
  `median` is the middle value (the mean of the two middle values for an even count); `p90` is
  the nearest-rank 90th percentile (the ⌈0.9·n⌉-th smallest).
- `within_24h`: removed URLs whose time to removal is at most 24 hours; as a share of the removed
  URLs and of the URLs sent (not withdrawn).
- `overdue_now`: notices of the period that wait for the platform (sent, receipt confirmed or
  no response) and whose `due_at` has passed at the moment of asking.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import as_utc
from helpline.core.errors import Invalid, NotFound
from helpline.takedown.models import Notice, NoticeHistory, NoticeUrl, Platform
from helpline.takedown.states import NoticeStatus

S = NoticeStatus
WITHIN = timedelta(hours=24)
DEFAULT_DAYS = 30
MAX_PERIOD = timedelta(days=366 * 10)
NOT_GIVEN = "not_given"
NONE_CODE = "none"
DECLINED_PREFIX = "DECLINED_"  # helpline.takedown.answers.decline_code

# a notice's status now -> the name it is counted under
NOTICE_BUCKETS: dict[str, str] = {
    S.honoured: "honoured",
    S.partly_honoured: "partly_honoured",
    S.declined: "declined",
    S.more_info_requested: "more_info_requested",
    S.no_response: "no_response",
    S.sent: "awaiting",
    S.receipt_confirmed: "awaiting",
    S.withdrawn: "withdrawn",
}
NOTICE_KEYS = (
    "honoured",
    "partly_honoured",
    "declined",
    "more_info_requested",
    "no_response",
    "awaiting",
    "withdrawn",
)
URL_BUCKETS: dict[str, str] = {
    S.honoured: "removed",
    S.partly_honoured: "restricted",
    S.declined: "declined",
    S.more_info_requested: "more_info_requested",
    S.no_response: "no_response",
    S.sent: "awaiting",
    S.receipt_confirmed: "awaiting",
    S.withdrawn: "withdrawn",
}
URL_KEYS = (
    "removed",
    "restricted",
    "declined",
    "more_info_requested",
    "no_response",
    "awaiting",
    "withdrawn",
)
# waiting for the platform: these count as overdue once `due_at` has passed
WAITING_FOR_PLATFORM = frozenset({S.sent, S.receipt_confirmed, S.no_response})


# ---------------------------------------------------------------- the period


@dataclass(frozen=True)
class Period:
    """`[start, end)`, both UTC."""

    start: datetime
    end: datetime
    timezone: str

    def as_json(self) -> dict[str, str]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "timezone": self.timezone,
        }


def _moment(text: str, zone: ZoneInfo, *, end: bool, name: str) -> datetime:
    """A date (`2026-03-31`: the start of that day, or for `to` the end of it, in the
    helpline's time zone) or a date and time with an offset (`2026-03-31T12:00:00+02:00`)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise Invalid(f"{name}: a date and time needs an offset, e.g. +01:00 or Z")
    except (ValueError, OverflowError):
        raise Invalid(f"{name}: not a date (YYYY-MM-DD) or a date and time (ISO 8601)") from None
    return moment.astimezone(UTC)


def parse_period(
    start_text: str | None, end_text: str | None, *, now: datetime, timezone: str
) -> Period:
    """The period of `?from=&to=`: `to` defaults to now, `from` to 30 days before `to`."""
    zone = ZoneInfo(timezone)
    end = _moment(end_text, zone, end=True, name="to") if end_text else as_utc(now)
    start = (
        _moment(start_text, zone, end=False, name="from")
        if start_text
        else end - timedelta(days=DEFAULT_DAYS)
    )
    if start >= end:
        raise Invalid("from: must be before to")
    if end - start > MAX_PERIOD:
        raise Invalid("from: the period may be ten years at most")
    return Period(start, end, timezone)


FIRST_YEAR, LAST_YEAR = 2000, 2999


def year_period(year: int, timezone: str) -> Period:
    """A calendar year in the helpline's time zone."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise Invalid(f"year: must be between {FIRST_YEAR} and {LAST_YEAR}")
    zone = ZoneInfo(timezone)
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    return Period(start, end, timezone)


# ---------------------------------------------------------------- facts, as read from the tables


@dataclass(frozen=True)
class PlatformFacts:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class NoticeFacts:
    id: str
    platform_id: str
    category: str
    dsa_category: str | None
    dsa_keywords: tuple[str, ...]
    status: str
    sent_at: datetime
    due_at: datetime | None


@dataclass(frozen=True)
class UrlFacts:
    notice_id: str
    status: str
    decision_visibility: str | None
    decision_ground: str | None
    removed_at: datetime | None  # first transition to honoured, if the URL is honoured now


@dataclass
class Facts:
    platforms: dict[str, PlatformFacts]
    notices: list[NoticeFacts]
    urls: list[UrlFacts]


async def load_facts(
    session: AsyncSession, period: Period, *, platform_id: str | None = None
) -> Facts:
    """The notices sent in the period (to one platform, or all), their URLs, and when each
    removed URL was first honoured according to the history."""
    in_period = [
        col(Notice.sent_at).is_not(None),
        col(Notice.sent_at) >= period.start,
        col(Notice.sent_at) < period.end,
    ]
    if platform_id is not None:
        in_period.append(col(Notice.platform_id) == platform_id)
    notice_rows = (
        await session.execute(
            select(
                col(Notice.id),
                col(Notice.platform_id),
                col(Notice.category),
                col(Notice.dsa_category),
                col(Notice.dsa_keywords),
                col(Notice.status),
                col(Notice.sent_at),
                col(Notice.due_at),
            )
            .where(*in_period)
            .order_by(col(Notice.sent_at), col(Notice.id))
        )
    ).all()
    notices: list[NoticeFacts] = []
    for row in notice_rows:
        notice_id, platform, category, dsa_category, keywords, status, sent_at, due_at = row
        assert sent_at is not None  # the query asks for sent notices only
        notices.append(
            NoticeFacts(
                id=notice_id,
                platform_id=platform,
                category=category,
                dsa_category=dsa_category,
                dsa_keywords=tuple(k for k in (keywords or "").split(",") if k),
                status=status,
                sent_at=as_utc(sent_at),
                due_at=as_utc(due_at) if due_at is not None else None,
            )
        )
    first_honoured = (
        select(col(NoticeHistory.url_id), func.min(col(NoticeHistory.at)).label("at"))
        .where(col(NoticeHistory.url_id).is_not(None), col(NoticeHistory.to_status) == S.honoured)
        .group_by(col(NoticeHistory.url_id))
        .subquery()
    )
    url_rows = (
        await session.execute(
            select(
                col(NoticeUrl.notice_id),
                col(NoticeUrl.status),
                col(NoticeUrl.decision_visibility),
                col(NoticeUrl.decision_ground),
                col(NoticeUrl.answered_at),
                first_honoured.c.at,
            )
            .join(Notice, col(Notice.id) == col(NoticeUrl.notice_id))
            .outerjoin(first_honoured, first_honoured.c.url_id == col(NoticeUrl.id))
            .where(*in_period)
            .order_by(col(NoticeUrl.notice_id), col(NoticeUrl.position))
        )
    ).all()
    urls = []
    for notice_id, status, visibility, ground, answered_at, honoured_at in url_rows:
        removed_at = None
        if status == S.honoured:
            moment = honoured_at if honoured_at is not None else answered_at
            removed_at = as_utc(moment) if moment is not None else None
        urls.append(UrlFacts(notice_id, status, visibility, ground, removed_at))
    referenced = {n.platform_id for n in notices}
    platform_query = select(Platform)
    if platform_id is not None:
        platform_query = platform_query.where(col(Platform.id) == platform_id)
    else:
        # every active platform (a zero says something too), and any that had notices
        platform_query = platform_query.where(
            or_(col(Platform.active).is_(True), col(Platform.id).in_(referenced or {""}))
        )
    platforms = {
        p.id: PlatformFacts(p.id, p.slug, p.name)
        for p in (await session.execute(platform_query)).scalars().all()
    }
    return Facts(platforms, notices, urls)


async def find_platform(session: AsyncSession, key: str) -> Platform:
    """A platform by id or slug (`?platform=`)."""
    found = (
        await session.execute(
            select(Platform).where(or_(col(Platform.id) == key, col(Platform.slug) == key))
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("no such platform")
    result: Platform = found
    return result


# ---------------------------------------------------------------- the arithmetic


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile: the ⌈q·n⌉-th smallest value."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Figures:
    """The figures of one set of notices (one platform's, or all of them)."""

    notices: dict[str, int]
    urls: dict[str, int]
    declined_reasons: dict[str, int]
    categories: dict[str, int]  # triage category -> notices
    content_categories: dict[str, int]  # DSA category code (NONE_CODE: none) -> notices
    content_keywords: dict[str, int]  # DSA keyword code -> notices (a notice may have several)
    removal_seconds: list[float]  # sorted
    overdue_now: int
    actions: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return sum(self.notices.values())

    @property
    def concluded(self) -> int:
        n = self.notices
        return n["honoured"] + n["partly_honoured"] + n["declined"] + n["no_response"]

    @property
    def honour_rate(self) -> float | None:
        return ratio(self.notices["honoured"], self.concluded)

    @property
    def urls_sent(self) -> int:
        return sum(self.urls.values()) - self.urls["withdrawn"]

    @property
    def within_24h(self) -> int:
        limit = WITHIN.total_seconds()
        return sum(1 for seconds in self.removal_seconds if seconds <= limit)

    @property
    def median_seconds(self) -> float | None:
        return median(self.removal_seconds)

    @property
    def p90_seconds(self) -> float | None:
        return nearest_rank(self.removal_seconds, 0.9)

    def as_json(self) -> dict[str, Any]:
        n = self.notices

        def hours(seconds: float | None) -> float | None:
            return round(seconds / 3600, 2) if seconds is not None else None

        return {
            "notices": {"sent": self.sent, **n, "concluded": self.concluded},
            "honour_rate": self.honour_rate,
            "partly_honoured_rate": ratio(n["partly_honoured"], self.concluded),
            "decline_rate": ratio(n["declined"], self.concluded),
            "no_response_rate": ratio(n["no_response"], self.concluded),
            "urls": {"sent": sum(self.urls.values()), **self.urls},
            "declined_reasons": [
                {"reason": reason, "urls": count}
                for reason, count in sorted(self.declined_reasons.items(), key=_by_count)
            ],
            "time_to_removal": {
                "removed_urls": len(self.removal_seconds),
                "median_seconds": self.median_seconds,
                "p90_seconds": self.p90_seconds,
                "median_hours": hours(self.median_seconds),
                "p90_hours": hours(self.p90_seconds),
            },
            "within_24h": {
                "removed_urls": self.within_24h,
                "share_of_removed": ratio(self.within_24h, len(self.removal_seconds)),
                "share_of_sent": ratio(self.within_24h, self.urls_sent),
            },
            "overdue_now": self.overdue_now,
            "categories": dict(sorted(self.categories.items())),
            "content_categories": dict(sorted(self.content_categories.items())),
            "content_keywords": dict(sorted(self.content_keywords.items())),
            "actions": dict(sorted(self.actions.items(), key=_by_count)),
        }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def decline_reason(decision_ground: str | None) -> str:
    """`DECLINED_NOT_ILLEGAL` → `not_illegal`; any other code as it is."""
    if not decision_ground:
        return NOT_GIVEN
    if decision_ground.startswith(DECLINED_PREFIX):
        return decision_ground[len(DECLINED_PREFIX) :].lower()
    return decision_ground


def action_of(url: UrlFacts) -> str:
    """What the platform did with one URL, for the yearly report: the Transparency Database's
    `decision_visibility` code when it removed or restricted it (or `removed` / `restricted`
    when it gave no code), else what happened instead (`declined`, `no_response`, ...)."""
    bucket = URL_BUCKETS.get(url.status, "awaiting")
    if bucket in ("removed", "restricted"):
        return url.decision_visibility or bucket
    return bucket


def compute(notices: Iterable[NoticeFacts], urls: Iterable[UrlFacts], *, now: datetime) -> Figures:
    """The figures of these notices and URLs (the URLs of other notices are ignored)."""
    notice_counts = dict.fromkeys(NOTICE_KEYS, 0)
    categories: Counter[str] = Counter()
    content_categories: Counter[str] = Counter()
    content_keywords: Counter[str] = Counter()
    sent_at: dict[str, datetime] = {}
    overdue = 0
    for notice in notices:
        notice_counts[NOTICE_BUCKETS.get(notice.status, "awaiting")] += 1
        categories[notice.category] += 1
        content_categories[notice.dsa_category or NONE_CODE] += 1
        content_keywords.update(set(notice.dsa_keywords))
        sent_at[notice.id] = notice.sent_at
        if (
            notice.status in WAITING_FOR_PLATFORM
            and notice.due_at is not None
            and notice.due_at <= now
        ):
            overdue += 1
    url_counts = dict.fromkeys(URL_KEYS, 0)
    reasons: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    removal: list[float] = []
    for url in urls:
        if url.notice_id not in sent_at:
            continue
        bucket = URL_BUCKETS.get(url.status, "awaiting")
        url_counts[bucket] += 1
        actions[action_of(url)] += 1
        if bucket == "declined":
            reasons[decline_reason(url.decision_ground)] += 1
        if bucket == "removed" and url.removed_at is not None:
            removal.append(max(0.0, (url.removed_at - sent_at[url.notice_id]).total_seconds()))
    return Figures(
        notices=notice_counts,
        urls=url_counts,
        declined_reasons=dict(reasons),
        categories=dict(categories),
        content_categories=dict(content_categories),
        content_keywords=dict(content_keywords),
        removal_seconds=sorted(removal),
        overdue_now=overdue,
        actions=dict(actions),
    )


# ---------------------------------------------------------------- per platform and overall


@dataclass
class PeriodFigures:
    period: Period
    now: datetime
    overall: Figures
    platforms: list[tuple[PlatformFacts, Figures]]  # by name

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period.as_json(),
            "now": self.now.isoformat(),
            "overall": self.overall.as_json(),
            "platforms": [
                {"platform": {"id": p.id, "slug": p.slug, "name": p.name}, **f.as_json()}
                for p, f in self.platforms
            ],
        }


def figures_of(facts: Facts, period: Period, now: datetime) -> PeriodFigures:
    by_platform: dict[str, list[NoticeFacts]] = {p: [] for p in facts.platforms}
    for notice in facts.notices:
        by_platform.setdefault(notice.platform_id, []).append(notice)
    per_platform = []
    for platform_id, notices in by_platform.items():
        platform = facts.platforms.get(platform_id) or PlatformFacts(platform_id, "", platform_id)
        per_platform.append((platform, compute(notices, facts.urls, now=now)))
    per_platform.sort(key=lambda pair: (pair[0].name.lower(), pair[0].id))
    return PeriodFigures(period, now, compute(facts.notices, facts.urls, now=now), per_platform)


async def period_figures(
    session: AsyncSession, period: Period, *, now: datetime, platform: str | None = None
) -> PeriodFigures:
    """The figures of a period, overall and per platform (one platform, by id or slug)."""
    platform_id = (await find_platform(session, platform)).id if platform else None
    facts = await load_facts(session, period, platform_id=platform_id)
    return figures_of(facts, period, as_utc(now))
