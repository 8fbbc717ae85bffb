"""The platform directory: who we send notices to, how, and how fast they must act.

Admins edit it in the console; `helpline demo` loads `demo_platforms.toml` (example platforms
on example.org / .test domains). A platform's API key (for the platform API) is shown once
when it is generated; only its SHA-256 and a short prefix (to tell keys apart) are stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import Clock, as_utc
from helpline.core.config import Settings
from helpline.core.errors import Conflict, Invalid, NotFound
from helpline.core.ids import new_id
from helpline.takedown.models import Notice, Platform
from helpline.takedown.states import Delivery

API_KEY_PREFIX = "hlk_"  # recognisable in a leaked-secrets scan
API_KEY_SHOWN = 12  # characters of the key kept for display
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
LANGUAGE = re.compile(r"^[a-z]{2}$")
MAX_SLA_HOURS = 24 * 30


class SlugTaken(Conflict):
    code = "slug_taken"


class PlatformInUse(Conflict):
    code = "in_use"


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass
class PlatformFields:
    """What an admin sets (validated by `check`)."""

    name: str
    slug: str
    delivery: str
    contact_email: str | None = None
    endpoint_url: str | None = None
    web_form_url: str | None = None
    languages: list[str] | None = None
    escalation_email: str | None = None
    complaint_email: str | None = None
    sla_hours: int | None = None
    flagger_reference: str | None = None
    active: bool = True


def _email(value: str | None, name: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not EMAIL.fullmatch(value):
        raise Invalid(f"{name}: not an e-mail address")
    return value


def _url(value: str | None, name: str, *, allow_http: bool) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    schemes = ("https://", "http://") if allow_http else ("https://",)
    if not value.lower().startswith(schemes) or len(value) > 500 or any(c.isspace() for c in value):
        raise Invalid(f"{name}: must be an https:// URL (at most 500 characters)")
    return value


def check(fields: PlatformFields, settings: Settings) -> PlatformFields:
    """Validate and normalise; raise `Invalid` naming the first field that is wrong."""
    name = fields.name.strip()
    if not 1 <= len(name) <= 120:
        raise Invalid("name: 1-120 characters")
    slug = fields.slug.strip().lower()
    if not SLUG.fullmatch(slug) or len(slug) < 2:
        raise Invalid("slug: 2-60 characters a-z, 0-9 and -")
    try:
        delivery = Delivery(fields.delivery)
    except ValueError:
        raise Invalid("delivery: email, api or web_form") from None
    contact = _email(fields.contact_email, "contact_email")
    endpoint = _url(fields.endpoint_url, "endpoint_url", allow_http=settings.notice_api_allow_http)
    web_form = _url(fields.web_form_url, "web_form_url", allow_http=False)
    if delivery is Delivery.email and contact is None:
        raise Invalid("contact_email: needed for delivery by e-mail")
    if delivery is Delivery.api and endpoint is None:
        raise Invalid("endpoint_url: needed for delivery by API")
    if delivery is Delivery.web_form and web_form is None:
        raise Invalid("web_form_url: needed for delivery by web form")
    languages = [language.strip().lower() for language in (fields.languages or ["en"])]
    if not languages or len(languages) > 10 or not all(LANGUAGE.fullmatch(x) for x in languages):
        raise Invalid("languages: 1-10 two-letter codes, preferred first")
    sla = fields.sla_hours if fields.sla_hours is not None else settings.sla_notice_hours
    if not 1 <= sla <= MAX_SLA_HOURS:
        raise Invalid(f"sla_hours: 1-{MAX_SLA_HOURS}")
    reference = (fields.flagger_reference or "").strip() or None
    if reference is not None and len(reference) > 120:
        raise Invalid("flagger_reference: at most 120 characters")
    return PlatformFields(
        name=name,
        slug=slug,
        delivery=delivery.value,
        contact_email=contact,
        endpoint_url=endpoint,
        web_form_url=web_form,
        languages=list(dict.fromkeys(languages)),
        escalation_email=_email(fields.escalation_email, "escalation_email"),
        complaint_email=_email(fields.complaint_email, "complaint_email"),
        sla_hours=sla,
        flagger_reference=reference,
        active=fields.active,
    )


def _apply(platform: Platform, fields: PlatformFields) -> None:
    platform.name, platform.slug, platform.delivery = fields.name, fields.slug, fields.delivery
    platform.contact_email = fields.contact_email
    platform.endpoint_url = fields.endpoint_url
    platform.web_form_url = fields.web_form_url
    platform.languages = ",".join(fields.languages or ["en"])
    platform.escalation_email = fields.escalation_email
    platform.complaint_email = fields.complaint_email
    platform.sla_hours = fields.sla_hours or 24
    platform.flagger_reference = fields.flagger_reference
    platform.active = fields.active


async def _slug_free(session: AsyncSession, slug: str, own_id: str | None = None) -> None:
    found = await session.execute(select(col(Platform.id)).where(col(Platform.slug) == slug))
    other = found.scalar_one_or_none()
    if other is not None and other != own_id:
        raise SlugTaken(f"another platform has the slug {slug!r}")


async def create_platform(
    session: AsyncSession, clock: Clock, settings: Settings, fields: PlatformFields
) -> Platform:
    checked = check(fields, settings)
    await _slug_free(session, checked.slug)
    now = clock.now()
    platform = Platform(id=new_id(), name="", slug="", delivery="", created_at=now, updated_at=now)
    _apply(platform, checked)
    session.add(platform)
    await session.flush()
    return platform


async def get_platform(session: AsyncSession, platform_id: str) -> Platform:
    platform = await session.get(Platform, platform_id)
    if platform is None:
        raise NotFound("no such platform")
    return platform


async def update_platform(
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    platform: Platform,
    fields: PlatformFields,
) -> Platform:
    checked = check(fields, settings)
    await _slug_free(session, checked.slug, platform.id)
    _apply(platform, checked)
    platform.updated_at = clock.now()
    await session.flush()
    return platform


async def delete_platform(session: AsyncSession, platform: Platform) -> None:
    """Only a platform no notice was ever addressed to; others are deactivated instead."""
    used = await session.execute(
        select(func.count()).select_from(Notice).where(col(Notice.platform_id) == platform.id)
    )
    if used.scalar_one():
        raise PlatformInUse("notices were sent to this platform: deactivate it instead")
    await session.delete(platform)
    await session.flush()


async def issue_api_key(session: AsyncSession, clock: Clock, platform: Platform) -> str:
    """A new API key for the platform (replacing any earlier one); returned once, stored as
    its SHA-256."""
    key = new_api_key()
    platform.api_key_hash = api_key_hash(key)
    platform.api_key_prefix = key[:API_KEY_SHOWN]
    platform.updated_at = clock.now()
    await session.flush()
    return key


async def revoke_api_key(session: AsyncSession, clock: Clock, platform: Platform) -> None:
    platform.api_key_hash = platform.api_key_prefix = None
    platform.updated_at = clock.now()
    await session.flush()


async def platform_of_api_key(session: AsyncSession, key: str) -> Platform | None:
    """The active platform whose API key this is (for the platform API)."""
    found = await session.execute(
        select(Platform).where(
            col(Platform.api_key_hash) == api_key_hash(key), col(Platform.active).is_(True)
        )
    )
    return found.scalar_one_or_none()


async def all_platforms(session: AsyncSession, *, active_only: bool = False) -> list[Platform]:
    query = select(Platform).order_by(col(Platform.name))
    if active_only:
        query = query.where(col(Platform.active).is_(True))
    return list((await session.execute(query)).scalars().all())


def platform_json(platform: Platform) -> dict[str, Any]:
    """A platform for the console: never the key's hash."""
    return {
        "id": platform.id,
        "name": platform.name,
        "slug": platform.slug,
        "delivery": platform.delivery,
        "contact_email": platform.contact_email,
        "endpoint_url": platform.endpoint_url,
        "web_form_url": platform.web_form_url,
        "languages": [x for x in platform.languages.split(",") if x],
        "escalation_email": platform.escalation_email,
        "complaint_email": platform.complaint_email,
        "sla_hours": platform.sla_hours,
        "flagger_reference": platform.flagger_reference,
        "api_key": {"prefix": platform.api_key_prefix} if platform.api_key_prefix else None,
        "active": platform.active,
        "created_at": as_utc(platform.created_at).isoformat(),
        "updated_at": as_utc(platform.updated_at).isoformat(),
    }


# ---------------------------------------------------------------- demo data

DEMO_FILE = "demo_platforms.toml"


def demo_platforms() -> list[PlatformFields]:
    data = tomllib.loads((files("helpline.takedown") / DEMO_FILE).read_text())
    return [PlatformFields(**entry) for entry in data["platforms"]]


async def load_demo_platforms(session: AsyncSession, clock: Clock, settings: Settings) -> int:
    """Add the example platforms that are not there yet (by slug); returns how many were
    added. For `helpline demo`."""
    added = 0
    for fields in demo_platforms():
        exists = await session.execute(
            select(col(Platform.id)).where(col(Platform.slug) == fields.slug)
        )
        if exists.scalar_one_or_none() is None:
            await create_platform(session, clock, settings, fields)
            added += 1
    return added
