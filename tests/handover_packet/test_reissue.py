"""Reissuing a partner's link: `POST /api/staff/handovers/{id}/reissue` (supervisors), the
expiry job that keeps a reissuable packet, and the refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlmodel import col

from helpline.core.ids import new_id
from helpline.core.models import AuditEntry
from helpline.handover import delivery
from helpline.handover.models import Handover, HandoverConsent
from helpline.handover.packet import vault_for
from helpline.handover.states import HandoverStatus
from helpline.staff import accounts
from helpline.staff.models import Role
from tests.handover_packet.conftest import Desk
from tests.triage.kit import Desk as TriageDesk
from tests.triage.kit import Member

H = HandoverStatus


class Front(TriageDesk):
    """Logged-in staff on the packet tests' app, which runs under https://helpline.test (its
    session cookies are `Secure`)."""

    def client(self) -> httpx.AsyncClient:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        result = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="https://helpline.test"
        )
        self.clients.append(result)
        return result


@pytest.fixture
async def front(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Front]:
    """Logged-in staff on the same app (the real Argon2id code, at a tiny cost)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    running = Front(desk.app, desk.state, desk.clock)
    try:
        yield running
    finally:
        await running.close()


async def supervisor(front: Front) -> Member:
    """Logged in now (the tests move the clock by days: a session would go idle)."""
    return await front.staff(f"sup{new_id()[:8]}".lower(), Role.supervisor)


async def _delivered(desk: Desk) -> tuple[str, str]:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary", "categories"))
    await desk.run_outbox()
    assert (await desk.row(handover_id)).status == H.delivered
    return handover_id, desk.link()


async def _consent_until(desk: Desk, handover_id: str, until: datetime) -> None:
    async with desk.services.db.transaction() as session:
        row = await session.get(Handover, handover_id)
        assert row is not None and row.consent_id is not None
        consent = await session.get(HandoverConsent, row.consent_id)
        assert consent is not None
        consent.expires_at = until


async def _reissues(desk: Desk) -> list[Any]:
    return [entry for entry in await desk.outbox() if entry.kind == delivery.REISSUE_KIND]


async def test_a_supervisor_reissues_a_link_that_ran_out(desk: Desk, front: Front) -> None:
    handover_id, first = await _delivered(desk)
    hours = desk.services.settings.handover_link_hours
    await _consent_until(desk, handover_id, desk.clock.now() + timedelta(hours=3 * hours))
    desk.clock.advance(timedelta(hours=hours, seconds=1))
    await desk.services.scheduler.run_due()
    # the link ran out, the consent did not: the job keeps the handover and its packet
    row = await desk.row(handover_id)
    assert row.status == H.delivered and desk.blobs() == [row.blob_name]
    assert (await desk.http.get(f"/handover/{first}")).status_code == 410

    sam = await supervisor(front)
    answer = await sam.post(f"/api/staff/handovers/{handover_id}/reissue")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "delivered"
    expires = desk.clock.now() + timedelta(hours=hours)
    assert body["link"] == {"expires_at": expires.isoformat(), "used_at": None}
    assert body["history"][-1]["event"] == "link_reissued"
    assert body["history"][-1]["actor"]["id"] == sam.id
    [entry] = await _reissues(desk)
    assert entry.idempotency_key == f"handover:{handover_id}:link:2"
    assert entry.key_scope == f"handover:{handover_id}"
    assert len(desk.sink.received) == 1  # the worker mails it, not the request

    await desk.run_outbox()
    first_mail, second_mail = desk.sink.received
    second = desk.link()
    assert second != first
    assert second_mail.message["Message-ID"] != first_mail.message["Message-ID"]
    assert second_mail.message["X-Helpline-Idempotency-Key"] == entry.idempotency_key
    assert second_mail.rcpt_tos == ["intake@partner.example.org"]
    assert (await desk.http.post(f"/handover/{first}")).status_code == 410
    download = await desk.http.post(f"/handover/{second}")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == row.packet_sha256
    assert (await desk.row(handover_id)).status == H.downloaded

    events = [json.loads(h.details).get("event") for h in await desk.history(handover_id)]
    assert events.count("link_reissued") == 1 and events.count("link_sent") == 1
    async with desk.services.db.transaction() as session:
        audit = await session.execute(
            select(AuditEntry).where(col(AuditEntry.action) == "handover.link_reissued")
        )
        [line] = audit.scalars().all()
    assert line.actor == f"staff:{sam.id}" and line.target == f"handover:{handover_id}"


async def test_the_job_expires_a_delivered_handover_once_its_consent_ran_out_too(
    desk: Desk,
) -> None:
    handover_id, _ = await _delivered(desk)
    hours = desk.services.settings.handover_link_hours
    await _consent_until(desk, handover_id, desk.clock.now() + timedelta(hours=2 * hours))
    desk.clock.advance(timedelta(hours=hours, seconds=1))
    await desk.services.scheduler.run_due()
    assert (await desk.row(handover_id)).status == H.delivered
    desk.clock.advance(timedelta(hours=hours))
    await desk.services.scheduler.run_due()
    row = await desk.row(handover_id)
    assert row.status == H.expired and row.blob_name is None and desk.blobs() == []


async def test_a_retried_reissue_mails_the_same_link(
    desk: Desk, front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after the relay took the new link's mail: the retry sends the very
    same mail (link, Message-ID), never another link."""
    handover_id, first = await _delivered(desk)
    sam = await supervisor(front)
    # never used, not run out: a lost notification can be sent again as a new link
    answer = await sam.post(f"/api/staff/handovers/{handover_id}/reissue")
    assert answer.status_code == 200, answer.text
    real_note = delivery.state.note
    calls = {"n": 0}

    async def crash_once(session: Any, clock: Any, handover: Any, **kwargs: Any) -> Any:
        if kwargs.get("event") == "link_sent":
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the worker dies after sending")
        return await real_note(session, clock, handover, **kwargs)

    monkeypatch.setattr(delivery.state, "note", crash_once)
    await desk.run_outbox()
    assert len(desk.sink.received) == 2
    await desk.retry_due()
    _, once, again = desk.sink.received
    assert once.message["Message-ID"] == again.message["Message-ID"]
    body = once.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body == again.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert first not in body and desk.link() in body
    await desk.retry_due()
    assert len(desk.sink.received) == 3
    assert (await desk.http.get(f"/handover/{first}")).status_code == 410
    assert (await desk.http.get(f"/handover/{desk.link()}")).status_code == 200


async def test_a_reissue_is_refused_without_consent_packet_or_delivery(
    desk: Desk, front: Front
) -> None:
    async def refused(handover_id: str) -> str:
        answer = await sam.post(f"/api/staff/handovers/{handover_id}/reissue")
        assert answer.status_code == 409, answer.text
        code: str = answer.json()["error"]["code"]
        return code

    # the consent ran out while the link still works: no new link
    lapsed, lapsed_link = await _delivered(desk)
    await _consent_until(desk, lapsed, desk.clock.now() + timedelta(hours=1))
    # the packet is missing (destroyed behind the handover's back)
    missing, _ = await _delivered(desk)
    await vault_for(desk.services.settings).destroy((await desk.row(missing)).blob_name or "")
    # downloaded already
    fetched, fetched_link = await _delivered(desk)
    assert (await desk.http.post(f"/handover/{fetched_link}")).status_code == 200
    # never consented, so never delivered
    partner = await desk.partner()
    proposed = await desk.handover(await desk.case(), partner, consent=None)
    desk.clock.advance(hours=2)
    sam = await supervisor(front)
    mails = len(desk.sink.received)

    assert await refused(lapsed) == "consent_required"
    assert (await desk.http.get(f"/handover/{lapsed_link}")).status_code == 200  # untouched
    assert await refused(missing) == "packet_gone"
    assert await refused(fetched) == "not_reissuable"
    assert await refused(proposed) == "not_reissuable"
    # once the job expired it, the packet is gone for good
    desk.clock.advance(hours=desk.services.settings.handover_link_hours)
    await desk.services.scheduler.run_due()
    assert (await desk.row(lapsed)).status == H.expired
    sam = await supervisor(front)
    assert await refused(lapsed) == "packet_gone"

    assert await _reissues(desk) == []
    await desk.run_outbox()
    assert len(desk.sink.received) == mails
