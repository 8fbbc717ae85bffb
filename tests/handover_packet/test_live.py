"""The worker's steps reach the chat card and the consoles live (the bus), and a withdrawal
during sealing leaves no packet behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpline.cases.service import channel
from helpline.core.bus import Subscription
from helpline.handover import delivery, packet, service
from helpline.handover.models import Handover
from helpline.handover.states import HandoverStatus
from helpline.triage.service import CONSOLE_CHANNEL
from tests.handover_packet.conftest import Desk

H = HandoverStatus


async def _handover_news(subscription: Subscription, case_id: str) -> dict[str, Any]:
    """The next handover message of `case_id` (a console hears other things too)."""
    while True:
        message = await subscription.get(timeout=10)
        if message.get("type") == "handover" and message.get("case_id") == case_id:
            return message


async def test_the_workers_steps_are_announced(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    refused_case = await desk.case()
    refused_id = await desk.handover(refused_case, partner, parts=("summary",), consent="expired")
    bus = desk.services.bus
    expected = {"type": "handover", "case_id": case_id}
    async with (
        bus.subscribe(channel(case_id)) as on_case,
        bus.subscribe(channel(refused_case)) as on_refused,
        bus.subscribe(CONSOLE_CHANNEL) as on_console,
    ):
        await desk.run_outbox()
        assert (await desk.row(handover_id)).status == H.delivered
        assert await _handover_news(on_case, case_id) == expected  # sealed
        assert await _handover_news(on_case, case_id) == expected  # delivered
        assert await _handover_news(on_console, case_id) == expected
        # the gate refused the other one: its card learns so too
        assert (await desk.row(refused_id)).status == H.consented
        assert await _handover_news(on_refused, refused_case) == {
            "type": "handover",
            "case_id": refused_case,
        }
        # the expiry job
        link_hours = desk.services.settings.handover_link_hours
        desk.clock.advance(hours=link_hours + 1)
        await desk.services.scheduler.run_due()
        assert (await desk.row(handover_id)).status == H.expired
        assert await _handover_news(on_case, case_id) == expected


async def test_a_withdrawal_while_the_packet_is_sealed_destroys_it(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a withdrawal can read the handover while the worker seals it (holding
    the row lock); `service.withdraw` takes the lock and reads the row again, so it sees the
    packet the worker committed and destroys it."""
    if not desk.services.db.is_postgresql:
        pytest.skip("SQLite runs one writing transaction at a time (BEGIN IMMEDIATE)")
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    sealing, go = asyncio.Event(), asyncio.Event()
    real_seal = packet.seal_into_vault

    async def paused(*args: Any, **kwargs: Any) -> Any:
        sealing.set()
        await go.wait()
        return await real_seal(*args, **kwargs)

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the worker stops after sealing")

    monkeypatch.setattr(packet, "seal_into_vault", paused)
    monkeypatch.setattr(delivery, "issue_link", crash)
    worker = asyncio.create_task(desk.run_outbox())
    await sealing.wait()
    async with desk.services.db.transaction() as session:
        # read while the worker holds the row: consented, no packet yet
        stale = await session.get(Handover, handover_id)
        assert stale is not None and stale.status == H.consented and stale.blob_name is None
        go.set()
        await service.withdraw(session, desk.services, stale, by="victim")
        assert stale.status == H.withdrawn
    await worker
    row = await desk.row(handover_id)
    assert row.status == H.withdrawn and row.blob_name is None
    assert row.packet_sha256 is not None  # it was sealed, and then destroyed
    assert desk.blobs() == []
    history = [(h.from_status, h.to_status) for h in await desk.history(handover_id)]
    assert ("sealed", "withdrawn") in history
    monkeypatch.undo()
    await desk.retry_due()
    assert desk.sink.received == [] and desk.site.requests == []
