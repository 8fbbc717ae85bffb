"""Opening hours: `mo-fr 09:00-21:00; sa 12:00-17:00` in the helpline's time zone."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ["mo", "tu", "we", "th", "fr", "sa", "su"]
_PART = re.compile(r"^([a-z]{2})(?:-([a-z]{2}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Span:
    day: int  # 0 = Monday
    start: time
    end: time


@dataclass(frozen=True)
class OpeningHours:
    spans: tuple[Span, ...]
    zone: ZoneInfo

    @classmethod
    @functools.cache  # the setting is parsed once, not on every queue update
    def parse(cls, text: str, timezone: str) -> OpeningHours:
        """Parse the setting; raises ValueError saying what is wrong."""
        spans: list[Span] = []
        for part in filter(None, (p.strip().lower() for p in text.split(";"))):
            match = _PART.match(part)
            if not match:
                raise ValueError(f"{part!r} is not like 'mo-fr 09:00-21:00'")
            first, last, h1, m1, h2, m2 = match.groups()
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"{part!r}: days are {', '.join(DAYS)}")
            start, end = time(int(h1), int(m1)), time(int(h2) % 24, int(m2))
            if end <= start and not (int(h2) == 24 and int(m2) == 0):
                raise ValueError(f"{part!r}: the end must be after the start")
            a, b = DAYS.index(first), DAYS.index(last or first)
            for day in range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]:
                spans.append(Span(day, start, end if int(h2) < 24 else time.max))
        return cls(tuple(spans), ZoneInfo(timezone))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        return any(s.day == local.weekday() and s.start <= local.time() < s.end for s in self.spans)

    def next_opening(self, now: datetime) -> datetime | None:
        """When staff are next back (None if always open or never open)."""
        if not self.spans or self.is_open(now):
            return None
        local = now.astimezone(self.zone)
        for days_ahead in range(8):
            day = (local + timedelta(days=days_ahead)).date()
            starts = sorted(
                datetime.combine(day, s.start, self.zone)
                for s in self.spans
                if s.day == day.weekday()
            )
            for start in starts:
                if start > local:
                    return start
        return None
