"""Triage tables that are not part of one case."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class CannedResponse(SQLModel, table=True):
    """A prepared answer staff can insert into a conversation, with `{placeholders}`.
    Supervisors edit them; they hold no personal data, so they are not encrypted."""

    __tablename__ = "canned_responses"

    id: str = Field(primary_key=True, max_length=32)
    language: str = Field(max_length=8, index=True)
    title: str = Field(max_length=120)
    body: str = Field(sa_column=Column(Text, nullable=False))
    updated_by: str | None = Field(default=None, max_length=64)  # staff:<id>
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class SlaBreach(SQLModel, table=True):
    """A service-level target a case missed. One row per case, kind and deadline, so that
    several instances noticing the same breach count it once."""

    __tablename__ = "sla_breaches"
    __table_args__ = (UniqueConstraint("case_id", "kind", "due_at"),)

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    kind: str = Field(max_length=16)  # first_response, next_response
    priority: int
    due_at: datetime = Field(sa_column=utc_column())
    noticed_at: datetime = Field(sa_column=utc_column(index=True))
