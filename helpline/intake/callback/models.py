"""The callback table. The phone number and the code word are encrypted under the case key
and deleted (the columns set to NULL, the row rewritten) once the request is done: after the
victim was reached, on a wrong number, when every window has passed, when the victim
withdraws it or the case is closed. The windows and the safety instructions stay: they say
nothing about who the victim is, and the queue and the timeline need them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary, Text
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class CallbackState(StrEnum):
    pending = "pending"  # waiting for its window, or for staff to reach the victim
    reached = "reached"  # staff spoke with the victim
    wrong_number = "wrong_number"  # someone else answered, or the number does not work
    expired = "expired"  # every window passed without reaching the victim
    cancelled = "cancelled"  # the victim withdrew it, the case was closed, or it was kept too long


class AttemptOutcome(StrEnum):
    """How one call went (`POST …/callback/attempts`)."""

    reached = "reached"
    no_answer = "no_answer"
    voicemail = "voicemail"  # a voicemail was left
    wrong_number = "wrong_number"


# outcomes after which the number is no longer needed, and the state they lead to
FINISHING = {
    AttemptOutcome.reached: CallbackState.reached,
    AttemptOutcome.wrong_number: CallbackState.wrong_number,
}


class CallbackRequest(SQLModel, table=True):
    __tablename__ = "callback_requests"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    state: str = Field(default=CallbackState.pending.value, max_length=16, index=True)
    source: str = Field(max_length=8)  # `start` (the start page) or `chat` (inside a chat)
    # [[start, end], ...] in UTC, ISO 8601, sorted; the victim's preferred times to be called
    windows: str = Field(sa_column=Column(Text, nullable=False))
    first_window_start: datetime = Field(sa_column=utc_column())
    last_window_end: datetime = Field(sa_column=utc_column(index=True))
    urgent: bool = False
    voicemail_safe: bool = False
    may_say_name: bool = False
    # encrypted (case key; associated data: callback_requests/<id>/<field>); NULL once deleted
    phone: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    code_word: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    attempts: int = 0
    # the consoles were told that the case joined the queue (at its first window, or at once)
    announced: bool = False
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    contact_deleted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
