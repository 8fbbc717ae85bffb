"""The console websocket against the real app under uvicorn: consoles hear queue and case
changes and SLA breaches, see who has which case open (and who went), on one instance and on
two instances through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.core.services import Services
from helpline.staff.models import Role
from helpline.triage import sla
from tests.intake.chatkit import ChatClient, StaffMember, Victim
from tests.live import LiveServer, free_port, live_server


@pytest.fixture
def clock() -> FrozenClock:
    # the real time, so that staff log in with codes from their authenticator (chatkit)
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def server(
    settings_for: Any, database_url: str, port: int, clock: FrozenClock
) -> AsyncIterator[LiveServer]:
    settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    async with live_server(settings, clock, port=port) as running:
        yield running


def services_of(server: LiveServer) -> Services:
    found: Services = server.server.lifespan.state["services"]  # type: ignore[attr-defined]
    return found


async def open_console(member: StaffMember, ws_url: str) -> ChatClient:
    cookies = "; ".join(f"{k}={v}" for k, v in member.http.cookies.items())
    socket = await connect(
        f"{ws_url}/ws/console", additional_headers={"Cookie": cookies, "Origin": member.base_url}
    )
    return ChatClient(socket)


def presence_of(member: StaffMember, **expected: Any) -> Any:
    def matches(frame: dict[str, Any]) -> bool:
        return (
            frame["type"] == "presence"
            and frame["staff"]["id"] == member.id
            and all(frame[k] == v for k, v in expected.items())
        )

    return matches


def case_changed(case_id: str) -> Any:
    return lambda f: f["type"] == "case_changed" and f["case_id"] == case_id


def queue_changed(frame: dict[str, Any]) -> bool:
    return frame["type"] == "queue_changed"


async def case_id_of(member: StaffMember, reference: str) -> str:
    cases = (await member.http.get("/api/staff/cases")).json()["cases"]
    [case] = [c for c in cases if c["reference"] == reference]
    return str(case["id"])


async def test_a_console_hears_changes_and_sees_who_is_looking(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    agent = await StaffMember.create(db, server.url, "anouk")
    idle = await StaffMember.create(db, server.url, "bram")
    supervisor = await StaffMember.create(db, server.url, "sanne", Role.supervisor)
    watching = await open_console(supervisor, server.ws_url)
    mine = await open_console(agent, server.ws_url)
    try:
        await watching.wait_for(presence_of(agent, online=True, viewing=[]))

        victim = await Victim(server.url).start()
        await watching.wait_for(queue_changed)
        case_id = await case_id_of(agent, victim.reference)
        await agent.post(f"/api/staff/cases/{case_id}/claim")
        await watching.wait_for(case_changed(case_id))
        await watching.wait_for(queue_changed)

        await mine.send({"type": "viewing", "case_ids": [case_id]})
        await watching.wait_for(presence_of(agent, online=True, viewing=[case_id]))
        case = (await supervisor.http.get(f"/api/staff/cases/{case_id}")).json()
        assert case["viewers"] == [{"id": agent.id, "name": "anouk"}]
        colleagues = (await agent.http.get("/api/staff/colleagues")).json()["staff"]
        online = {c["id"]: c["online"] for c in colleagues}
        assert online == {agent.id: True, idle.id: False, supervisor.id: True}
        assert {c["role"] for c in colleagues} == {"agent", "supervisor"}
        overview = (await supervisor.http.get("/api/staff/overview")).json()
        [row] = [s for s in overview["staff"] if s["id"] == agent.id]
        assert row["online"] is True and row["viewing"] == [case_id]
        assert row["cases"] == [
            {
                "id": case_id,
                "reference": victim.reference,
                "priority": 3,
                "status": "in_conversation",
            }
        ]

        # a triage change by the agent reaches the supervisor's console
        await agent.post(f"/api/staff/cases/{case_id}/triage", json={"risk_flags": ["self_harm"]})
        await watching.wait_for(case_changed(case_id))

        # a missed deadline is announced to every console
        clock.advance(minutes=10)
        await mine.send({"type": "viewing", "case_ids": [case_id]})  # the heartbeat
        await services_of(server).scheduler.jobs[sla.JOB_NAME].run(clock.now())
        breach = await watching.wait_for(lambda f: f["type"] == "sla_breach")
        assert breach == {
            "type": "sla_breach",
            "case_id": case_id,
            "kind": "first_response",
            "priority": 1,
        }

        # bad frames are answered, not fatal
        await mine.send({"type": "viewing", "case_ids": "all"})
        assert (await mine.wait_for(lambda f: f["type"] == "error"))["code"] == "invalid"
        await mine.send({"type": "dance"})
        assert (await mine.wait_for(lambda f: f["type"] == "error"))["code"] == "unknown_frame"
        await mine.send({"type": "ping"})
        await mine.wait_for(lambda f: f["type"] == "pong")

        # a second console of the same agent: closing the first keeps them online
        watching.frames.clear()
        second = await open_console(agent, server.ws_url)
        await mine.close()
        await watching.wait_for(presence_of(agent, online=True, viewing=[]))
        await second.close()
        await watching.wait_for(presence_of(agent, online=False, viewing=[]))
        colleagues = (await supervisor.http.get("/api/staff/colleagues")).json()["staff"]
        assert {c["id"]: c["online"] for c in colleagues}[agent.id] is False
        assert (await supervisor.http.get(f"/api/staff/cases/{case_id}")).json()["viewers"] == []
    finally:
        await watching.close()
        for member in (agent, idle, supervisor):
            await member.close()


async def test_a_console_that_stops_beating_goes_offline(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    agent = await StaffMember.create(db, server.url, "carla")
    supervisor = await StaffMember.create(db, server.url, "dirk", Role.supervisor)
    victim = await Victim(server.url).start()
    case_id = await case_id_of(agent, victim.reference)
    await agent.post(f"/api/staff/cases/{case_id}/claim")
    quiet = await open_console(agent, server.ws_url)
    watching = await open_console(supervisor, server.ws_url)
    try:
        await quiet.send({"type": "viewing", "case_ids": [case_id]})
        await watching.wait_for(presence_of(agent, online=True, viewing=[case_id]))
        clock.advance(seconds=44)
        await watching.send({"type": "viewing", "case_ids": []})  # the supervisor beats
        case = (await supervisor.http.get(f"/api/staff/cases/{case_id}")).json()
        assert [v["id"] for v in case["viewers"]] == [agent.id]
        clock.advance(seconds=2)  # 46 s without a word from the agent's console
        await watching.wait_for(presence_of(agent, online=False, viewing=[]), timeout=5)
        assert (await supervisor.http.get(f"/api/staff/cases/{case_id}")).json()["viewers"] == []
        colleagues = (await supervisor.http.get("/api/staff/colleagues")).json()["staff"]
        assert {c["id"]: c["online"] for c in colleagues} == {
            agent.id: False,
            supervisor.id: True,
        }
        # the next heartbeat brings them back
        await quiet.send({"type": "viewing", "case_ids": [case_id]})
        await watching.wait_for(presence_of(agent, online=True, viewing=[case_id]))
    finally:
        await quiet.close()
        await watching.close()
        await agent.close()
        await supervisor.close()


async def test_refused_without_a_staff_session(server: LiveServer) -> None:
    victim = await Victim(server.url).start()
    for headers in ({}, {"Authorization": f"Bearer {victim.token}"}):
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws_url}/ws/console", additional_headers=headers) as ws:
                await ws.recv()


async def test_two_instances_share_changes_and_presence_through_redis(
    settings_for: Any,
    database_url: str,
    db: Database,
    redis_server_url: str,
    clock: FrozenClock,
) -> None:
    ports = [free_port(), free_port()]
    settings: list[Settings] = [
        settings_for(database_url, base_url=f"http://127.0.0.1:{p}", redis_url=redis_server_url)
        for p in ports
    ]
    async with live_server(settings[0], clock, port=ports[0]) as one:
        async with live_server(settings[1], clock, port=ports[1]) as two:
            agent = await StaffMember.create(db, one.url, "eva")
            supervisor = await StaffMember.create(db, two.url, "femke", Role.supervisor)
            mine = await open_console(agent, one.ws_url)
            watching = await open_console(supervisor, two.ws_url)
            try:
                await watching.wait_for(presence_of(agent, online=True))
                victim = await Victim(one.url).start()
                await watching.wait_for(queue_changed)
                case_id = await case_id_of(agent, victim.reference)
                claimed = await agent.post(f"/api/staff/cases/{case_id}/claim")
                assert claimed.status_code == 200
                await watching.wait_for(case_changed(case_id))

                await mine.send({"type": "viewing", "case_ids": [case_id]})
                await watching.wait_for(presence_of(agent, online=True, viewing=[case_id]))
                on_two = (await supervisor.http.get(f"/api/staff/cases/{case_id}")).json()
                assert on_two["viewers"] == [{"id": agent.id, "name": "eva"}]

                # the supervisor, on instance two, reassigns; the agent on one hears it
                moved = await supervisor.post(
                    f"/api/staff/cases/{case_id}/assign", json={"to": supervisor.id}
                )
                assert moved.status_code == 200, moved.text
                await mine.wait_for(case_changed(case_id))

                clock.advance(minutes=16)
                await mine.send({"type": "viewing", "case_ids": [case_id]})
                await services_of(one).scheduler.jobs[sla.JOB_NAME].run(clock.now())
                breach = await watching.wait_for(lambda f: f["type"] == "sla_breach")
                assert breach["case_id"] == case_id
                # the job ran on instance one only, and nothing was announced twice
                await services_of(two).scheduler.jobs[sla.JOB_NAME].run(clock.now())
                with pytest.raises(TimeoutError):
                    await watching.wait_for(
                        lambda f: f["type"] == "sla_breach" and f["case_id"] == case_id,
                        timeout=1,
                    )

                await mine.close()
                await watching.wait_for(presence_of(agent, online=False))
                colleagues = (await supervisor.http.get("/api/staff/colleagues")).json()
                assert {c["id"]: c["online"] for c in colleagues["staff"]}[agent.id] is False
            finally:
                await watching.close()
                await agent.close()
                await supervisor.close()
