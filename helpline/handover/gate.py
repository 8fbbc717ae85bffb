"""Default deny, in code: the only way to the packet builder.

`authorise(session, handover, now)` returns an `Authorised` only when the victim's consent
covers exactly this handover (docs/api/handover.md, "The rule, in code"); the packet builder
and the delivery take an `Authorised`, and `Authorised` cannot be made anywhere else (its
constructor checks a module-private token). Everything else raises `ConsentMissing` (409
`consent_required`) with a reason code, and nothing is built or sent.

`scope_of(handover, partner)` is the canonical description of what a handover shares: ids
and codes only. A consent stores it (and its hash) when it is given; at authorisation it is
recomputed from the handover as it is now and must be equal, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from helpline.core.clock import as_utc
from helpline.core.crypto import canonical_json
from helpline.core.errors import Conflict
from helpline.handover.models import Handover, HandoverConsent, Partner
from helpline.handover.states import (
    PART_ORDER,
    ConsentDecision,
    ConsentMethod,
    HandoverStatus,
    Part,
    PartnerKind,
)

SCOPE_VERSION = 1
_TOKEN = object()  # only this module makes an Authorised


class ConsentMissing(Conflict):
    """No valid consent for exactly this handover: nothing may be built or sent."""

    code = "consent_required"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parts_of(handover: Handover) -> list[Part]:
    chosen = {Part(value) for value in handover.parts.split(",") if value}
    return [part for part in PART_ORDER if part in chosen]


def evidence_ids_of(handover: Handover) -> list[str]:
    return sorted(value for value in handover.evidence_ids.split(",") if value)


def scope_of(handover: Handover, partner: Partner) -> dict[str, Any]:
    """What the handover shares, as the consent records it (docs/api/handover.md)."""
    parts = parts_of(handover)
    return {
        "v": SCOPE_VERSION,
        "handover": handover.id,
        "partner": partner.id,
        "recipient": partner.key_fingerprint,
        "parts": [part.value for part in parts],
        "evidence": evidence_ids_of(handover) if Part.evidence in parts else [],
        "contact_method": handover.contact_method if Part.contact in parts else None,
    }


def scope_bytes(scope: dict[str, Any]) -> bytes:
    return canonical_json(scope)


def scope_hash(scope: dict[str, Any]) -> str:
    return hashlib.sha256(scope_bytes(scope)).hexdigest()


@dataclass(frozen=True)
class Authorised:
    """Proof that a valid consent covers exactly this handover, as of `at`."""

    handover: Handover
    partner: Partner
    consent: HandoverConsent
    scope: dict[str, Any]
    at: datetime
    _token: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("an Authorised comes only from helpline.handover.gate.authorise")

    @property
    def parts(self) -> list[Part]:
        return [Part(value) for value in self.scope["parts"]]

    @property
    def evidence_ids(self) -> list[str]:
        return list(self.scope["evidence"])


def _refuse(reason: str, message: str) -> ConsentMissing:
    return ConsentMissing(reason, message)


def consent_is_confirmed(consent: HandoverConsent) -> bool:
    """A chat consent is the victim's own; a recorded one needs a second staff member."""
    if consent.method == ConsentMethod.chat.value:
        return consent.recorded_by == "victim"
    return (
        consent.confirmed_by is not None and consent.recorded_by != f"staff:{consent.confirmed_by}"
    )


SENDABLE = (HandoverStatus.consented, HandoverStatus.approved, HandoverStatus.sealed)


async def authorise(
    session: AsyncSession, handover: Handover, now: datetime, *, relink: bool = False
) -> Authorised:
    """The rule, in code. Refuses unless every condition holds (raises ConsentMissing).
    `relink`: also a handover already `delivered` (a new link to the same sealed packet;
    every other condition still holds)."""
    allowed = SENDABLE + ((HandoverStatus.delivered,) if relink else ())
    if HandoverStatus(handover.status) not in allowed:
        raise _refuse("status", f"a handover that is {handover.status} cannot be sent")
    if handover.case_id is None:
        raise _refuse("case_gone", "the case of this handover no longer exists")
    if not handover.consent_id:
        raise _refuse("no_consent", "the victim has not consented to this handover")
    consent = await session.get(HandoverConsent, handover.consent_id)
    if consent is None or consent.handover_id != handover.id:
        raise _refuse("no_consent", "the victim has not consented to this handover")
    if consent.decision != ConsentDecision.accepted.value:
        raise _refuse("declined", "the victim did not agree to this handover")
    if consent.withdrawn_at is not None:
        raise _refuse("withdrawn", "the victim withdrew their consent")
    if as_utc(now) >= as_utc(consent.expires_at):
        raise _refuse("expired", "the victim's consent has expired; ask again")
    if not consent_is_confirmed(consent):
        raise _refuse("unconfirmed", "a recorded consent needs a second staff member to confirm")
    partner = await session.get(Partner, handover.partner_id)
    if partner is None or not partner.active:
        raise _refuse("partner", "the partner is not active")
    if not partner.age_recipient or not partner.key_fingerprint or not partner.key_confirmed_at:
        raise _refuse("partner_key", "the partner has no confirmed key")
    current = scope_of(handover, partner)
    try:
        given = json.loads(consent.scope)
    except ValueError as exc:
        raise _refuse("scope", "the consent's scope cannot be read") from exc
    if (
        given != current
        or scope_hash(given) != consent.scope_sha256
        or consent.scope_sha256 != handover.scope_sha256
        or scope_hash(current) != handover.scope_sha256
    ):
        raise _refuse("scope", "the consent does not cover exactly this handover")
    if partner.kind == PartnerKind.police.value or handover.approval_required:
        if handover.approved_by is None:
            raise _refuse("approval", "a handover to the police needs a supervisor's approval")
    return Authorised(
        handover=handover,
        partner=partner,
        consent=consent,
        scope=current,
        at=now,
        _token=_TOKEN,
    )
