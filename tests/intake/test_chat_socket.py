"""The chat websocket against the real app under uvicorn: ordering, de-duplication, resume
after a reconnect and after a restart, two instances through Redis, and who may see what."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from helpline.core.config import Settings
from helpline.core.db import Database
from tests.intake.chatkit import StaffMember, Victim, open_chat
from tests.live import LiveServer, free_port, live_server, start_server


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def live_settings(settings_for: Any, database_url: str, port: int) -> Settings:
    result: Settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    return result


@pytest.fixture
async def server(live_settings: Settings, port: int) -> AsyncIterator[LiveServer]:
    async with live_server(live_settings, port=port) as running:
        yield running


async def test_messages_arrive_in_order_once_and_retries_are_not_doubled(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "anouk")
    case_id = await agent.claim(victim.reference)
    staff_chat = await agent.chat(server.ws_url, case_id)
    victim_chat = await victim.chat(server.ws_url)
    try:
        client_ids = [uuid.uuid4().hex for _ in range(20)]
        for index, client_id in enumerate(client_ids):
            await victim_chat.send({"type": "send", "client_id": client_id, "text": f"m{index}"})
        for client_id in client_ids[:5]:  # the client did not see these acks: it retries
            await victim_chat.send({"type": "send", "client_id": client_id, "text": "again"})
        acks = [
            await victim_chat.wait_for(lambda f, c=c: f["type"] == "ack" and f["client_id"] == c)
            for c in client_ids
        ]
        assert [a["seq"] for a in acks] == list(range(1, 21))
        retried = [await victim_chat.wait_for(lambda f: f["type"] == "ack") for _ in range(5)]
        assert [a["seq"] for a in retried] == list(range(1, 6))

        received = await staff_chat.messages(20)
        assert [m["seq"] for m in received] == list(range(1, 21))
        assert [m["text"] for m in received] == [f"m{i}" for i in range(20)]
        assert all(m["from"] == "victim" for m in received)
        with pytest.raises(TimeoutError):  # and nothing more: the retries were not stored again
            await staff_chat.wait_for(lambda f: f["type"] == "message", timeout=0.5)

        await agent_reply_and_typing(victim_chat, staff_chat)
    finally:
        await victim_chat.close()
        await staff_chat.close()
        await agent.close()


async def agent_reply_and_typing(victim_chat: Any, staff_chat: Any) -> None:
    await staff_chat.send({"type": "typing"})
    assert (await victim_chat.wait_for(lambda f: f["type"] == "typing"))["from"] == "staff"
    ack = await staff_chat.say("Ik ben er. Wat is er gebeurd?")
    message = await victim_chat.wait_for(lambda f: f["type"] == "message" and f["from"] == "staff")
    assert (message["seq"], message["text"]) == (ack["seq"], "Ik ben er. Wat is er gebeurd?")
    await victim_chat.send({"type": "read", "seq": ack["seq"]})
    read = await staff_chat.wait_for(lambda f: f["type"] == "read")
    assert (read["by"], read["seq"]) == ("victim", ack["seq"])


async def test_a_reconnecting_victim_gets_exactly_what_it_missed(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "bram")
    case_id = await agent.claim(victim.reference)
    staff_chat = await agent.chat(server.ws_url, case_id)
    first = await victim.chat(server.ws_url)
    try:
        await first.say("hallo")
        [seen] = await first.messages(1)
        await first.close()  # the network drops
        for text in ("een", "twee", "drie"):
            await staff_chat.say(text)
        again = await victim.chat(server.ws_url, after=seen["seq"])
        missed = await again.messages(3)
        assert [m["text"] for m in missed] == ["een", "twee", "drie"]
        assert [m["seq"] for m in missed] == [seen["seq"] + 1, seen["seq"] + 2, seen["seq"] + 3]
        with pytest.raises(TimeoutError):
            await again.wait_for(lambda f: f["type"] == "message", timeout=0.5)
        await again.close()
    finally:
        await staff_chat.close()
        await agent.close()


async def test_the_conversation_survives_an_app_restart(
    live_settings: Settings, port: int, db: Database
) -> None:
    running = await start_server(live_settings, port=port)
    victim = await Victim(running.url).start()
    chat = await victim.chat(running.ws_url)
    await chat.say("voor de herstart")
    await chat.messages(1)
    await running.stop()
    with pytest.raises(ConnectionClosed):  # the server went away (frames before that are fine)
        while True:
            await chat.next_frame(timeout=5)

    async with live_server(live_settings, port=port) as restarted:
        agent = await StaffMember.create(db, restarted.url, "carla")
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(restarted.ws_url, case_id)
        try:
            history = await staff_chat.messages(1)
            assert history[0]["text"] == "voor de herstart"
            await staff_chat.say("na de herstart")
            back = await victim.chat(restarted.ws_url, after=1)
            [missed] = await back.messages(1)
            assert (missed["seq"], missed["text"]) == (2, "na de herstart")
            await back.close()
        finally:
            await staff_chat.close()
            await agent.close()


async def test_victim_and_staff_on_two_instances_talk_through_redis(
    settings_for: Any, database_url: str, db: Database, redis_server_url: str
) -> None:
    ports = [free_port(), free_port()]
    settings = [
        settings_for(database_url, base_url=f"http://127.0.0.1:{p}", redis_url=redis_server_url)
        for p in ports
    ]
    async with live_server(settings[0], port=ports[0]) as one:
        async with live_server(settings[1], port=ports[1]) as two:
            victim = await Victim(one.url).start()
            agent = await StaffMember.create(db, two.url, "dirk")
            case_id = await agent.claim(victim.reference)
            victim_chat = await victim.chat(one.ws_url)
            staff_chat = await agent.chat(two.ws_url, case_id)
            try:
                for index in range(5):
                    await victim_chat.say(f"via instance one {index}")
                got = await staff_chat.messages(5)
                assert [m["text"] for m in got] == [f"via instance one {i}" for i in range(5)]
                await agent_reply_and_typing(victim_chat, staff_chat)
            finally:
                await victim_chat.close()
                await staff_chat.close()
                await agent.close()


async def test_nobody_reads_a_case_that_is_not_theirs(server: LiveServer, db: Database) -> None:
    victim = await Victim(server.url).start()
    other = await Victim(server.url).start()
    owner = await StaffMember.create(db, server.url, "eva")
    colleague = await StaffMember.create(db, server.url, "femke")
    case_id = await owner.claim(victim.reference)
    try:
        # a victim's token opens only its own case, whatever it asks for
        chat = await open_chat(server.ws_url, {"token": other.token, "case": case_id})
        assert chat.welcome["reference"] == other.reference
        await chat.close()
        # a wrong token, or none, is refused and the socket closed
        for hello in ({"token": "forged"}, {"case": case_id}):
            async with connect(f"{server.ws_url}/ws/chat") as socket:
                await socket.send(json.dumps({"type": "hello", **hello}))
                assert '"unauthorized"' in str(await socket.recv())
                with pytest.raises(ConnectionClosed) as closed:
                    await socket.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        # an agent cannot open a colleague's case, over the socket or over HTTP
        refused = await open_chat_refused(colleague, server, case_id)
        assert refused
        history = await colleague.http.get(f"/api/staff/cases/{case_id}/messages")
        assert history.status_code == 403

        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            for path in ("/api/staff/cases", f"/api/staff/cases/{case_id}/messages"):
                assert (await anonymous.get(path)).status_code == 401
                bearer = {"Authorization": f"Bearer {victim.token}"}
                assert (await anonymous.get(path, headers=bearer)).status_code == 401
            # victims' endpoints refuse anyone without a token
            assert (await anonymous.post("/api/chat/end")).status_code == 401
        # state-changing staff calls need the CSRF token
        no_csrf = await owner.http.post(
            f"/api/staff/cases/{case_id}/close",
            headers={"Origin": server.url},
            json={"outcome": "advice_only"},
        )
        assert no_csrf.status_code == 403
    finally:
        await owner.close()
        await colleague.close()


async def open_chat_refused(member: StaffMember, server: LiveServer, case_id: str) -> bool:
    chat = await member.chat(server.ws_url, case_id)
    return chat.welcome.get("type") == "error"


async def test_the_victim_hears_who_joins_and_the_staff_hear_when_it_ends(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    victim_chat = await victim.chat(server.ws_url)
    assert victim_chat.welcome["status"] == "waiting"
    queue = await victim_chat.wait_for(lambda f: f["type"] == "queue")
    assert queue["position"] >= 1 and queue["open"] is True
    agent = await StaffMember.create(db, server.url, "gijs")
    try:
        case_id = await agent.claim(victim.reference)
        await victim_chat.wait_for(lambda f: f["type"] == "joined")
        staff_chat = await agent.chat(server.ws_url, case_id)
        ended = await agent.post(
            f"/api/staff/cases/{case_id}/close", json={"outcome": "advice_only"}
        )
        assert (ended.json()["status"], ended.json()["outcome"]) == ("closed", "advice_only")
        assert (await victim_chat.wait_for(lambda f: f["type"] == "ended"))["by"] == "staff"
        # staff cannot write to an ended chat; the victim can, and is back in the queue
        await staff_chat.send({"type": "send", "client_id": "late", "text": "nog iets"})
        refused = await staff_chat.wait_for(lambda f: f["type"] == "error")
        assert refused["code"] == "ended"
        await victim_chat.say("ik ben er nog")
        cases = (await agent.http.get("/api/staff/cases")).json()["cases"]
        assert [c["status"] for c in cases if c["id"] == case_id] == ["new"]
        # deleting everything tells the staff side, and the case is gone
        async with httpx.AsyncClient(base_url=server.url) as http:
            deleted = await http.post(
                "/api/chat/delete",
                headers={"Authorization": f"Bearer {victim.token}"},
                json={"confirm": True},
            )
        assert deleted.status_code == 200
        await staff_chat.wait_for(lambda f: f["type"] == "deleted")
        cases = (await agent.http.get("/api/staff/cases")).json()["cases"]
        assert case_id not in [c["id"] for c in cases]
        await staff_chat.close()
    finally:
        await victim_chat.close()
        await agent.close()


async def test_staff_who_lose_a_case_can_no_longer_write_in_it(
    server: LiveServer, db: Database
) -> None:
    """A released (or transferred) case takes no more messages from an agent's already open
    chat: the store itself checks who has the case. (Supervisors may step into any chat.)"""
    victim = await Victim(server.url).start()
    victim_chat = await victim.chat(server.ws_url)
    agent = await StaffMember.create(db, server.url, "joost")
    try:
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(server.ws_url, case_id)
        first = await staff_chat.say("Hallo, ik ben Joost.")
        assert first["type"] == "ack"
        released = await agent.post(f"/api/staff/cases/{case_id}/release")
        assert released.status_code == 200, released.text
        await staff_chat.send({"type": "send", "client_id": "after-release", "text": "nog iets"})
        refused = await staff_chat.wait_for(
            lambda f: f["type"] == "error" and f.get("client_id") == "after-release"
        )
        assert refused["code"] == "not_assigned"
        # nothing was stored: the victim's history holds only the first message
        history = await victim.chat(server.ws_url)
        texts = [f["text"] for f in await history.messages(1)]
        assert texts == ["Hallo, ik ben Joost."]
        with pytest.raises(TimeoutError):
            await history.wait_for(lambda f: f["type"] == "message", timeout=1)
        await history.close()
        await staff_chat.close()
    finally:
        await victim_chat.close()
        await agent.close()
