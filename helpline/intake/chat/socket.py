"""The chat websocket, for victims and staff alike (protocol: docs/api/chat.md).

Every message is stored (encrypted, under the case's next sequence number) and committed
before it is acknowledged. Frames reach the other side by the doorbell pattern: the bus says
"something new in case X", and each connection reads what it has not sent yet from the
database, in sequence order. So a connection never skips or repeats a message, whether the
notification came from this instance, another one, or (when Redis is down) a periodic look.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus, Sender
from helpline.core.audit import record
from helpline.core.crypto import FieldCipher, KeyShredded, case_scope
from helpline.core.errors import HelplineError
from helpline.core.http import CheckedInHandshake, services, websocket_route
from helpline.core.services import Services

log = logging.getLogger("helpline.chat")

HELLO_TIMEOUT = 10.0
FALLBACK_POLL = 5.0  # how often to look in the database when the bus is down
MAX_FRAME = 16_000
STAFF_CAN_OPEN_ANY = ("supervisor", "admin")

HANDSHAKE = CheckedInHandshake("a victim's token or a staff session, checked in the hello frame")


class Refused(Exception):
    pass


@dataclass
class Participant:
    case_id: str
    side: Sender
    staff_id: str | None = None


@dataclass
class Connection:
    websocket: WebSocket
    services: Services
    who: Participant
    last_sent: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # every bus message for this connection, from all its channels: one queue, no task each
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(1000))
    cipher: FieldCipher | None = None  # the case's, once unwrapped: not again on every read

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.websocket.send_text(json.dumps(frame))

    async def send_new_messages(self) -> None:
        """Send every stored message this connection has not sent yet, in order."""
        async with self.lock:
            async with self.services.db.transaction() as session:
                if self.cipher is None:
                    with contextlib.suppress(KeyShredded):  # no key before the first message
                        self.cipher = await self.services.keyring.cipher(
                            session, case_scope(self.who.case_id), create=False
                        )
                frames = await service.messages_after(
                    session,
                    self.services.keyring,
                    self.who.case_id,
                    self.last_sent,
                    cipher=self.cipher,
                )
            for frame in frames:
                await self.websocket.send_text(json.dumps(frame))
                self.last_sent = frame["seq"]


async def _identify(websocket: WebSocket, hello: dict[str, Any]) -> Participant:
    found = services(websocket)
    if hello.get("token"):
        async with found.db.transaction() as session:
            case = await service.case_for_token(session, found.clock, str(hello["token"]))
        if case is None:
            raise Refused("unknown or expired token")
        return Participant(case.id, Sender.victim)
    authenticate = websocket.app.state.authenticators.get("staff")
    principal = await authenticate(websocket) if authenticate else None
    if principal is None or not hello.get("case"):
        raise Refused("no staff session")
    async with found.db.transaction() as session:
        case = await session.get(Case, str(hello["case"]))
        if case is None:
            raise Refused("no such case")
        if case.assigned_staff_id != principal.id and principal.role not in STAFF_CAN_OPEN_ANY:
            raise Refused("claim the case first")
        await record(
            session,
            found.clock,
            actor=f"staff:{principal.id}",
            action="case.open",
            target=f"case:{case.id}",
            details={"via": "chat"},
        )
    return Participant(case.id, Sender.staff, staff_id=principal.id)


async def _welcome(connection: Connection) -> None:
    found, who = connection.services, connection.who
    async with found.db.transaction() as session:
        case = await session.get(Case, who.case_id)
        assert case is not None
        position = await service.queue_position(session, case)
    await connection.send(
        {
            "type": "welcome",
            "reference": case.reference,
            # the victim's chat knows waiting/active/ended; staff see the case's own status
            "status": (
                CaseStatus(case.status).victim_view if who.side == Sender.victim else case.status
            ),
            "you": who.side.value,
            "staff_joined": case.assigned_staff_id is not None,
            "last_seq": case.last_seq,
            # how far the other side has read, so read marks survive a reload
            "peer_read_seq": case.staff_read_seq
            if who.side == Sender.victim
            else case.victim_read_seq,
        }
    )
    await connection.send_new_messages()
    if who.side == Sender.victim and position is not None:
        await connection.send(_queue_frame(found, position))


def _queue_frame(found: Services, position: int) -> dict[str, Any]:
    now = found.clock.now()
    hours = found.settings.hours
    opens_at = hours.next_opening(now)
    return {
        "type": "queue",
        "position": position,
        "open": hours.is_open(now),
        "opens_at": opens_at.isoformat() if opens_at else None,
    }


async def _handle_send(connection: Connection, frame: dict[str, Any]) -> None:
    found, who = connection.services, connection.who
    reopened = False
    async with found.db.transaction() as session:
        case = await session.get(Case, who.case_id)
        if case is None:
            await connection.send({"type": "deleted"})
            return
        if case.status == CaseStatus.closed:
            if who.side != Sender.victim:
                await connection.send(
                    {"type": "error", "code": "ended", "client_id": frame.get("client_id")}
                )
                return
            await service.reopen(session, found.clock, case)
            reopened = True
        message, created = await service.post_message(
            session,
            found.keyring,
            found.clock,
            case_id=who.case_id,
            sender=who.side,
            text=str(frame.get("text", "")),
            client_id=str(frame.get("client_id", "")),
            staff_id=who.staff_id,
            cipher=connection.cipher,
        )
        if connection.cipher is None:  # the first message made the case's key: keep it
            connection.cipher = await found.keyring.cipher(session, case_scope(who.case_id))
        seq = message.seq
    # committed: now acknowledge, and ring the bell for everyone (this connection included)
    await connection.send({"type": "ack", "client_id": message.client_id, "seq": seq})
    rung = created and await found.bus.publish(
        service.channel(who.case_id), {"type": "message", "seq": seq}
    )
    if not rung:  # a retry, or the bus is down: this connection still shows it
        connection.inbox.put_nowait({"type": "message"})
    if created:
        await found.bus.publish(service.ACTIVITY_CHANNEL, {"type": "queue_changed"})
    if reopened:
        await found.bus.publish(service.QUEUE_CHANNEL, {"type": "queue_changed"})


async def _handle_read(connection: Connection, frame: dict[str, Any]) -> None:
    found, who = connection.services, connection.who
    seq = frame.get("seq")
    if not isinstance(seq, int) or seq < 1:
        return
    async with found.db.transaction() as session:
        changed = await service.mark_read(session, who.case_id, who.side, seq)
    if changed:
        await found.bus.publish(
            service.channel(who.case_id), {"type": "read", "by": who.side.value, "seq": seq}
        )


async def _reader(connection: Connection) -> None:
    found, who = connection.services, connection.who
    while True:
        text = await connection.websocket.receive_text()
        if len(text) > MAX_FRAME:
            await connection.send({"type": "error", "code": "too_large"})
            continue
        try:
            frame = json.loads(text)
            kind = frame.get("type") if isinstance(frame, dict) else None
        except ValueError:
            kind = None
        try:
            if kind == "send":
                await _handle_send(connection, frame)
            elif kind == "typing":
                await found.bus.publish(
                    service.channel(who.case_id), {"type": "typing", "from": who.side.value}
                )
            elif kind == "read":
                await _handle_read(connection, frame)
            elif kind == "ping":
                await connection.send({"type": "pong"})
            else:
                await connection.send({"type": "error", "code": "unknown_frame"})
        except HelplineError as exc:
            await connection.send(
                {
                    "type": "error",
                    "code": exc.code,
                    "message": exc.message,
                    "client_id": frame.get("client_id"),
                }
            )


async def _writer(connection: Connection) -> None:
    """Forward what happens in the case; fetch new messages from the database on each bell
    (several bells waiting at once cost one read)."""
    found = connection.services
    inbox = connection.inbox
    while True:
        try:
            event = await asyncio.wait_for(inbox.get(), FALLBACK_POLL)
        except TimeoutError:
            if not found.bus.healthy:  # the bus may have lost bells: look for ourselves
                await connection.send_new_messages()
            continue
        events = [event]
        while not inbox.empty():  # take everything waiting: many bells, one read
            events.append(inbox.get_nowait())
        if any(e.get("type") == "message" for e in events):
            await connection.send_new_messages()
        for waiting in events:
            if not await _forward(connection, waiting):
                return


async def _forward(connection: Connection, event: dict[str, Any]) -> bool:
    """Pass on one bus event other than a message bell; False when the socket must close."""
    found, who = connection.services, connection.who
    kind = event.get("type")
    if kind in ("typing", "read"):
        if event.get("from", event.get("by")) != who.side.value:
            await connection.send(event)
    elif kind == "queue_changed" and who.side == Sender.victim:
        async with found.db.transaction() as session:
            case = await session.get(Case, who.case_id)
            position = await service.queue_position(session, case) if case else None
        if position is not None:
            await connection.send(_queue_frame(found, position))
    elif kind in ("joined", "ended"):
        await connection.send(event)
    elif kind == "evidence" and who.side == Sender.staff:
        await connection.send(event)
    elif kind == "deleted":
        await connection.send(event)
        await connection.websocket.close(code=4410)
        return False
    return True


async def chat_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        hello = json.loads(await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT))
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise Refused("the first frame must be hello")
        who = await _identify(websocket, hello)
        after = hello.get("after", 0)
        after = after if isinstance(after, int) and after >= 0 else 0
    except (Refused, ValueError, TimeoutError, HelplineError):
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps({"type": "error", "code": "unauthorized"}))
            await websocket.close(code=4401)
        return
    except WebSocketDisconnect:
        return
    found = services(websocket)
    connection = Connection(websocket, found, who, last_sent=after)
    async with contextlib.AsyncExitStack() as stack:
        # subscribe before reading the backlog: nothing can fall between the two
        await stack.enter_async_context(
            found.bus.subscribe(service.channel(who.case_id), queue=connection.inbox)
        )
        if who.side == Sender.victim:
            await stack.enter_async_context(
                found.bus.subscribe(service.QUEUE_CHANNEL, queue=connection.inbox)
            )
        await _welcome(connection)
        tasks = [
            asyncio.create_task(_reader(connection)),
            asyncio.create_task(_writer(connection)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect):
                    log.error("chat connection failed", extra={"error": type(error).__name__})
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def chat_socket_routes() -> list[BaseRoute]:
    return [websocket_route("/ws/chat", chat_socket, access=HANDSHAKE)]
