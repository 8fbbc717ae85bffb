"""Tables of the core: data keys, signing keys, outbox, audit log, scheduled jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, Text
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class DataKey(SQLModel, table=True):
    """A data key (DEK), wrapped by a master key. Scope `case:<id>` for a case's data, or a
    system scope. Deleting the row crypto-shreds everything encrypted under it."""

    __tablename__ = "data_keys"

    scope: str = Field(primary_key=True, max_length=80)
    kek_id: str = Field(max_length=32, index=True)
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=utc_column())


class SigningKey(SQLModel, table=True):
    """An Ed25519 key that signs notices, custody entries and manifests. The private half is
    encrypted under the master key; `slot = "current"` marks the one in use (unique)."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=32)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    wrapped_private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_id: str = Field(max_length=32, index=True)
    slot: str | None = Field(default=None, max_length=16, unique=True)
    created_at: datetime = Field(sa_column=utc_column())
    retired_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class OutboxEntry(SQLModel, table=True):
    """An outbound side effect, written in the caller's transaction and delivered later."""

    __tablename__ = "outbox"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=64, index=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    key_scope: str = Field(max_length=80, index=True)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=utc_column(index=True))
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class AuditEntry(SQLModel, table=True):
    """One line of the append-only audit log; `hash` chains it to the line before."""

    __tablename__ = "audit_log"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_column=utc_column(index=True))
    actor: str = Field(max_length=80)
    action: str = Field(max_length=80, index=True)
    target: str | None = Field(default=None, max_length=200)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The newest line of the audit log. Writers update this row first, which serialises them
    on both databases, so the chain never forks."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = 0
    hash: str = Field(max_length=64)


class ScheduledJob(SQLModel, table=True):
    """The state of one periodic job; the lease lets one instance at a time run it."""

    __tablename__ = "scheduled_jobs"

    name: str = Field(primary_key=True, max_length=80)
    next_run_at: datetime = Field(sa_column=utc_column())
    last_run_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_status: str | None = Field(default=None, max_length=16)
    runs: int = 0
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
