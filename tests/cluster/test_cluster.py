"""The chat through nginx over two instances, one of which dies mid-conversation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from bench.cluster import Cluster
from helpline.core.db import Database
from tests.intake.chatkit import ChatClient, StaffMember, Victim

pytestmark = pytest.mark.cluster


@dataclass
class Side:
    """One side of the conversation across its connections: every message frame it got (in
    the order it got them), and what it sent and which of that was acknowledged."""

    name: str
    chat: ChatClient
    seen: list[tuple[int, str]] = field(default_factory=list)  # (seq, client_id)
    sent: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.seen[-1][0] if self.seen else 0

    def instance(self, cluster: Cluster) -> int:
        return cluster.instance_of(dict(self.chat.socket.response.headers))  # type: ignore[union-attr]

    async def send(self, text: str) -> str:
        client_id = uuid.uuid4().hex
        self.sent.append(client_id)
        await self.chat.send({"type": "send", "client_id": client_id, "text": text})
        return client_id

    async def resend_unacked(self) -> None:
        """What a client does after reconnecting: send again whatever was not acknowledged,
        with the same client id (the server keeps the first and acknowledges it again)."""
        for client_id in self.sent:
            if client_id not in self.acked:
                await self.chat.send({"type": "send", "client_id": client_id, "text": "again"})

    async def pump_until(self, done: Any, timeout: float = 15) -> None:
        """Read frames, recording messages and acks, until `done(self)` holds."""
        async with asyncio.timeout(timeout):
            while not done(self):
                frame = json.loads(await self.chat.socket.recv())
                if frame["type"] == "message":
                    self.seen.append((frame["seq"], frame.get("client_id") or ""))
                elif frame["type"] == "ack":
                    self.acked.setdefault(frame["client_id"], frame["seq"])

    async def read_until_closed(self) -> None:
        """Record what the dying connection still delivered, until it is cut."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.pump_until(lambda _: False, timeout=15)


def saw(*client_ids: str) -> Any:
    return lambda side: set(client_ids) <= {c for _, c in side.seen}


def all_acked(side: Side) -> bool:
    return set(side.sent) <= set(side.acked)


async def test_the_chat_goes_on_through_the_other_instance_when_one_dies(
    cluster: Cluster,
) -> None:
    db = Database(cluster.database_url)
    victim = await Victim(cluster.url).start()  # through nginx, whichever instance
    agent = await StaffMember.create(db, cluster.url, "noor")
    sides: list[Side] = []
    try:
        case_id = await agent.claim(victim.reference)
        # the victim on instance 0, the staff member on instance 1, both through nginx
        you = Side("victim", await victim.chat(cluster.pinned_url(0, "ws")))
        staff = Side("staff", await agent.chat(cluster.pinned_url(1, "ws"), case_id))
        sides = [you, staff]
        assert (you.instance(cluster), staff.instance(cluster)) == (0, 1)

        # a conversation across the two instances
        for index in range(4):
            said = await you.send(f"victim {index}")
            await you.pump_until(lambda s, c=said: c in s.acked)
            answered = await staff.send(f"staff {index}")
            await staff.pump_until(lambda s, c=answered: c in s.acked)
        await you.pump_until(saw(*staff.sent, *you.sent))
        await staff.pump_until(saw(*you.sent, *staff.sent))

        # the victim's instance dies mid-conversation: one message stored and acknowledged,
        # more on their way (stored or not, acknowledged or not: the client cannot know)
        in_flight = [await you.send(f"in flight {index}") for index in range(3)]
        await you.pump_until(lambda s: in_flight[0] in s.acked)
        in_flight += [await you.send(f"in flight {index}") for index in range(3, 6)]
        await asyncio.to_thread(cluster.kill, 0)
        await you.read_until_closed()

        # both come back through nginx's balanced address and resume where they were; only
        # instance 1 is left to serve them
        await you.chat.close()
        you.chat = await victim.chat(cluster.ws_url, after=you.last_seq)
        assert you.instance(cluster) == 1
        await you.resend_unacked()
        await you.pump_until(all_acked)
        await staff.chat.close()
        staff.chat = await agent.chat(cluster.ws_url, case_id, after=staff.last_seq)
        assert staff.instance(cluster) == 1
        await staff.pump_until(saw(*in_flight))

        # and the conversation goes on
        for index in range(3):
            await you.send(f"after {index}")
            await staff.send(f"reply {index}")
        await you.pump_until(lambda s: all_acked(s) and saw(*staff.sent, *you.sent)(s))
        await staff.pump_until(lambda s: all_acked(s) and saw(*you.sent, *staff.sent)(s))

        # nothing lost, nothing doubled, the same order on both sides
        sent = you.sent + staff.sent
        for side in sides:
            seqs = [seq for seq, _ in side.seen]
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), side.name  # no gap, no repeat
            ids = [c for _, c in side.seen if c in sent]
            assert sorted(ids) == sorted(sent), side.name  # each message exactly once
        assert [m for m in you.seen if m[1] in sent] == [m for m in staff.seen if m[1] in sent]
        assert you.seen == staff.seen  # the system's messages too, if any
        acked = {**you.acked, **staff.acked}
        assert {c: s for s, c in staff.seen if c in sent} == acked  # stored where acknowledged
        # and the database agrees: one row per message sent, no more
        from sqlalchemy import text

        async with db.transaction() as session:
            stored = (
                await session.execute(
                    text("SELECT client_id FROM messages WHERE case_id = :case"), {"case": case_id}
                )
            ).scalars()
            assert sorted(c for c in stored if c in sent) == sorted(sent)
    finally:
        for side in sides:
            with contextlib.suppress(Exception):
                await side.chat.close()
        await agent.close()
        await db.dispose()
