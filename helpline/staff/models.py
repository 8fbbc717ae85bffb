"""Staff tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

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
    created_at: datetime = Field(sa_column=utc_column())
