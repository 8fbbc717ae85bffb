"""Takedown tables.

A notice outlives the case it came from: `notices.case_id` is set to NULL when the case is
deleted, and everything a notice holds that could say something about the victim (the URLs,
the explanation, the free-text ground, the signed document as sent) is encrypted under the
notice's own key scope `notice:<id>` (`notice_scope`), not the case key. Shredding the case
leaves the notice readable until its own retention ends; shredding `notice:<id>` ends it.

Tables:

- `platforms` — the directory: DSA point of contact, how notices are delivered, SLA, our
  trusted-flagger reference with them, the hash of their API key.
- `notices` — one removal request to one platform (many per case).
- `notice_urls` — the exact URLs of a notice, each with its own status and the platform's
  statement of reasons (DSA art. 17 / Transparency Database fields).
- `notice_items` — evidence items chosen for a notice, by hash (SHA-256, PDQ): copies of the
  hashes, so the notice keeps them when the case (and its evidence) is gone.
- `notice_history` — append-only: every status change of a notice or of one of its URLs.
- `notice_tokens` — platform portal links (the token's SHA-256 only).
- `notice_escalations` — the ladder drafted past the deadline, for staff to approve.
- `notice_replies` — what came back from the platform as text (an e-mail reply, a question
  from the portal), shown to staff to confirm.
- `notice_approval_rules` — four-eyes approval per category, set by a supervisor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from helpline.core.db import utc_column
from helpline.takedown.states import NoticeStatus


def notice_scope(notice_id: str) -> str:
    """The key scope of one notice's encrypted values (see the module docstring)."""
    return f"notice:{notice_id}"


class Platform(SQLModel, table=True):
    """A hosting provider we send notices to. Nothing here is personal data: addresses are the
    platform's DSA point of contact and escalation contact."""

    __tablename__ = "platforms"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    slug: str = Field(max_length=60, unique=True)
    contact_email: str | None = Field(default=None, max_length=254)  # DSA point of contact
    delivery: str = Field(max_length=16)  # states.Delivery: email | api | web_form
    endpoint_url: str | None = Field(default=None, max_length=500)  # api: HTTPS POST target
    web_form_url: str | None = Field(default=None, max_length=500)  # web_form: where to paste
    languages: str = Field(default="en", max_length=40)  # comma-separated, preferred first
    escalation_email: str | None = Field(default=None, max_length=254)
    complaint_email: str | None = Field(default=None, max_length=254)  # art. 20 complaints
    sla_hours: int = 24  # the directory fills in settings.sla_notice_hours
    flagger_reference: str | None = Field(default=None, max_length=120)  # our id with them
    api_key_hash: str | None = Field(default=None, max_length=64, unique=True)  # SHA-256 hex
    api_key_prefix: str | None = Field(default=None, max_length=16)  # shown to tell keys apart
    active: bool = True
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class Notice(SQLModel, table=True):
    """A removal request to one platform. `reference` is public (e.g. `N-7K3Q-M9PX`, Crockford
    base32): it goes in the notice, the e-mail subject and the platform's answers.

    The signed document: `document` is the canonical JSON exactly as delivered (encrypted),
    `html` the readable page/e-mail body exactly as delivered (encrypted); each has a
    detached Ed25519 signature (base64url) by key `kid`. `document_sha256` lets figures and
    platforms refer to the document without decrypting it."""

    __tablename__ = "notices"

    id: str = Field(primary_key=True, max_length=32)
    reference: str = Field(max_length=16, unique=True)
    case_id: str | None = Field(
        default=None, foreign_key="cases.id", ondelete="SET NULL", max_length=32, index=True
    )
    platform_id: str = Field(foreign_key="platforms.id", max_length=32, index=True)
    language: str = Field(default="en", max_length=8)
    # triage category (helpline.triage.vocabulary) and the Transparency Database codes
    category: str = Field(max_length=40, index=True)
    dsa_category: str | None = Field(default=None, max_length=80)
    dsa_keywords: str = Field(default="", max_length=300)  # comma-separated KEYWORD_* codes
    legal_basis: str = Field(max_length=40)  # a code of helpline.takedown.builder.LEGAL_BASES
    ground: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    explanation: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # DSA art. 16(2)(c): the notifier's name and e-mail may be left out for child sexual abuse
    notifier_included: bool = True
    status: str = Field(default=NoticeStatus.draft.value, max_length=24, index=True)
    delivery: str = Field(max_length=16)  # the platform's delivery when the notice was queued
    # four eyes
    approval_required: bool = False
    approved_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    approved_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    created_at: datetime = Field(sa_column=utc_column(index=True))
    updated_at: datetime = Field(sa_column=utc_column())
    # the clock
    queued_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))
    due_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))
    receipt_confirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    decided_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    reminded_before_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    reminded_after_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # the document as sent (see the class docstring)
    document: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    document_sha256: str | None = Field(default=None, max_length=64)
    signature: str | None = Field(default=None, max_length=128)
    html: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    html_signature: str | None = Field(default=None, max_length=128)
    kid: str | None = Field(default=None, max_length=32)
    idempotency_key: str = Field(max_length=80, unique=True)  # sent as `Idempotency-Key`
    outbox_id: str | None = Field(default=None, max_length=32)
    reply_token_hash: str | None = Field(default=None, max_length=64, unique=True)  # e-mail replies


class NoticeUrl(SQLModel, table=True):
    """One exact URL of a notice, with its own status and the platform's statement of reasons
    (DSA art. 17; the Transparency Database's field names and codes)."""

    __tablename__ = "notice_urls"
    __table_args__ = (UniqueConstraint("notice_id", "position"),)

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    position: int  # 1, 2, ... in the notice
    url: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # encrypted (notice key)
    evidence_item_id: str | None = Field(
        default=None, foreign_key="evidence_items.id", ondelete="SET NULL", max_length=32
    )
    content_type: str | None = Field(default=None, max_length=40)  # CONTENT_TYPE_IMAGE, ...
    status: str = Field(default=NoticeStatus.draft.value, max_length=24, index=True)
    # the platform's answer (statement of reasons)
    decision_visibility: str | None = Field(default=None, max_length=60)
    decision_account: str | None = Field(default=None, max_length=60)
    decision_ground: str | None = Field(default=None, max_length=60)
    legal_ground: str | None = Field(default=None, max_length=500)  # legal or contractual
    explanation: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    automated_decision: str | None = Field(default=None, max_length=40)
    territorial_scope: str | None = Field(default=None, max_length=400)  # comma-separated codes
    puid: str | None = Field(default=None, max_length=500)  # the platform's unique id
    answered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    answered_via: str | None = Field(default=None, max_length=16)  # states.AnswerVia
    # the optional re-check (helpline.evidence.snapshot's safe fetcher)
    recheck_status: int | None = None  # HTTP status; 404/410 is offered as evidence of removal
    recheck_error: str | None = Field(default=None, max_length=40)  # why no status (a code)
    rechecked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column())


class NoticeItem(SQLModel, table=True):
    """An evidence item chosen for a notice, by its hashes (copied: they outlive the case).
    `share_hashes` puts them in the notice so the platform can block re-uploads (PDQ).
    `attach_redacted` (images only, never on a possible-minor case or item): when the notice
    is queued, a blurred, re-encoded, metadata-free JPEG copy is stored in `redacted`
    (encrypted under the notice key, so it outlives the case) and its SHA-256 is signed."""

    __tablename__ = "notice_items"
    __table_args__ = (UniqueConstraint("notice_id", "position"),)

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    position: int
    evidence_item_id: str | None = Field(
        default=None, foreign_key="evidence_items.id", ondelete="SET NULL", max_length=32
    )
    media_type: str | None = Field(default=None, max_length=100)
    sha256: str | None = Field(default=None, max_length=64)
    pdq: str | None = Field(default=None, max_length=64)
    pdq_quality: int | None = None
    share_hashes: bool = True
    attach_redacted: bool = False
    redacted: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    redacted_sha256: str | None = Field(default=None, max_length=64)
    redacted_media_type: str | None = Field(default=None, max_length=40)


class NoticeHistory(SQLModel, table=True):
    """One transition of a notice (`url_id` None) or of one of its URLs, or an event on it
    (from = to, `details.event`: a reminder, a failed delivery, an escalation step).
    Append-only: rows are inserted, never updated; `seq` orders them per notice. `details` is
    JSON of codes and ids only, no personal data."""

    __tablename__ = "notice_history"
    __table_args__ = (UniqueConstraint("notice_id", "seq"),)

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    # 1, 2, ... per notice (state.py sets it): the order of rows that share a moment
    seq: int | None = None
    url_id: str | None = Field(
        default=None, foreign_key="notice_urls.id", ondelete="CASCADE", max_length=32
    )
    at: datetime = Field(sa_column=utc_column(index=True))
    actor: str = Field(max_length=64)  # staff:<id>, platform:<id>, system
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str = Field(max_length=24)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class NoticeToken(SQLModel, table=True):
    """A platform portal link for one notice: only the token's SHA-256 is stored."""

    __tablename__ = "notice_tokens"

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class NoticeEscalation(SQLModel, table=True):
    """One step of the escalation ladder (states.EscalationStep), drafted by the SLA clock or
    by staff, sent only when staff approve it. `body` (the drafted text, or the complaint
    dossier as JSON for the Digital Services Coordinator) is encrypted under the notice key."""

    __tablename__ = "notice_escalations"
    __table_args__ = (UniqueConstraint("notice_id", "step"),)

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    step: str = Field(max_length=32)
    status: str = Field(max_length=16, index=True)  # states.EscalationStatus
    recipient: str | None = Field(default=None, max_length=254)  # platform address, if e-mail
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    drafted_at: datetime = Field(sa_column=utc_column())
    drafted_by: str = Field(max_length=64)  # system (the clock) or staff:<id>
    decided_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    decided_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    outbox_id: str | None = Field(default=None, max_length=32)


class NoticeReply(SQLModel, table=True):
    """Text that came back from a platform about a notice (an e-mail reply threaded by the
    reply token, a question from the portal or API), encrypted under the notice key; staff
    confirm what it means (`confirmed_by`)."""

    __tablename__ = "notice_replies"

    id: str = Field(primary_key=True, max_length=32)
    notice_id: str = Field(foreign_key="notices.id", ondelete="CASCADE", max_length=32, index=True)
    url_id: str | None = Field(
        default=None, foreign_key="notice_urls.id", ondelete="CASCADE", max_length=32
    )
    via: str = Field(max_length=16)  # states.AnswerVia
    kind: str = Field(max_length=16)  # reply | question
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    received_at: datetime = Field(sa_column=utc_column(index=True))
    confirmed_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    confirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ApprovalRule(SQLModel, table=True):
    """Four eyes for a category: its notices wait for a second staff member's approval. A
    category without a row needs none. Set by a supervisor; every change is audited."""

    __tablename__ = "notice_approval_rules"

    category: str = Field(primary_key=True, max_length=40)
    four_eyes: bool = True
    updated_by: str | None = Field(default=None, foreign_key="staff.id", max_length=32)
    updated_at: datetime = Field(sa_column=utc_column())
