"""E-mail tables. Everything a victim wrote or that names them (their address, the subject,
their Message-IDs) is encrypted under the case key; reply tokens are stored only as hashes;
nothing about the connection a mail came in on (address, HELO name, Received headers) is
stored at all."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class EmailThread(SQLModel, table=True):
    """The e-mail side of a case: where replies go and what they thread onto."""

    __tablename__ = "email_threads"

    case_id: str = Field(
        primary_key=True, foreign_key="cases.id", ondelete="CASCADE", max_length=32
    )
    # the victim's address, encrypted; None when the mail named no usable sender
    address: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    subject: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # the victim's Message-IDs, newest last, as JSON (for In-Reply-To / References): encrypted
    reference_ids: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class EmailToken(SQLModel, table=True):
    """A reply token we sent (in the Reply-To address and the Message-ID): its SHA-256 only."""

    __tablename__ = "email_tokens"

    token_hash: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    outgoing_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_column=utc_column())


class EmailReceived(SQLModel, table=True):
    """A mail that was turned into a case message, by a keyed hash of its Message-ID (or of
    its bytes): a re-delivered mail is recognised and not stored twice."""

    __tablename__ = "email_received"

    message_key: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    received_at: datetime = Field(sa_column=utc_column())


class OutgoingStatus(StrEnum):
    queued = "queued"  # in the outbox
    retrying = "retrying"  # a temporary failure; the outbox tries again
    sent = "sent"  # the relay accepted it
    failed = "failed"  # refused for good (5xx), retries exhausted, or bounced later


class EmailOutgoing(SQLModel, table=True):
    """One mail to a victim and how its delivery went. `last_error` holds SMTP codes only
    (the relay's text may quote the address: it goes, encrypted, into the case event)."""

    __tablename__ = "email_outgoing"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    message_id: str | None = Field(default=None, max_length=32)  # messages.id of its text
    automatic: bool = False  # an acknowledgement, not written by a person
    status: str = Field(default=OutgoingStatus.queued.value, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class QuarantineReason(StrEnum):
    malformed = "malformed"  # MIME, base64, headers or charsets that cannot be read faithfully
    absurd_headers = "absurd_headers"  # too many, too long, not text
    attachment_limit = "attachment_limit"  # too many or too large attachments
    loop = "loop"  # a bounce, an automatic reply, our own mail
    error = "error"  # processing failed unexpectedly


class QuarantinedEmail(SQLModel, table=True):
    """A mail that did not become (part of) a case, kept so that it is not lost. The raw mail
    (trace headers removed), its envelope and a summary are encrypted under a system key."""

    __tablename__ = "email_quarantine"

    id: str = Field(primary_key=True, max_length=32)
    received_at: datetime = Field(sa_column=utc_column(index=True))
    reason: str = Field(max_length=32)
    detail: str = Field(default="", max_length=200)  # codes and defect names, no content
    size: int
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    summary: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
