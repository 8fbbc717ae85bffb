"""Case tables. Everything a victim writes is encrypted under the case's data key."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class Channel(StrEnum):
    chat = "chat"
    email = "email"
    callback = "callback"


class CaseStatus(StrEnum):
    waiting = "waiting"  # nobody has picked it up yet
    active = "active"  # a staff member claimed it
    ended = "ended"


class Sender(StrEnum):
    victim = "victim"
    staff = "staff"
    system = "system"


class Case(SQLModel, table=True):
    __tablename__ = "cases"

    id: str = Field(primary_key=True, max_length=32)
    reference: str = Field(max_length=16, unique=True)  # shown to the victim, e.g. 7K3Q-M9PX
    channel: str = Field(max_length=16, index=True)
    status: str = Field(default=CaseStatus.waiting.value, max_length=16, index=True)
    language: str = Field(default="nl", max_length=8)
    topic: str | None = Field(default=None, max_length=40)  # what the victim picked, optional
    # possibly depicts a minor: files are not stored, URLs not fetched (see DOMAIN.md)
    possible_minor: bool = False
    passphrase_hash: str | None = Field(default=None, max_length=200)  # Argon2id
    assigned_staff_id: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    last_seq: int = 0  # sequence number of the newest message
    victim_read_seq: int = 0  # newest message the victim has seen
    staff_read_seq: int = 0  # newest message staff have seen
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column(index=True))
    queued_at: datetime = Field(sa_column=utc_column(index=True))  # joined (or rejoined) the queue
    claimed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_activity_at: datetime = Field(sa_column=utc_column())
    ended_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("case_id", "seq"),
        UniqueConstraint("case_id", "client_id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    seq: int
    client_id: str = Field(max_length=64)  # the sender's id for the message, for de-duplication
    sender: str = Field(max_length=16)
    staff_id: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # encrypted
    created_at: datetime = Field(sa_column=utc_column())


class VictimSession(SQLModel, table=True):
    """A victim's access to their case from one browser tab; the token itself lives only in
    that tab's sessionStorage, the database keeps its hash."""

    __tablename__ = "victim_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
