"""The partner directory: who we hand victims over to, and the age key their packets are sealed to.

Admins edit it in the console. Importing a partner's age recipient (`age1…`) shows its
fingerprint — SHA-256 of the recipient string, as 16 groups of 4 hex digits — which the admin
reads aloud with the partner on the phone and then types in to confirm. Only a confirmed key
is used: a new key clears the confirmation, and a consent given for the old key no longer
matches (`gate.scope_of` names the fingerprint).

`description` is what the victim reads about the partner on the consent card. It may hold one
line per language, `nl: …` and `en: …` (`descriptions`); a description without such prefixes
is shown in every language.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pyrage import RecipientError, x25519
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import Clock, as_utc
from helpline.core.errors import Conflict, HelplineError, Invalid, NotFound
from helpline.core.ids import new_id
from helpline.handover.models import Handover, HandoverHistory, Partner
from helpline.handover.states import PartnerDelivery, PartnerKind

EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
PHONE = re.compile(r"^[0-9+()\- ]{3,40}$")
LANGUAGE = re.compile(r"^[a-z]{2}$")
DESCRIPTION_LINE = re.compile(r"^([a-z]{2}):\s*(.*)$")
# what the figures count: a handover counts once for each status it ever reached
COUNTED: tuple[str, ...] = (
    "proposed",
    "consented",
    "declined",
    "delivered",
    "downloaded",
    "withdrawn",
    "expired",
)


class InvalidRecipient(HelplineError):
    status = 400
    code = "invalid_recipient"


class FingerprintMismatch(Conflict):
    code = "fingerprint_mismatch"


@dataclass
class PartnerFields:
    """What an admin sets (validated by `check`); None leaves a field as it is on update."""

    name: str | None = None
    kind: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    website: str | None = None
    description: str | None = None
    languages: list[str] | None = None
    active: bool | None = None


# ---------------------------------------------------------------- keys


def fingerprint(recipient: str) -> str:
    return hashlib.sha256(recipient.encode()).hexdigest()


def fingerprint_words(value: str) -> list[str]:
    """The fingerprint as 16 groups of 4 hex digits, to read aloud."""
    return [value[i : i + 4] for i in range(0, 64, 4)]


def normalise_fingerprint(typed: str) -> str:
    """What an admin typed (groups, spaces, dashes, capitals) as 64 hex digits."""
    return re.sub(r"[\s:\-]", "", typed).lower()


def parse_recipient(text: str) -> str:
    """An age X25519 recipient (`age1…`), normalised, or `InvalidRecipient`."""
    value = text.strip()
    try:
        recipient = x25519.Recipient.from_str(value)
    except (RecipientError, ValueError, TypeError):
        raise InvalidRecipient("not an age X25519 recipient (age1…)") from None
    return str(recipient)


def has_confirmed_key(partner: Partner) -> bool:
    return bool(partner.age_recipient and partner.key_fingerprint and partner.key_confirmed_at)


def is_ready(partner: Partner) -> bool:
    """Active with a confirmed key: a handover can be proposed to it."""
    return partner.active and has_confirmed_key(partner)


async def import_key(
    session: AsyncSession, clock: Clock, partner: Partner, recipient: str, *, by: str | None
) -> Partner:
    """Set the partner's age recipient; the fingerprint must then be confirmed again."""
    value = parse_recipient(recipient)
    now = clock.now()
    partner.age_recipient = value
    partner.key_fingerprint = fingerprint(value)
    partner.key_imported_at, partner.key_imported_by = now, by
    partner.key_confirmed_at = partner.key_confirmed_by = None
    partner.updated_at = now
    await session.flush()
    return partner


async def confirm_key(
    session: AsyncSession, clock: Clock, partner: Partner, typed: str, *, by: str | None
) -> Partner:
    """Confirm the key with the fingerprint the admin compared with the partner."""
    if not partner.key_fingerprint:
        raise FingerprintMismatch("this partner has no key to confirm")
    if normalise_fingerprint(typed) != partner.key_fingerprint:
        raise FingerprintMismatch("the fingerprint does not match the imported key")
    now = clock.now()
    partner.key_confirmed_at, partner.key_confirmed_by = now, by
    partner.updated_at = now
    await session.flush()
    return partner


# ---------------------------------------------------------------- directory


def _text(value: str | None, name: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > limit:
        raise Invalid(f"{name}: at most {limit} characters")
    return value


def _checked(fields: PartnerFields, partner: Partner | None) -> dict[str, Any]:
    """The columns to set, validated; on update only the fields given."""
    changes: dict[str, Any] = {}
    if fields.name is not None or partner is None:
        name = (fields.name or "").strip()
        if not 1 <= len(name) <= 120:
            raise Invalid("name: 1-120 characters")
        changes["name"] = name
    if fields.kind is not None or partner is None:
        try:
            changes["kind"] = PartnerKind(fields.kind or "").value
        except ValueError:
            raise Invalid(f"kind: one of {', '.join(k.value for k in PartnerKind)}") from None
    if fields.contact_email is not None or partner is None:
        email = _text(fields.contact_email, "contact_email", 254)
        if email is None or not EMAIL.fullmatch(email):
            raise Invalid("contact_email: an e-mail address (the download link goes there)")
        changes["contact_email"] = email
    if fields.contact_phone is not None:
        phone = _text(fields.contact_phone, "contact_phone", 40)
        if phone is not None and not PHONE.fullmatch(phone):
            raise Invalid("contact_phone: digits, spaces, +, - and ()")
        changes["contact_phone"] = phone
    if fields.website is not None:
        website = _text(fields.website, "website", 300)
        if website is not None and (
            not website.lower().startswith("https://") or any(c.isspace() for c in website)
        ):
            raise Invalid("website: an https:// address")
        changes["website"] = website
    if fields.description is not None:
        changes["description"] = _text(fields.description, "description", 500)
    if fields.languages is not None:
        languages = [x.strip().lower() for x in fields.languages]
        if not 1 <= len(languages) <= 10 or not all(LANGUAGE.fullmatch(x) for x in languages):
            raise Invalid("languages: 1-10 two-letter codes")
        changes["languages"] = ",".join(languages)
    if fields.active is not None:
        changes["active"] = fields.active
    return changes


async def create_partner(session: AsyncSession, clock: Clock, fields: PartnerFields) -> Partner:
    now = clock.now()
    values = _checked(fields, None)
    partner = Partner(
        id=new_id(),
        delivery=PartnerDelivery.download_link.value,
        active=True if fields.active is None else fields.active,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(partner)
    await session.flush()
    return partner


async def update_partner(
    session: AsyncSession, clock: Clock, partner: Partner, fields: PartnerFields
) -> Partner:
    for name, value in _checked(fields, partner).items():
        setattr(partner, name, value)
    partner.updated_at = clock.now()
    await session.flush()
    return partner


async def get_partner(
    session: AsyncSession, partner_id: str, *, for_update: bool = False
) -> Partner:
    partner = await session.get(Partner, partner_id, with_for_update=for_update)
    if partner is None:
        raise NotFound("no such partner")
    return partner


async def list_partners(session: AsyncSession) -> list[Partner]:
    """Active first, then by name."""
    rows = await session.execute(
        select(Partner).order_by(col(Partner.active).desc(), col(Partner.name), col(Partner.id))
    )
    return list(rows.scalars().all())


def descriptions(partner: Partner) -> dict[str, str]:
    """The description per language (`nl: …` / `en: …` lines); `*` for an unprefixed one."""
    result: dict[str, str] = {}
    loose: list[str] = []
    for line in (partner.description or "").splitlines():
        line = line.strip()
        if not line:
            continue
        match = DESCRIPTION_LINE.match(line)
        if match:
            result[match.group(1)] = (result.get(match.group(1), "") + " " + match.group(2)).strip()
        else:
            loose.append(line)
    if loose:
        result["*"] = " ".join(loose)
    return result


def description_for(partner: Partner, language: str) -> str | None:
    found = descriptions(partner)
    return found.get(language) or found.get("*") or found.get("en") or found.get("nl")


# ---------------------------------------------------------------- counts


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTED, 0)


async def counts_by_partner(
    session: AsyncSession, partner_ids: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Per partner: how many handovers were proposed, and how many ever reached each status."""
    result: dict[str, dict[str, int]] = {}
    proposed = select(col(Handover.partner_id), func.count()).group_by(col(Handover.partner_id))
    reached = (
        select(
            col(Handover.partner_id),
            col(HandoverHistory.to_status),
            func.count(func.distinct(col(HandoverHistory.handover_id))),
        )
        .join(Handover, col(Handover.id) == col(HandoverHistory.handover_id))
        .where(col(HandoverHistory.to_status).in_(COUNTED[1:]))
        .group_by(col(Handover.partner_id), col(HandoverHistory.to_status))
    )
    if partner_ids is not None:
        proposed = proposed.where(col(Handover.partner_id).in_(partner_ids))
        reached = reached.where(col(Handover.partner_id).in_(partner_ids))
    for partner_id, count in (await session.execute(proposed)).all():
        result.setdefault(partner_id, _empty_counts())["proposed"] = int(count)
    for partner_id, status, count in (await session.execute(reached)).all():
        result.setdefault(partner_id, _empty_counts())[status] = int(count)
    return result


async def figures(session: AsyncSession) -> dict[str, Any]:
    """`GET /api/staff/handovers/figures`: counts per partner and per kind of partner (by the
    kind copied onto each handover, so figures outlive a directory entry's change)."""
    partners = await list_partners(session)
    counts = await counts_by_partner(session)
    kinds: dict[str, Counter[str]] = {k.value: Counter(_empty_counts()) for k in PartnerKind}
    rows = await session.execute(select(col(Handover.id), col(Handover.partner_kind)))
    kind_of = {handover_id: kind for handover_id, kind in rows.all()}
    for kind in kind_of.values():
        kinds.setdefault(kind, Counter(_empty_counts()))["proposed"] += 1
    reached = await session.execute(
        select(col(HandoverHistory.handover_id), col(HandoverHistory.to_status))
        .where(col(HandoverHistory.to_status).in_(COUNTED[1:]))
        .distinct()
    )
    for handover_id, status in reached.all():
        of_kind = kind_of.get(handover_id)
        if of_kind is not None:
            kinds.setdefault(of_kind, Counter(_empty_counts()))[status] += 1
    return {
        "partners": [
            {
                "partner_id": p.id,
                "name": p.name,
                "kind": p.kind,
                "counts": counts.get(p.id, _empty_counts()),
            }
            for p in partners
        ],
        "kinds": {kind: {k: int(c[k]) for k in COUNTED} for kind, c in kinds.items()},
    }


# ---------------------------------------------------------------- JSON


def render_partner(
    partner: Partner, counts: dict[str, int] | None, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """`Partner` of docs/api/handover.md (plus `descriptions`, the description per language)."""
    names = names or {}
    key = None
    if partner.age_recipient and partner.key_fingerprint:
        key = {
            "recipient": partner.age_recipient,
            "fingerprint": partner.key_fingerprint,
            "fingerprint_words": fingerprint_words(partner.key_fingerprint),
            "imported_at": as_utc(partner.key_imported_at).isoformat()
            if partner.key_imported_at
            else None,
            "confirmed": partner.key_confirmed_at is not None,
            "confirmed_at": as_utc(partner.key_confirmed_at).isoformat()
            if partner.key_confirmed_at
            else None,
            "confirmed_by": (
                {"id": partner.key_confirmed_by, "name": names.get(partner.key_confirmed_by, "")}
                if partner.key_confirmed_by
                else None
            ),
        }
    return {
        "id": partner.id,
        "name": partner.name,
        "kind": partner.kind,
        "contact_email": partner.contact_email,
        "contact_phone": partner.contact_phone,
        "website": partner.website,
        "description": partner.description,
        "descriptions": descriptions(partner),
        "languages": [x for x in partner.languages.split(",") if x],
        "delivery": partner.delivery,
        "active": partner.active,
        "ready": is_ready(partner),
        "key": key,
        "counts": counts or _empty_counts(),
    }
