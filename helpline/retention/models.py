"""Retention tables (issue 9).

- `legal_holds` — a supervisor's hold on one case: the purge skips the case (and everything of
  it: messages, evidence, notices, handovers, callbacks) until the hold is lifted. The reason is
  encrypted under the case key (it may name the case's circumstances). Lifting deletes the row;
  both are audited.
- `purge_runs` — one row per run of the purge: when, what it removed (counts per kind), how it
  ended. No personal data and no ids of what was removed: a run says "3 cases, 41 messages,
  7 blobs", never which.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, Text
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class LegalHold(SQLModel, table=True):
    __tablename__ = "legal_holds"

    case_id: str = Field(primary_key=True, foreign_key="cases.id", max_length=32)
    reason: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # encrypted, case key
    placed_by: str = Field(foreign_key="staff.id", max_length=32)
    placed_at: datetime = Field(sa_column=utc_column())


class PurgeRun(SQLModel, table=True):
    __tablename__ = "purge_runs"

    id: str = Field(primary_key=True, max_length=32)
    started_at: datetime = Field(sa_column=utc_column(index=True))
    finished_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    trigger: str = Field(max_length=16)  # schedule | cli | staff
    dry_run: bool = False
    status: str = Field(default="running", max_length=16)  # running | done | failed
    counts: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON kind -> n
    error: str | None = Field(default=None, max_length=200)  # a code, never data
