"""Handover tables (issue 8; the design: docs/api/handover.md).

A handover's own content (the summary staff wrote for the partner, the contact details the
victim added, the consent text exactly as shown) is encrypted under the handover's key scope
`handover:<id>` (`handover_scope`), and so is the sealed packet in the vault. Shredding that
scope ends the handover; shredding the case does too, because the purge shreds both.

Tables:

- `partners` — the directory: who, what kind, how to reach them, their **age** recipient
  (X25519 public key, `age1…`) and when an admin confirmed its fingerprint out of band.
- `handovers` — one proposal to one partner: exactly which parts and evidence items.
- `handover_consents` — every answer to a proposal: the text shown, the scope it covers (as
  canonical JSON and its SHA-256), the method, who recorded it, the second person who
  confirmed a verbal/written one, withdrawal, expiry. Never updated except to confirm or
  withdraw.
- `handover_history` — append-only: every status change of a handover.
- `handover_links` — one-time download links (SHA-256 of the token only).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column
from helpline.handover.states import HandoverStatus


def handover_scope(handover_id: str) -> str:
    """The key scope of one handover's encrypted values and sealed packet."""
    return f"handover:{handover_id}"


class Partner(SQLModel, table=True):
    """An organisation we hand victims over to. Nothing here is a victim's data."""

    __tablename__ = "partners"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    kind: str = Field(max_length=32, index=True)  # states.PartnerKind
    contact_email: str | None = Field(default=None, max_length=254)  # where the link goes
    contact_phone: str | None = Field(default=None, max_length=40)  # the organisation's line
    website: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=500)  # shown to the victim
    languages: str = Field(default="nl", max_length=40)
    delivery: str = Field(default="download_link", max_length=24)  # states.PartnerDelivery
    age_recipient: str | None = Field(default=None, max_length=200)  # "age1…" (bech32)
    key_fingerprint: str | None = Field(default=None, max_length=64)  # SHA-256 hex of recipient
    key_imported_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    key_imported_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    key_confirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    key_confirmed_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    active: bool = True
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class Handover(SQLModel, table=True):
    """A proposed handover of one case to one partner, and what became of it.

    The proposal is `parts` (comma-separated `states.Part` values, in `PART_ORDER`),
    `evidence_ids` (comma-separated evidence item ids, sorted; empty unless `evidence` is a
    part), `contact_method` (when `contact` is a part) and `summary` (encrypted). A proposal
    is never edited: staff cancel it and propose again, so a consent always refers to one
    fixed proposal."""

    __tablename__ = "handovers"

    id: str = Field(primary_key=True, max_length=32)
    reference: str = Field(max_length=16, unique=True)  # public: H-XXXX-XXXX
    case_id: str | None = Field(
        default=None, foreign_key="cases.id", ondelete="SET NULL", max_length=32, index=True
    )
    partner_id: str = Field(foreign_key="partners.id", max_length=32, index=True)
    partner_kind: str = Field(max_length=32)  # copied: statistics outlive the directory entry
    language: str = Field(default="nl", max_length=8)  # of the consent text and the packet
    parts: str = Field(max_length=200)
    evidence_ids: str = Field(default="", sa_column=Column(Text, nullable=False))
    contact_method: str | None = Field(default=None, max_length=16)  # states.ContactMethod
    summary: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # filled when the victim adds contact details for this purpose (encrypted)
    contact_details: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )
    scope_sha256: str = Field(max_length=64)  # of the canonical proposal (service.scope_of)
    status: str = Field(default=HandoverStatus.proposed.value, max_length=16, index=True)
    approval_required: bool = False  # police
    approved_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    approved_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    consent_id: str | None = Field(default=None, max_length=32)  # the consent it relies on
    created_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    created_at: datetime = Field(sa_column=utc_column(index=True))
    updated_at: datetime = Field(sa_column=utc_column())
    # the packet
    blob_name: str | None = Field(default=None, max_length=64)  # in the vault (age, then vault)
    packet_size: int | None = None  # bytes of the .age file
    packet_sha256: str | None = Field(default=None, max_length=64)  # of the .age file
    manifest_sha256: str | None = Field(default=None, max_length=64)
    kid: str | None = Field(default=None, max_length=32)  # the key that signed the manifest
    recipient_fingerprint: str | None = Field(default=None, max_length=64)  # sealed to
    outbox_id: str | None = Field(default=None, max_length=32)
    sealed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    downloaded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    link_expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class HandoverConsent(SQLModel, table=True):
    """One answer to a proposal. `scope` is the canonical JSON of exactly what it covers
    (partner, parts, evidence ids, contact method — service.scope_of) and `scope_sha256` its
    hash; the packet builder refuses unless it equals the handover's. `text` is the
    plain-language text exactly as shown or read out (encrypted), `text_sha256` its hash."""

    __tablename__ = "handover_consents"

    id: str = Field(primary_key=True, max_length=32)
    handover_id: str = Field(
        foreign_key="handovers.id", ondelete="CASCADE", max_length=32, index=True
    )
    scope: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON, ids only
    scope_sha256: str = Field(max_length=64)
    text: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    text_sha256: str = Field(max_length=64)
    language: str = Field(max_length=8)
    method: str = Field(max_length=16)  # states.ConsentMethod
    decision: str = Field(max_length=16)  # states.ConsentDecision
    recorded_by: str = Field(max_length=64)  # victim | staff:<id>
    recorded_at: datetime = Field(sa_column=utc_column())
    # verbal/written: a second staff member confirms (never the one who recorded it)
    confirmed_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    confirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    expires_at: datetime = Field(sa_column=utc_column())
    withdrawn_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    withdrawn_by: str | None = Field(default=None, max_length=64)  # victim | staff:<id>


class HandoverHistory(SQLModel, table=True):
    """One transition of a handover. Append-only; `details` is JSON of codes and ids only."""

    __tablename__ = "handover_history"
    __table_args__ = (UniqueConstraint("handover_id", "seq"),)

    id: str = Field(primary_key=True, max_length=32)
    handover_id: str = Field(
        foreign_key="handovers.id", ondelete="CASCADE", max_length=32, index=True
    )
    seq: int
    at: datetime = Field(sa_column=utc_column(index=True))
    actor: str = Field(max_length=64)  # victim, staff:<id>, partner, system
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class HandoverLink(SQLModel, table=True):
    """A one-time download link for a sealed packet: only the token's SHA-256 is stored."""

    __tablename__ = "handover_links"

    id: str = Field(primary_key=True, max_length=32)
    handover_id: str = Field(
        foreign_key="handovers.id", ondelete="CASCADE", max_length=32, index=True
    )
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
