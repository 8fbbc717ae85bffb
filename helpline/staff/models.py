"""Staff tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class Role(StrEnum):
    """What a staff member may do; each role includes the ones before it."""

    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


class Staff(SQLModel, table=True):
    __tablename__ = "staff"

    id: str = Field(primary_key=True, max_length=32)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(max_length=120)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=16)
    disabled: bool = False
    # the TOTP secret, encrypted under the staff member's own data key (scope staff:<id>)
    totp_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    totp_enabled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    totp_last_step: int = 0  # the last 30-second step used: a code works once
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_login_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())


class LoginStage(StrEnum):
    totp = "totp"  # password checked, waiting for the TOTP code
    enrol = "enrol"  # password checked, no TOTP yet: may only enrol
    done = "done"  # fully logged in


class StaffSession(SQLModel, table=True):
    """A staff login. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "staff_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    staff_id: str = Field(foreign_key="staff.id", ondelete="CASCADE", max_length=32, index=True)
    stage: str = Field(max_length=8)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=utc_column())
    last_seen_at: datetime = Field(sa_column=utc_column())
