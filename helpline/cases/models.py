"""Case tables. Everything a victim writes is encrypted under the case's data key."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class Channel(StrEnum):
    chat = "chat"
    email = "email"
    callback = "callback"


class CaseStatus(StrEnum):
    """Where a case stands. Everything but `closed` is open and in the console's queue; a case
    nobody has (`assigned_staff_id` empty) waits to be claimed."""

    new = "new"  # in the queue, nobody has picked it up (again) yet
    in_conversation = "in_conversation"  # a staff member claimed it
    waiting_victim = "waiting_victim"  # staff wait for the victim (a reply, a file)
    waiting_platform = "waiting_platform"  # a removal request is out
    handed_over = "handed_over"  # with a partner organisation
    closed = "closed"  # with an outcome

    @property
    def is_open(self) -> bool:
        return self is not CaseStatus.closed

    @property
    def victim_view(self) -> str:
        """What the victim's chat is told: `waiting` (in the queue), `active` or `ended`."""
        if self is CaseStatus.new:
            return "waiting"
        return "ended" if self is CaseStatus.closed else "active"


OPEN_STATUSES = tuple(s.value for s in CaseStatus if s.is_open)


class Outcome(StrEnum):
    """How a case was closed; feeds the statistics."""

    advice_only = "advice_only"
    removal_requested = "removal_requested"
    referred = "referred"
    no_action = "no_action"
    no_contact = "no_contact"


class Sender(StrEnum):
    victim = "victim"
    staff = "staff"
    system = "system"


class Case(SQLModel, table=True):
    __tablename__ = "cases"

    id: str = Field(primary_key=True, max_length=32)
    reference: str = Field(max_length=16, unique=True)  # shown to the victim, e.g. 7K3Q-M9PX
    channel: str = Field(max_length=16, index=True)
    status: str = Field(default=CaseStatus.new.value, max_length=24, index=True)
    language: str = Field(default="nl", max_length=8)
    topic: str | None = Field(default=None, max_length=40)  # what the victim picked, optional
    # triage (helpline/triage): set by staff, the victim's topic as a first guess
    category: str | None = Field(default=None, max_length=40)
    risk_flags: str = Field(default="", max_length=200)  # sorted, comma-separated
    priority: int = Field(default=3, index=True)  # effective: 1 urgent .. 4 low
    priority_override: int | None = None  # set by staff with a reason (see case_events)
    outcome: str | None = Field(default=None, max_length=24)  # set when closed
    # service levels: when staff first wrote, and since when a victim's message waits for an
    # answer (None: nothing unanswered); kept up to date by `post_message`
    first_response_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    awaiting_since: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # a transfer note the next staff member to open the case sees first (case_events.id)
    handover_event_id: str | None = Field(default=None, max_length=32)
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


class CaseEvent(SQLModel, table=True):
    """One entry of a case's timeline besides messages, notes and evidence: a claim, a status,
    category, flag, priority or assignment change, a transfer. `details` holds only values
    (statuses, codes, staff ids) as JSON; anything staff wrote (a reason, a handover note) is
    in `text`, encrypted under the case key."""

    __tablename__ = "case_events"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    at: datetime = Field(sa_column=utc_column())
    actor: str = Field(max_length=64)  # staff:<id>, victim, system
    kind: str = Field(max_length=32)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    text: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class CaseNote(SQLModel, table=True):
    """A private note by staff on a case. Never shown to the victim: it is not a message and
    no victim endpoint reads this table."""

    __tablename__ = "case_notes"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    staff_id: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # encrypted
    created_at: datetime = Field(sa_column=utc_column())
