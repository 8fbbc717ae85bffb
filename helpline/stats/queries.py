"""Reading the counters: rows over a period of days, grouped by week or month, and the
figures the statistics page and the annual report show (docs/statistics.md).

Everything here is computed from `stat_counters` alone, never from cases (which may be gone):
a figure of a period is what was counted on the days of that period.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.errors import Invalid
from helpline.stats.counters import (
    FIRST_RESPONSE_BUCKETS,
    NOTICE_OUTCOMES,
    REMOVAL_BUCKETS,
    YES,
    parse_dims,
)
from helpline.stats.models import StatCounter
from helpline.takedown.models import Platform

GROUPS = ("week", "month")
DEFAULT_WEEKS = 12
MAX_DAYS = 366 * 10
REMOVED = ("honoured", "partly_honoured")  # outcomes whose time is a time to removal
CONCLUDED = ("honoured", "partly_honoured", "declined", "no_response")
MINUTE_LABELS = tuple(label for _, label in FIRST_RESPONSE_BUCKETS) + ("none",)
HOUR_LABELS = tuple(label for _, label in REMOVAL_BUCKETS)
WITHIN_24H = ("0-1", "1-6", "6-24")


@dataclass(frozen=True)
class Span:
    """Local days `first`..`last` (both included), grouped by `group`."""

    first: date
    last: date
    group: str = "week"

    def periods(self) -> list[date]:
        """The first day of every week (Monday) or month the span touches."""
        result: list[date] = []
        current = period_start(self.first, self.group)
        while current <= self.last:
            result.append(current)
            current = next_period(current, self.group)
        return result

    def as_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(), "group": self.group}


def period_start(day: date, group: str) -> date:
    if group == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def next_period(start: date, group: str) -> date:
    if group == "month":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=7)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{name}: a date YYYY-MM-DD") from None


def parse_span(first: str | None, last: str | None, group: str | None, *, today: date) -> Span:
    """`from`/`to` (local days, both included; default: the last 12 weeks up to today) and
    `group` (week, the default, or month)."""
    chosen = group or "week"
    if chosen not in GROUPS:
        raise Invalid(f"group: one of {', '.join(GROUPS)}")
    end = _day(last, "to") if last else today
    start = _day(first, "from") if first else end - timedelta(weeks=DEFAULT_WEEKS) + timedelta(1)
    if start > end:
        raise Invalid("from must not come after to")
    if (end - start).days > MAX_DAYS:
        raise Invalid("the period can be at most ten years")
    return Span(start, end, chosen)


def year_span(year: int) -> Span:
    return Span(date(year, 1, 1), date(year, 12, 31), "month")


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """A count of one metric with one set of dimensions over one period (or day)."""

    period: date
    metric: str
    dims: str  # canonical, as stored
    count: int

    @property
    def dimensions(self) -> dict[str, str]:
        return parse_dims(self.dims)

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "metric": self.metric,
            "dims": self.dimensions,
            "count": self.count,
        }


async def load_rows(session: AsyncSession, span: Span) -> list[Row]:
    """The counters of the span's days, summed per (week or month, metric, dims), in order."""
    found = await session.execute(
        select(StatCounter).where(
            col(StatCounter.day) >= span.first.isoformat(),
            col(StatCounter.day) <= span.last.isoformat(),
        )
    )
    sums: Counter[tuple[date, str, str]] = Counter()
    for counter in found.scalars():
        start = period_start(date.fromisoformat(counter.day), span.group)
        sums[(start, counter.metric, counter.dims)] += counter.count
    return [Row(p, m, d, n) for (p, m, d), n in sorted(sums.items()) if n]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _tally(rows: list[Row], metric: str, key: str) -> dict[str, int]:
    result: Counter[str] = Counter()
    for row in rows:
        if row.metric == metric:
            result[row.dimensions[key]] += row.count
    return dict(sorted(result.items(), key=lambda item: (-item[1], item[0])))


# ---------------------------------------------------------------- the figures


async def platform_names(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    found = await session.execute(
        select(col(Platform.id), col(Platform.name)).where(col(Platform.id).in_(ids))
    )
    return {platform_id: name for platform_id, name in found.all()}


def figures(rows: list[Row], span: Span, names: dict[str, str]) -> dict[str, Any]:
    """The figures of the statistics page and the report, from the rows of `load_rows`."""
    periods = span.periods()
    by_period: dict[date, Counter[str]] = {p: Counter() for p in periods}
    for row in rows:
        if row.metric == "contact":
            by_period.setdefault(row.period, Counter())[row.dimensions["channel"]] += row.count
    closed_rows = [r for r in rows if r.metric == "case_closed"]
    closed = sum(r.count for r in closed_rows)
    without_referral = sum(
        r.count
        for r in closed_rows
        if r.dimensions["outcome"] != "referred" and r.dimensions["referred"] != YES
    )
    eligible = sum(r.count for r in closed_rows if r.dimensions["takedown"] == YES)
    first_response = _tally(rows, "first_response", "minutes")
    return {
        **span.as_json(),
        "periods": [p.isoformat() for p in periods],
        "contacts": {
            "by_period": [
                {"period": p.isoformat(), **dict(sorted(c.items())), "total": sum(c.values())}
                for p, c in sorted(by_period.items())
            ],
            "by_channel": _tally(rows, "contact", "channel"),
            "total": sum(r.count for r in rows if r.metric == "contact"),
            "reopened": sum(r.count for r in rows if r.metric == "case_reopened"),
        },
        "cases": {
            "closed": closed,
            "by_category": _tally(rows, "case_closed", "category"),
            "by_outcome": _tally(rows, "case_closed", "outcome"),
            "by_channel": _tally(rows, "case_closed", "channel"),
            "risk_flags": _tally(rows, "case_risk", "flag"),
            "first_response_minutes": {
                label: first_response.get(label, 0) for label in MINUTE_LABELS
            },
            "helped_without_referral": {
                "cases": without_referral,
                "share": _share(without_referral, closed),
            },
            "takedown_eligible": {"cases": eligible, "share": _share(eligible, closed)},
            "reclosed": sum(r.count for r in rows if r.metric == "case_reclosed"),
        },
        "notices": _notices(rows, names),
        "handovers": _handovers(rows),
    }


def _notices(rows: list[Row], names: dict[str, str]) -> dict[str, Any]:
    """Per platform: notices sent, decisions (a revision moves a notice from its earlier
    outcome to the new one, in the period it happened), honour rate and time to removal."""
    sent: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    hours: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        dims = row.dimensions
        if row.metric == "notice_sent":
            sent[dims["platform"]] += row.count
        elif row.metric in ("notice_decided", "notice_revised"):
            platform, outcome = dims["platform"], dims["outcome"]
            outcomes[platform][outcome] += row.count
            previous = dims.get("previous")
            if previous is not None:
                outcomes[platform][previous] -= row.count
            # one time to removal per notice: its first decision that removed content
            if outcome in REMOVED and (previous is None or previous not in REMOVED):
                hours[platform][dims["hours"]] += row.count
    platforms = sorted(
        set(sent) | set(outcomes), key=lambda p: (names.get(p) or p).lower() + "\0" + p
    )
    result: list[dict[str, Any]] = []
    for platform in platforms:
        decided = {o: max(outcomes[platform][o], 0) for o in sorted(NOTICE_OUTCOMES)}
        concluded = sum(decided[o] for o in CONCLUDED)
        removal = {label: hours[platform][label] for label in HOUR_LABELS}
        removed = sum(removal.values())
        result.append(
            {
                "platform": platform,
                "name": names.get(platform, platform),
                "sent": sent[platform],
                "outcomes": decided,
                "concluded": concluded,
                "honour_rate": _share(decided["honoured"], concluded),
                "removal_hours": removal,
                "removed": removed,
                "removed_within_24h": _share(sum(removal[b] for b in WITHIN_24H), removed),
            }
        )
    total_decided: Counter[str] = Counter()
    total_hours: Counter[str] = Counter()
    for entry in result:
        total_decided.update(dict(entry["outcomes"]))
        total_hours.update(dict(entry["removal_hours"]))
    concluded = sum(total_decided[o] for o in CONCLUDED)
    removed = sum(total_hours.values())
    return {
        "sent": sum(sent.values()),
        "by_category": _tally(rows, "notice_sent", "category"),
        "outcomes": {o: total_decided[o] for o in sorted(NOTICE_OUTCOMES)},
        "honour_rate": _share(total_decided["honoured"], concluded),
        "removal_hours": {label: total_hours[label] for label in HOUR_LABELS},
        "removed_within_24h": _share(sum(total_hours[b] for b in WITHIN_24H), removed),
        "by_platform": result,
    }


def _handovers(rows: list[Row]) -> dict[str, Any]:
    """Per partner kind: how many handovers reached each status (each transition counts)."""
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.metric == "handover":
            dims = row.dimensions
            kinds[dims["partner_kind"]][dims["status"]] += row.count
    return {
        "by_partner_kind": {
            kind: dict(sorted(statuses.items())) for kind, statuses in sorted(kinds.items())
        },
        "delivered_by_partner_kind": {
            kind: statuses["delivered"] for kind, statuses in sorted(kinds.items())
        },
    }


async def stats_figures(session: AsyncSession, span: Span) -> tuple[list[Row], dict[str, Any]]:
    rows = await load_rows(session, span)
    ids = {r.dimensions["platform"] for r in rows if r.metric.startswith("notice_")}
    return rows, figures(rows, span, await platform_names(session, ids))
