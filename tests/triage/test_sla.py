"""Service levels with a clock the test moves: which deadline a case runs against, breaches
recorded once and announced once (also with two instances at it), and breaches today."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from helpline.cases import service
from helpline.cases.models import Sender
from helpline.core.bus import Subscription
from helpline.staff.models import Role
from helpline.triage import sla
from helpline.triage.models import SlaBreach
from helpline.triage.service import CONSOLE_CHANNEL
from tests.triage.kit import Desk

TARGETS = {
    "sla_first_response_minutes": "urgent=5,high=10,normal=15,low=60",
    "sla_next_response_minutes": "urgent=10,high=20,normal=30,low=120",
    "staff_idle_minutes": 600,  # the clock jumps by the hour here: stay logged in
}


async def write(desk: Desk, case_id: str, sender: Sender, staff_id: str | None = None) -> None:
    found = desk.services
    async with found.db.transaction() as session:
        await service.post_message(
            session,
            found.keyring,
            found.clock,
            case_id=case_id,
            sender=sender,
            text="hallo",
            client_id=uuid.uuid4().hex,
            staff_id=staff_id,
        )


async def run_job(desk: Desk) -> None:
    """What the scheduler runs every 15 s (registered by the app's services), run now."""
    job = desk.services.scheduler.jobs[sla.JOB_NAME]
    assert job.interval <= timedelta(seconds=30)
    await job.run(desk.clock.now())


@pytest.mark.parametrize("desk_overrides", [TARGETS])
async def test_the_scheduler_runs_the_breach_job(desk: Desk) -> None:
    case_id = (await desk.victim("sextortion"))["case_id"]
    desk.clock.advance(minutes=10)
    async with desk.services.bus.subscribe(CONSOLE_CHANNEL) as console:
        assert sla.JOB_NAME in await desk.services.scheduler.run_due()
        assert await breach_rows(desk) == [(case_id, "first_response", 2)]
        assert len(await heard(console)) == 1
        assert sla.JOB_NAME not in await desk.services.scheduler.run_due()  # not due yet
        desk.clock.advance(seconds=15)
        assert sla.JOB_NAME in await desk.services.scheduler.run_due()
        assert await heard(console) == []


async def heard(subscription: Subscription, wait: float = 0.3) -> list[dict[str, Any]]:
    frames = []
    while True:
        try:
            frames.append(await subscription.get(timeout=wait))
        except TimeoutError:
            return [f for f in frames if f["type"] == "sla_breach"]


async def breach_rows(desk: Desk) -> list[tuple[str, str, int]]:
    async with desk.services.db.transaction() as session:
        rows = (await session.execute(select(SlaBreach))).scalars().all()
        return sorted((r.case_id, r.kind, r.priority) for r in rows)


@pytest.mark.parametrize("desk_overrides", [TARGETS])
async def test_deadlines_breaches_once_and_breaches_today(desk: Desk) -> None:
    start = desk.clock.now()
    agent = await desk.staff("anouk")
    supervisor = await desk.staff("sanne", Role.supervisor)
    high = (await desk.victim("sextortion"))["case_id"]
    low = (await desk.victim("privacy"))["case_id"]

    listed = {c["id"]: c for c in await agent.queue()}
    assert listed[high]["sla"] == {
        "kind": "first_response",
        "due_at": (start + timedelta(minutes=10)).isoformat(),
        "breached": False,
    }
    assert listed[low]["sla"]["due_at"] == (start + timedelta(minutes=60)).isoformat()

    async with desk.services.bus.subscribe(CONSOLE_CHANNEL) as console:
        desk.clock.advance(minutes=9, seconds=59)
        await run_job(desk)
        assert await breach_rows(desk) == [] and await heard(console) == []

        desk.clock.advance(seconds=1)  # the deadline itself
        listed = {c["id"]: c for c in await agent.queue()}
        assert listed[high]["sla"]["breached"] is True
        assert listed[low]["sla"]["breached"] is False
        await run_job(desk)
        assert await breach_rows(desk) == [(high, "first_response", 2)]
        assert await heard(console) == [
            {"type": "sla_breach", "case_id": high, "kind": "first_response", "priority": 2}
        ]
        for _ in range(3):  # the same missed deadline is not counted or announced again
            desk.clock.advance(seconds=15)
            await run_job(desk)
        assert len(await breach_rows(desk)) == 1 and await heard(console) == []

        # the first answer ends the first-response clock; a victim's next message starts
        # the next-response clock
        await agent.act(high, "claim")
        await write(desk, high, Sender.staff, agent.id)
        assert (await agent.case(high))["sla"] == {"kind": None, "due_at": None, "breached": False}
        await write(desk, high, Sender.victim)
        asked = desk.clock.now()
        await write(desk, high, Sender.victim)  # a second one does not move the deadline
        desk.clock.advance(minutes=1)
        await write(desk, high, Sender.victim)
        next_due = (asked + timedelta(minutes=20)).isoformat()
        assert (await agent.case(high))["sla"] == {
            "kind": "next_response",
            "due_at": next_due,
            "breached": False,
        }
        desk.clock.set(asked + timedelta(minutes=20))
        await run_job(desk)
        assert (await agent.case(high))["sla"]["breached"] is True
        assert await heard(console) == [
            {"type": "sla_breach", "case_id": high, "kind": "next_response", "priority": 2}
        ]

        overview = (await supervisor.get("/api/staff/overview")).json()
        assert overview["sla"] == {"breaches_today": 2, "breached_now": 1}

        # an answer clears the wait; the low case misses its hour
        await write(desk, high, Sender.staff, agent.id)
        desk.clock.set(start + timedelta(minutes=60))
        await run_job(desk)
        assert await heard(console) == [
            {"type": "sla_breach", "case_id": low, "kind": "first_response", "priority": 4}
        ]
        overview = (await supervisor.get("/api/staff/overview")).json()
        assert overview["sla"] == {"breaches_today": 3, "breached_now": 1}

        # a closed case runs against nothing
        await supervisor.act(low, "close", {"outcome": "no_contact"})
        overview = (await supervisor.get("/api/staff/overview")).json()
        assert overview["sla"] == {"breaches_today": 3, "breached_now": 0}


@pytest.mark.parametrize("desk_overrides", [TARGETS])
async def test_a_higher_priority_brings_the_deadline_forward(desk: Desk) -> None:
    start = desk.clock.now()
    agent = await desk.staff("bram")
    case_id = (await desk.victim("harassment"))["case_id"]
    await agent.act(case_id, "claim")
    desk.clock.advance(minutes=6)
    assert (await agent.case(case_id))["sla"]["breached"] is False  # normal: 15 minutes
    urgent = await agent.act(case_id, "triage", {"risk_flags": ["self_harm"]})
    assert urgent["sla"] == {
        "kind": "first_response",
        "due_at": (start + timedelta(minutes=5)).isoformat(),
        "breached": True,
    }
    await run_job(desk)
    assert await breach_rows(desk) == [(case_id, "first_response", 1)]


@pytest.mark.parametrize("desk_overrides", [TARGETS])
async def test_breaches_today_start_at_local_midnight(desk: Desk) -> None:
    # 22:30 UTC on 1 March is 23:30 in Amsterdam (CET)
    desk.clock.set(datetime(2026, 3, 1, 22, 30, tzinfo=UTC))
    supervisor = await desk.staff("sanne", Role.supervisor)
    first = (await desk.victim("harassment"))["case_id"]
    desk.clock.advance(minutes=15)  # 23:45 local: missed today
    await run_job(desk)
    assert (await supervisor.get("/api/staff/overview")).json()["sla"]["breaches_today"] == 1
    desk.clock.advance(minutes=20)  # 00:05 local, the next day
    overview = (await supervisor.get("/api/staff/overview")).json()
    assert overview["sla"] == {"breaches_today": 0, "breached_now": 1}
    second = (await desk.victim("privacy"))["case_id"]
    desk.clock.advance(minutes=60)
    await run_job(desk)
    overview = (await supervisor.get("/api/staff/overview")).json()
    assert overview["sla"] == {"breaches_today": 1, "breached_now": 2}
    assert {row[0] for row in await breach_rows(desk)} == {first, second}
    assert sla.local_midnight(desk.clock.now(), "Europe/Amsterdam") == datetime(
        2026, 3, 1, 23, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("desk_overrides", [TARGETS])
async def test_two_instances_recording_at_once_count_a_breach_once(desk: Desk) -> None:
    cases = [(await desk.victim("sextortion"))["case_id"] for _ in range(3)]
    desk.clock.advance(minutes=30)
    targets = sla.SlaTargets.from_settings(desk.services.settings)
    now = desk.clock.now()

    async def one_instance() -> list[sla.Breach]:
        async with desk.services.db.transaction() as session:
            return await sla.record_breaches(session, now, targets)

    results = await asyncio.gather(*(one_instance() for _ in range(4)))
    assert sorted(b.case_id for found in results for b in found) == sorted(cases)
    async with desk.services.db.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(SlaBreach))).scalar_one()
    assert count == 3


def test_sla_state_of_a_case() -> None:
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    targets = sla.SlaTargets({1: 5, 2: 10, 3: 15, 4: 60}, {1: 10, 2: 20, 3: 30, 4: 120})
    case = service.Case(
        id="c",
        reference="R",
        channel="chat",
        priority=3,
        created_at=now,
        queued_at=now,
        last_activity_at=now,
    )
    assert sla.sla_state(case, now, targets) == sla.SlaState(
        "first_response", now + timedelta(minutes=15), False
    )
    case.priority = 1
    later = now + timedelta(minutes=5)
    assert sla.sla_state(case, later, targets) == sla.SlaState("first_response", later, True)
    case.first_response_at = later
    assert sla.sla_state(case, later, targets) == sla.NO_DEADLINE
    case.awaiting_since = later
    assert sla.sla_state(case, later, targets) == sla.SlaState(
        "next_response", later + timedelta(minutes=10), False
    )
    case.status = "closed"
    assert sla.sla_state(case, later + timedelta(days=1), targets) == sla.NO_DEADLINE
