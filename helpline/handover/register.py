"""What the app wires in for handovers: the outbox handlers of `handover.deliver` and
`handover.reissue`, and the job `handover.expiry` (every minute).

The job, each handover in a transaction of its own with its row locked:

- a consent past its `expires_at` on a handover that is still `proposed`, `consented`,
  `approved` or `sealed` ⇒ `expired`, and its delivery stopped (outbox entry cancelled,
  links revoked, a sealed packet destroyed);
- a `delivered` handover whose link ran out ⇒ `expired`, its packet destroyed — once no
  new link can be issued for it any more (`delivery.reissue_possible`: its consent ran out
  too, or its case is gone). Until then it stays `delivered` with a dead link and keeps its
  packet, so that a supervisor can reissue a link (docs/api/handover.md);
- a packet blob of a handover that was closed otherwise (a race with a withdrawal), and
  blobs no handover names (a build that failed before its commit, a spooled police bundle of
  a crashed build) are destroyed.

Each expiry is announced on the bus after its commit (`delivery.announce`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlmodel import col

from helpline.core.clock import as_utc
from helpline.core.services import Services
from helpline.handover import delivery, state
from helpline.handover.models import Handover, HandoverConsent
from helpline.handover.packet import vault_for
from helpline.handover.states import FINAL, WITHDRAWABLE, HandoverStatus

JOB_NAME = "handover.expiry"
JOB_INTERVAL = timedelta(minutes=1)
ORPHAN_AGE = 3600  # seconds: a blob this old that no handover names was left by a failure
H = HandoverStatus


async def _consent_expired(found: Services, now: datetime) -> list[str]:
    async with found.db.transaction() as session:
        rows = await session.execute(
            select(col(Handover.id))
            .join(
                HandoverConsent,
                or_(
                    col(HandoverConsent.id) == col(Handover.consent_id),
                    # an accepted verbal/written consent still waiting for confirmation
                    (col(HandoverConsent.handover_id) == col(Handover.id))
                    & (col(Handover.status) == H.proposed.value),
                ),
            )
            .where(
                col(Handover.status).in_([status.value for status in WITHDRAWABLE]),
                col(HandoverConsent.withdrawn_at).is_(None),
                col(HandoverConsent.decision) == "accepted",
                col(HandoverConsent.expires_at) <= now,
            )
        )
        return sorted(set(rows.scalars().all()))


async def _links_expired(found: Services, now: datetime) -> list[str]:
    """Delivered handovers whose link ran out and that can have no new one (a superset of
    `delivery.reissue_possible` being false; `expire` checks each under its lock)."""
    async with found.db.transaction() as session:
        rows = await session.execute(
            select(col(Handover.id))
            .outerjoin(HandoverConsent, col(HandoverConsent.id) == col(Handover.consent_id))
            .where(
                col(Handover.status) == H.delivered.value,
                col(Handover.link_expires_at) <= now,
                or_(
                    col(Handover.case_id).is_(None),
                    col(Handover.blob_name).is_(None),
                    col(HandoverConsent.id).is_(None),
                    col(HandoverConsent.withdrawn_at).is_not(None),
                    col(HandoverConsent.expires_at) <= now,
                ),
            )
        )
        return list(rows.scalars().all())


async def expire(found: Services, handover_id: str, *, reason: str) -> bool:
    """Expire one handover (if it still may) and stop its delivery."""
    async with found.db.transaction() as session:
        handover = await session.get(Handover, handover_id, with_for_update=True)
        if handover is None or HandoverStatus(handover.status) in FINAL:
            return False
        if reason == "link":
            now = found.clock.now()
            if handover.status != H.delivered or handover.link_expires_at is None:
                return False
            if as_utc(handover.link_expires_at) > as_utc(now):
                return False  # a link reissued meanwhile
            consent = (
                await session.get(HandoverConsent, handover.consent_id)
                if handover.consent_id
                else None
            )
            if delivery.reissue_possible(handover, consent, now):
                return False
        await state.move(
            session, found.clock, handover, H.expired, actor="system", details={"reason": reason}
        )
        await delivery.stop_delivery(session, found, handover)
        case_id = handover.case_id
    await delivery.announce(found, case_id)
    return True


async def _leftover_blobs(found: Services) -> None:
    async with found.db.transaction() as session:
        rows = await session.execute(
            select(Handover).where(
                col(Handover.blob_name).is_not(None),
                col(Handover.status).in_([H.withdrawn.value, H.expired.value, H.declined.value]),
            )
        )
        for handover in rows.scalars().all():
            await delivery.destroy_packet(found, handover)
        known = set(
            (
                await session.execute(
                    select(col(Handover.blob_name)).where(col(Handover.blob_name).is_not(None))
                )
            )
            .scalars()
            .all()
        )
    vault = vault_for(found.settings)
    for name in await vault.names_older_than(ORPHAN_AGE):
        if name not in known:
            await vault.destroy(name)
    await vault.remove_leftovers()


def register_handover(services: Services) -> None:
    """Register the outbox handler and the expiry job (once per Services)."""
    delivery.register_delivery(services)
    if JOB_NAME not in services.scheduler.jobs:

        async def run(now: datetime) -> None:
            for handover_id in await _consent_expired(services, now):
                await expire(services, handover_id, reason="consent")
            for handover_id in await _links_expired(services, now):
                await expire(services, handover_id, reason="link")
            await _leftover_blobs(services)

        services.scheduler.register(JOB_NAME, JOB_INTERVAL, run)
