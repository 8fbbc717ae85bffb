"""The anonymous counters (issue 9).

One row per (day, metric, dimensions): `count` is how often the event happened that day with
those dimensions. Dimensions are a few codes from closed vocabularies (channel, category, risk
flag, outcome, platform id, partner kind, a bucket of minutes or hours) — never an id of a
case, message, notice or person, never free text. A counter is incremented in the same
transaction as the event it counts, so it survives the purge of the case and cannot be
recomputed from it (helpline.stats.counters).
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class StatCounter(SQLModel, table=True):
    __tablename__ = "stat_counters"

    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD in the helpline's time zone
    metric: str = Field(primary_key=True, max_length=40)
    dims: str = Field(primary_key=True, max_length=200)  # canonical "k=v;k=v", keys sorted
    count: int = 0
