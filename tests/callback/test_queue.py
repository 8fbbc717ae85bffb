"""A callback case joins the queue when its first window opens (at once if urgent); its
queue position and first-response SLA count from then. The sweep announces it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from helpline.cases import service
from helpline.cases.models import Case, Sender
from helpline.core.bus import Subscription
from helpline.intake.callback.service import JOB_NAME
from helpline.staff.models import Role
from helpline.triage.service import CONSOLE_CHANNEL
from tests.callback.conftest import callback_row, file_request, local, window
from tests.triage.kit import Desk

WINDOW_OPENS = datetime(2026, 1, 2, 13, 0, tzinfo=UTC)  # Friday 14:00 in Amsterdam


async def queued_ids(desk: Desk, member: Any) -> list[str]:
    return [c["id"] for c in await member.queue()]


async def test_a_callback_joins_the_queue_when_its_window_opens(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    supervisor = await desk.staff("saskia", Role.supervisor)
    filed = await file_request(desk)
    chat = await desk.victim()
    assert await queued_ids(desk, agent) == [chat["case_id"]]
    overview = (await supervisor.get("/api/staff/overview")).json()
    assert overview["queue"]["total"] == 1
    # listed among the calls to come, without number or code word
    [waiting] = (await agent.get("/api/staff/callbacks")).json()["callbacks"]
    assert (waiting["case_id"], waiting["in_queue"]) == (filed["case_id"], False)
    assert waiting["in_queue_from"] == WINDOW_OPENS.isoformat()
    assert waiting["windows"] == filed["windows"]
    assert waiting["safety"] == {"voicemail_safe": False, "may_say_name": False}
    assert "number" not in waiting and "code_word" not in waiting
    desk.clock.set(WINDOW_OPENS - timedelta(seconds=1))
    assert filed["case_id"] not in await queued_ids(desk, agent)
    desk.clock.set(WINDOW_OPENS)
    queue = await agent.queue()
    assert [c["id"] for c in queue] == [chat["case_id"], filed["case_id"]]
    [callback] = [c for c in queue if c["id"] == filed["case_id"]]
    assert callback["channel"] == "callback" and callback["status"] == "new"
    # the first-response SLA runs from the window's start (normal priority: 15 minutes)
    assert callback["queued_at"] == WINDOW_OPENS.isoformat()
    assert callback["sla"] == {
        "kind": "first_response",
        "due_at": (WINDOW_OPENS + timedelta(minutes=15)).isoformat(),
        "breached": False,
    }
    assert (await agent.get("/api/staff/callbacks")).json()["callbacks"][0]["in_queue"]
    assert (await agent.queue(channel="callback"))[0]["id"] == filed["case_id"]


async def test_an_urgent_callback_is_in_the_queue_at_once(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    filed = await file_request(desk, urgent=True)
    assert await queued_ids(desk, agent) == [filed["case_id"]]
    case = await desk.row(filed["case_id"])
    assert case.queued_at.replace(tzinfo=UTC) == desk.clock.now()
    assert (await callback_row(desk, filed["case_id"])).announced


async def test_a_window_that_is_open_now_puts_it_in_the_queue_now(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    filed = await file_request(desk, windows=[window(local(1, 9), local(1, 12))])
    assert await queued_ids(desk, agent) == [filed["case_id"]]


async def test_a_victim_who_writes_meanwhile_is_seen_at_once(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    filed = await file_request(desk, continue_in_chat=True)
    assert await queued_ids(desk, agent) == []
    found = desk.services
    async with found.db.transaction() as session:
        await service.post_message(
            session,
            found.keyring,
            found.clock,
            case_id=filed["case_id"],
            sender=Sender.victim,
            text="Het is toch dringend.",
            client_id=uuid.uuid4().hex,
        )
    assert await queued_ids(desk, agent) == [filed["case_id"]]


async def test_queue_positions_leave_out_callbacks_not_in_the_queue_yet(desk: Desk) -> None:
    # a high-priority callback for tomorrow, then a normal chat now
    filed = await file_request(desk, topic="sextortion")
    chat = await desk.victim("harassment")

    async def position(case_id: str) -> int | None:
        async with desk.services.db.transaction() as session:
            case = await session.get(Case, case_id)
            assert case is not None
            return await service.queue_position(session, case, now=desk.clock.now())

    assert await position(chat["case_id"]) == 1
    assert await position(filed["case_id"]) is None  # not waiting in the queue yet
    desk.clock.set(WINDOW_OPENS)
    assert await position(filed["case_id"]) == 1  # high priority goes first
    assert await position(chat["case_id"]) == 2


async def heard(subscription: Subscription, wait: float = 0.3) -> list[dict[str, Any]]:
    frames = []
    while True:
        try:
            frames.append(await subscription.get(timeout=wait))
        except TimeoutError:
            return frames


async def test_the_sweep_tells_the_consoles_when_a_window_opens(desk: Desk) -> None:
    filed = await file_request(desk)
    scheduler = desk.services.scheduler
    assert scheduler.jobs[JOB_NAME].interval <= timedelta(seconds=30)
    async with (
        desk.services.bus.subscribe(service.QUEUE_CHANNEL) as queue,
        desk.services.bus.subscribe(CONSOLE_CHANNEL) as console,
    ):
        assert JOB_NAME in await scheduler.run_due()
        assert await heard(queue) == [] and await heard(console) == []
        desk.clock.set(WINDOW_OPENS)
        assert JOB_NAME in await scheduler.run_due()
        assert await heard(queue) == [{"type": "queue_changed"}]
        assert await heard(console) == [{"type": "case_changed", "case_id": filed["case_id"]}]
        desk.clock.advance(seconds=30)
        assert JOB_NAME in await scheduler.run_due()
        assert await heard(queue) == []  # once
