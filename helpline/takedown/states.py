"""The states of a notice and of each of its URLs, and which transitions are allowed.

One vocabulary serves both: a URL gets its own outcome (a platform may remove one URL and keep
another), and a notice's outcome follows from its URLs' (`notice_outcome`). Every transition
is written to `notice_history` (append-only) by `helpline.takedown.state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class NoticeStatus(StrEnum):
    draft = "draft"  # being written; nothing was sent
    awaiting_approval = "awaiting_approval"  # four eyes: a second staff member must approve
    queued = "queued"  # approved; in the outbox (or, for a web-form platform, for staff to paste)
    sent = "sent"  # delivered to the platform; the SLA clock runs from here
    receipt_confirmed = "receipt_confirmed"  # the platform confirmed receipt (DSA art. 16(4))
    honoured = "honoured"  # removed / access disabled
    partly_honoured = "partly_honoured"  # restricted (age, visibility) or some URLs only
    declined = "declined"  # the platform decided not to act
    more_info_requested = "more_info_requested"  # the platform asked a question
    no_response = "no_response"  # the deadline passed without a decision
    withdrawn = "withdrawn"  # staff withdrew it

    @property
    def is_open(self) -> bool:
        """Still waiting for the platform (or for us): counts for the clock and the ladder."""
        return self in OPEN

    @property
    def is_decided(self) -> bool:
        return self in DECIDED


S = NoticeStatus

# before delivery
PRE_DELIVERY = frozenset({S.draft, S.awaiting_approval, S.queued})
# delivered, no decision yet
OPEN = frozenset({S.sent, S.receipt_confirmed, S.more_info_requested, S.no_response})
# the platform decided
DECIDED = frozenset({S.honoured, S.partly_honoured, S.declined})

# from-status -> the statuses it may go to. A late decision still counts (no_response ->
# honoured); a decision can be revised after an art. 20 complaint (declined -> honoured).
TRANSITIONS: dict[NoticeStatus, frozenset[NoticeStatus]] = {
    S.draft: frozenset({S.awaiting_approval, S.queued, S.withdrawn}),
    S.awaiting_approval: frozenset({S.draft, S.queued, S.withdrawn}),
    S.queued: frozenset({S.sent, S.withdrawn}),
    S.sent: frozenset(
        {
            S.receipt_confirmed,
            S.honoured,
            S.partly_honoured,
            S.declined,
            S.more_info_requested,
            S.no_response,
            S.withdrawn,
        }
    ),
    S.receipt_confirmed: frozenset(
        {
            S.honoured,
            S.partly_honoured,
            S.declined,
            S.more_info_requested,
            S.no_response,
            S.withdrawn,
        }
    ),
    S.more_info_requested: frozenset(
        {
            S.sent,
            S.receipt_confirmed,
            S.honoured,
            S.partly_honoured,
            S.declined,
            S.no_response,
            S.withdrawn,
        }
    ),
    S.no_response: frozenset(
        {
            S.receipt_confirmed,
            S.honoured,
            S.partly_honoured,
            S.declined,
            S.more_info_requested,
            S.withdrawn,
        }
    ),
    S.partly_honoured: frozenset({S.honoured, S.declined}),
    S.declined: frozenset({S.honoured, S.partly_honoured}),
    S.honoured: frozenset(),
    S.withdrawn: frozenset(),
}


def can_move(from_status: str, to_status: str) -> bool:
    try:
        return NoticeStatus(to_status) in TRANSITIONS[NoticeStatus(from_status)]
    except ValueError:
        return False


def notice_outcome(url_statuses: Iterable[str]) -> NoticeStatus | None:
    """A notice's decision from its URLs' statuses, once every live URL is decided: all
    honoured → honoured; all declined → declined; any other mix of decisions → partly
    honoured. None while some URL still waits (or no URL is live)."""
    live = [NoticeStatus(s) for s in url_statuses if s != S.withdrawn]
    if not live or any(s not in DECIDED for s in live):
        return None
    if all(s is S.honoured for s in live):
        return S.honoured
    if all(s is S.declined for s in live):
        return S.declined
    return S.partly_honoured


class Delivery(StrEnum):
    email = "email"  # to the platform's DSA point of contact, with aiosmtplib
    api = "api"  # HTTPS POST of the signed JSON, with an Idempotency-Key
    web_form = "web_form"  # staff paste it into the platform's form


class AnswerVia(StrEnum):
    portal = "portal"
    api = "api"
    email = "email"
    staff = "staff"


class EscalationStep(StrEnum):
    """The ladder past the deadline (or after a decline), in order."""

    escalation_contact = "escalation_contact"  # the platform's escalation contact
    internal_complaint = "internal_complaint"  # DSA art. 20 internal complaint
    dsc_complaint = "dsc_complaint"  # complaint dossier for the Digital Services Coordinator (ACM)


LADDER: tuple[EscalationStep, ...] = tuple(EscalationStep)


class EscalationStatus(StrEnum):
    drafted = "drafted"  # written by the clock, waits for staff
    approved = "approved"  # staff approved; queued (e-mail) or handed to staff (dossier)
    dismissed = "dismissed"  # staff decided not to take this step
