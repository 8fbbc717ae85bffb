"""How chat messages travel: stored in one statement, delivered from the bus's ring without a
database read, and read from the database only when a ring is missing, forged or late.

The ordering, de-duplication, reconnect and restart guarantees themselves are in
test_chat_socket.py; this file covers the fast path and each of its fall-backs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlmodel import col

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus, Message, Sender
from helpline.core.clock import FrozenClock, SystemClock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring, MasterKeys, case_scope
from helpline.core.db import Database
from helpline.core.errors import NotFound
from helpline.intake.chat import socket as chat_socket
from tests.conftest import TEST_MASTER_KEY
from tests.intake.chatkit import ChatClient, StaffMember, Victim
from tests.live import LiveServer, free_port, live_server


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def server(settings_for: Any, database_url: str, port: int) -> AsyncIterator[LiveServer]:
    settings: Settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    async with live_server(settings, port=port) as running:
        yield running


class Reads:
    """Counts the chat's reads of messages from the database (the real function runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = service.messages_after

        async def counted(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            self.count += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(service, "messages_after", counted)


async def conversation(
    server: LiveServer, db: Database, name: str
) -> tuple[Victim, StaffMember, str, ChatClient, ChatClient]:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, name)
    case_id = await agent.claim(victim.reference)
    victim_chat = await victim.chat(server.ws_url)
    staff_chat = await agent.chat(server.ws_url, case_id)
    return victim, agent, case_id, victim_chat, staff_chat


async def store_quietly(
    db: Database, case_id: str, text: str, sender: Sender, client_id: str | None = None
) -> Message:
    """A message stored as the socket would, but with no ring on the bus: a missed ring."""
    keyring = Keyring(MasterKeys.from_keys([TEST_MASTER_KEY]))
    async with db.transaction() as session:
        message, created = await service.post_message(
            session,
            keyring,
            SystemClock(),
            case_id=case_id,
            sender=sender,
            text=text,
            client_id=client_id or uuid.uuid4().hex,
        )
    assert created
    return message


async def test_messages_go_from_the_ring_to_the_other_side_without_a_database_read(
    server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, agent, _, victim_chat, staff_chat = await conversation(server, db, "hanna")
    try:
        await victim_chat.say("de eerste maakt de sleutel van de zaak")
        await staff_chat.messages(1)
        await victim_chat.messages(1)
        reads = Reads(monkeypatch)
        for index in range(10):
            await victim_chat.say(f"bericht {index}")
        await staff_chat.say("ik lees mee")
        got = await staff_chat.messages(11)
        echoed = await victim_chat.messages(11)
        assert [m["seq"] for m in got] == list(range(2, 13))
        assert [m["text"] for m in got] == [*(f"bericht {i}" for i in range(10)), "ik lees mee"]
        assert echoed == got  # the sender's own copy is the same frame
        assert all(m["at"] and m["client_id"] for m in got)
        assert reads.count == 0  # every frame came from the ring
    finally:
        await victim_chat.close()
        await staff_chat.close()
        await agent.close()


async def test_a_missed_ring_is_noticed_at_the_next_one_and_read_from_the_database(
    server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, agent, case_id, victim_chat, staff_chat = await conversation(server, db, "ines")
    try:
        await victim_chat.say("hallo")
        await staff_chat.messages(1)
        await victim_chat.messages(1)
        reads = Reads(monkeypatch)
        missed = await store_quietly(db, case_id, "zonder bel", Sender.victim)
        await victim_chat.say("met bel")
        got = await staff_chat.messages(2)
        assert [(m["seq"], m["text"]) for m in got] == [
            (missed.seq, "zonder bel"),
            (missed.seq + 1, "met bel"),
        ]
        assert [m["seq"] for m in await victim_chat.messages(2)] == [missed.seq, missed.seq + 1]
        assert reads.count == 2  # one catch-up read per connection, at the gap
        with pytest.raises(TimeoutError):  # and nothing twice
            await staff_chat.wait_for(lambda f: f["type"] == "message", timeout=0.5)
    finally:
        await victim_chat.close()
        await staff_chat.close()
        await agent.close()


async def test_a_retried_send_rings_again_for_a_message_whose_ring_was_lost(
    server: LiveServer, db: Database
) -> None:
    _, agent, case_id, victim_chat, staff_chat = await conversation(server, db, "joost")
    try:
        await victim_chat.say("hallo")
        await staff_chat.messages(1)
        await victim_chat.messages(1)
        # stored, then the sender's connection dropped before the ack and the ring went out
        lost = await store_quietly(db, case_id, "verloren bel", Sender.victim, "retry-me")
        ack = await victim_chat.say("verloren bel", client_id="retry-me")  # the client retries
        assert ack["seq"] == lost.seq
        [got] = await staff_chat.messages(1)
        assert (got["seq"], got["text"]) == (lost.seq, "verloren bel")
        [echo] = await victim_chat.messages(1)  # the sender sees it once too
        assert echo["seq"] == lost.seq
        await victim_chat.say("verloren bel", client_id="retry-me")  # once more: no double
        with pytest.raises(TimeoutError):
            await staff_chat.wait_for(lambda f: f["type"] == "message", timeout=0.5)
        with pytest.raises(TimeoutError):
            await victim_chat.wait_for(lambda f: f["type"] == "message", timeout=0.3)
    finally:
        await victim_chat.close()
        await staff_chat.close()
        await agent.close()


async def test_the_consoles_hear_of_a_burst_of_messages_once_at_once_and_once_at_the_end(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_socket, "ACTIVITY_INTERVAL", 1.0)
    bus = server.server.lifespan.state["services"].bus  # type: ignore[attr-defined]
    victim = await Victim(server.url).start()
    chat = await victim.chat(server.ws_url)
    async with bus.subscribe(service.ACTIVITY_CHANNEL) as console:
        await chat.say("eerste")
        assert (await console.get(timeout=0.5))["type"] == "queue_changed"  # at once
        for index in range(9):
            await chat.say(f"nog {index}")
        await chat.close()  # a notice still owed goes out as the connection closes
        later = [await console.get(timeout=3)]
        with contextlib.suppress(TimeoutError):
            while True:
                later.append(await console.get(timeout=1.5))
    assert 1 <= len(later) <= 2  # not one per message


async def test_a_reconnect_gets_a_long_backlog_in_several_reads(
    server: LiveServer, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_socket, "READ_BATCH", 3)
    victim = await Victim(server.url).start()
    chat = await victim.chat(server.ws_url)
    for index in range(8):
        await chat.say(f"m{index}")
    await chat.close()
    again = await victim.chat(server.ws_url, after=1)
    try:
        backlog = await again.messages(7)
        assert [m["text"] for m in backlog] == [f"m{i}" for i in range(1, 8)]
        with pytest.raises(TimeoutError):
            await again.wait_for(lambda f: f["type"] == "message", timeout=0.5)
    finally:
        await again.close()


async def test_the_service_levels_move_with_the_messages_sent_over_the_socket(
    server: LiveServer, db: Database
) -> None:
    _, agent, case_id, victim_chat, staff_chat = await conversation(server, db, "jet")

    async def case() -> Case:
        async with db.transaction() as session:
            found = await session.get(Case, case_id)
        assert found is not None
        return found

    try:
        await victim_chat.say("is daar iemand?")
        waiting = await case()
        assert waiting.awaiting_since is not None and waiting.first_response_at is None
        await victim_chat.say("hallo?")
        assert (await case()).awaiting_since == waiting.awaiting_since  # the oldest one counts
        await staff_chat.say("ja, ik ben er")
        answered = await case()
        assert answered.awaiting_since is None and answered.first_response_at is not None
        await staff_chat.say("vertel maar")
        assert (await case()).first_response_at == answered.first_response_at
        async with db.transaction() as session:
            await session.execute(
                update(Case)
                .where(col(Case.id) == case_id)
                .values(status=CaseStatus.waiting_victim.value)
            )
        await victim_chat.say("hier ben ik weer")
        back = await case()
        assert back.status == CaseStatus.in_conversation and back.awaiting_since is not None
        assert back.last_seq == 5
    finally:
        await victim_chat.close()
        await staff_chat.close()
        await agent.close()


async def test_rings_carry_the_message_encrypted_and_a_forged_one_is_not_delivered(
    settings_for: Any, database_url: str, db: Database, redis_server_url: str, port: int
) -> None:
    settings: Settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", redis_url=redis_server_url
    )
    listener = aioredis.Redis.from_url(redis_server_url)
    pubsub = listener.pubsub()
    async with live_server(settings, port=port) as running:
        _, agent, case_id, victim_chat, staff_chat = await conversation(running, db, "kees")
        channel = f"helpline:{service.channel(case_id)}"
        try:
            await pubsub.subscribe(channel)
            await victim_chat.say("dit is geheim")
            await staff_chat.messages(1)
            ring = await next_ring(pubsub)
            assert "text" not in ring and b"geheim" not in base64.b64decode(ring["body"])
            keyring = Keyring(MasterKeys.from_keys([TEST_MASTER_KEY]))
            async with db.transaction() as session:
                cipher = await keyring.cipher(session, case_scope(case_id), create=False)
            plain = cipher.decrypt_text(
                base64.b64decode(ring["body"]), table="messages", row_id=ring["id"], field="body"
            )
            assert plain == "dit is geheim"

            # a message stored without a ring, then a forged ring for its number: the forged
            # body does not decrypt, so the connection reads the real message instead
            quiet = await store_quietly(db, case_id, "het echte bericht", Sender.victim)
            forged = {**ring, "seq": quiet.seq, "id": quiet.id, "client_id": quiet.client_id}
            forged["body"] = base64.b64encode(os.urandom(60)).decode()
            await listener.publish(channel, json.dumps(forged))
            [real] = await staff_chat.messages(1)
            assert (real["seq"], real["text"]) == (quiet.seq, "het echte bericht")
            with pytest.raises(TimeoutError):
                await staff_chat.wait_for(lambda f: f["type"] == "message", timeout=0.5)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()
            await victim_chat.close()
            await staff_chat.close()
            await agent.close()


async def next_ring(pubsub: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if got is not None and json.loads(got["data"]).get("type") == "message":
                ring: dict[str, Any] = json.loads(got["data"])
                return ring


# ---------------------------------------------------------------- the store itself


async def test_racing_retries_over_autocommit_connections_store_once_without_gaps(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    if not db.is_postgresql:
        pytest.skip("bare autocommit connections are for PostgreSQL")
    async with db.transaction() as session:
        case_id = (await service.start_chat(session, clock, language="nl", topic=None)).case.id
        cipher = await keyring.cipher(session, case_scope(case_id))

    async def send(client_id: str) -> tuple[int, bool]:
        async with db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            message, created = await service.post_message(
                connection,
                keyring,
                clock,
                case_id=case_id,
                sender=Sender.victim,
                text=f"tekst {client_id}",
                client_id=client_id,
                cipher=cipher,
                if_open=True,
            )
            return message.seq, created

    retried = [send("same") for _ in range(6)]
    others = [send(f"other-{i}") for i in range(6)]
    results = await asyncio.gather(*retried, *others)
    same = results[:6]
    assert sum(created for _, created in same) == 1
    assert len({seq for seq, _ in same}) == 1  # every retry acked with the stored number
    assert sorted({seq for seq, _ in results}) == list(range(1, 8))
    async with db.transaction() as session:
        case = await session.get(Case, case_id)
        stored = (
            await session.execute(
                select(func.count()).select_from(Message).where(col(Message.case_id) == case_id)
            )
        ).scalar_one()
    assert case is not None and case.last_seq == stored == 7  # no number was skipped


async def test_a_closed_or_missing_case_gets_nothing_stored(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    async with db.transaction() as session:
        case = (await service.start_chat(session, clock, language="nl", topic=None)).case
        await service.end(session, clock, case, by="victim")

    async def post(case_id: str, if_open: bool) -> int:
        async with db.transaction() as session:
            message, _ = await service.post_message(
                session,
                keyring,
                clock,
                case_id=case_id,
                sender=Sender.staff,
                text="te laat",
                client_id=uuid.uuid4().hex,
                if_open=if_open,
            )
        return message.seq

    with pytest.raises(service.CaseClosed):
        await post(case.id, if_open=True)
    with pytest.raises(NotFound):
        await post(uuid.uuid4().hex, if_open=True)
    async with db.transaction() as session:
        assert (await session.get(Case, case.id)).last_seq == 0  # type: ignore[union-attr]
    assert await post(case.id, if_open=False) == 1  # a caller that reopened on purpose


async def test_the_lane_reuses_its_connections_and_gives_them_back_with_the_last_chat(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    if not db.is_postgresql:
        pytest.skip("the lane is for PostgreSQL")
    lane = chat_socket.MessageLane(db, size=2)
    lane.join()
    async with lane.connection() as first:
        pass
    async with lane.connection() as again:
        assert again is first  # kept checked out between messages
        await again.execute(select(1))
        raw = await again.get_raw_connection()
        assert not raw.driver_connection.is_in_transaction()  # type: ignore[union-attr]  # autocommit: no BEGIN sent
    with pytest.raises(ZeroDivisionError):  # anything but a refusal: do not trust it again
        async with lane.connection() as broken:
            assert broken is first
            raise ZeroDivisionError
    async with lane.connection() as fresh:
        assert fresh is not first
    assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    await lane.leave()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
