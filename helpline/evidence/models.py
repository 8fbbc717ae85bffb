"""Evidence tables. File contents live encrypted in the vault (blobs under the data directory);
a row holds what describes them. File names and source URLs are victim-provided: encrypted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import LargeBinary, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column


class ItemKind(StrEnum):
    file = "file"  # an uploaded file, stored in the vault
    url = "url"  # a URL, with a snapshot of what it served (or only the URL)
    hash_only = "hash_only"  # an image known by its hashes alone; no image is kept


class ItemStatus(StrEnum):
    stored = "stored"  # the content is in the vault
    recorded = "recorded"  # nothing is stored by design (a URL only, hashes only)
    destroyed = "destroyed"  # the content was destroyed (possible minor, deletion)


class EvidenceItem(SQLModel, table=True):
    __tablename__ = "evidence_items"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="cases.id", ondelete="CASCADE", max_length=32, index=True)
    kind: str = Field(max_length=16)
    status: str = Field(max_length=16)
    media_type: str | None = Field(default=None, max_length=100)  # sniffed, never claimed
    size: int | None = None
    sha256: str | None = Field(default=None, max_length=64, index=True)
    pdq: str | None = Field(default=None, max_length=64)  # 64 hex characters
    pdq_quality: int | None = None
    blob_name: str | None = Field(default=None, max_length=64)  # random, never a content hash
    filename: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    source_url: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # a URL snapshot's final URL, status, response headers and time, as JSON: encrypted
    snapshot: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    possible_minor: bool = False
    captured_at: datetime = Field(sa_column=utc_column())
    captured_by: str = Field(max_length=64)  # victim, staff:<id>, email
    channel: str = Field(max_length=16)  # chat, console, email
    destroyed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class CustodyEntry(SQLModel, table=True):
    """One event in an item's chain of custody: hash-chained to the item's previous entry and
    signed with the service's Ed25519 key."""

    __tablename__ = "evidence_custody"
    __table_args__ = (UniqueConstraint("item_id", "seq"),)

    id: str = Field(primary_key=True, max_length=32)
    item_id: str = Field(
        foreign_key="evidence_items.id", ondelete="CASCADE", max_length=32, index=True
    )
    seq: int
    at: datetime = Field(sa_column=utc_column())
    actor: str = Field(max_length=64)
    event: str = Field(max_length=32)  # captured, previewed, revealed, exported, noticed, ...
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    kid: str = Field(max_length=32)
    signature: str = Field(max_length=128)
