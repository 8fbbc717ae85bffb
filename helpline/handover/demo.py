"""Demo partners for `helpline demo`: four example organisations (example.org addresses) with
generated age identities, so a demo packet can be opened with the standard `age` tool.

Each identity is written to `<data dir>/demo-partners/<slug>.key` (mode 0600) in age's
identity-file format; its recipient is imported and confirmed (actor: system). Running it
again adds nothing that exists already (partners are matched by name); a partner whose key
file is gone gets a new identity and key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from pyrage import x25519
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.config import Settings
from helpline.core.services import Services
from helpline.handover import partners
from helpline.handover.models import Partner

KEY_DIRECTORY = "demo-partners"


@dataclass(frozen=True)
class DemoPartner:
    """One seeded partner: its id, name, slug and where its identity file is."""

    id: str
    name: str
    slug: str
    key_file: Path
    added: bool  # created by this run (False: it was there already)


def demo_partner_entries() -> list[dict[str, Any]]:
    text = files("helpline.handover").joinpath("demo_partners.toml").read_text(encoding="utf-8")
    entries: list[dict[str, Any]] = tomllib.loads(text)["partners"]
    return entries


def identity_file_text(identity: Any, name: str, created: str) -> str:
    """age's identity-file format: comment lines, then the secret key line."""
    return (
        f"# demo identity of {name} (helpline demo; not a real key)\n"
        f"# created: {created}\n"
        f"# public key: {identity.to_public()}\n"
        f"{identity}\n"
    )


def _write_identity(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _recipient_in(path: Path) -> str | None:
    """The public key of an existing identity file, or None."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("AGE-SECRET-KEY-1"):
                return str(x25519.Identity.from_str(line.strip()).to_public())
    except (OSError, ValueError):
        return None
    except Exception:  # pyrage raises its own error types for a damaged key
        return None
    return None


def _description(entry: dict[str, Any]) -> str | None:
    lines = [
        f"{language}: {entry[f'description_{language}']}"
        for language in ("nl", "en")
        if entry.get(f"description_{language}")
    ]
    return "\n".join(lines) or None


async def load_demo_partners(
    session: AsyncSession, clock: Clock, settings: Settings
) -> list[DemoPartner]:
    """Add the demo partners that are not there yet, each with an identity file and a
    confirmed key, in the caller's transaction."""
    directory = settings.data_dir / KEY_DIRECTORY
    seeded = []
    for entry in demo_partner_entries():
        slug = str(entry["slug"])
        key_file = directory / f"{slug}.key"
        rows = await session.execute(select(Partner).where(col(Partner.name) == entry["name"]))
        partner = rows.scalars().first()
        added = partner is None
        if partner is None:
            partner = await partners.create_partner(
                session,
                clock,
                partners.PartnerFields(
                    name=entry["name"],
                    kind=entry["kind"],
                    contact_email=entry["contact_email"],
                    contact_phone=entry.get("contact_phone"),
                    website=entry.get("website"),
                    description=_description(entry),
                    languages=entry.get("languages"),
                ),
            )
            await record(
                session,
                clock,
                actor="system",
                action="partner.create",
                target=f"partner:{partner.id}",
            )
        recipient = _recipient_in(key_file)
        if recipient is None:
            identity = x25519.Identity.generate()
            _write_identity(
                key_file, identity_file_text(identity, entry["name"], clock.now().isoformat())
            )
            recipient = str(identity.to_public())
        if partner.age_recipient != recipient or partner.key_confirmed_at is None:
            await partners.import_key(session, clock, partner, recipient, by=None)
            await partners.confirm_key(
                session, clock, partner, partners.fingerprint(recipient), by=None
            )
            await record(
                session,
                clock,
                actor="system",
                action="partner.key_confirm",
                target=f"partner:{partner.id}",
                details={"demo": True},
            )
        seeded.append(DemoPartner(partner.id, partner.name, slug, key_file, added))
    return seeded


async def seed_demo_partners(services: Services) -> list[DemoPartner]:
    """For `helpline demo`: `load_demo_partners` in a transaction of its own."""
    async with services.db.transaction() as session:
        return await load_demo_partners(session, services.clock, services.settings)
