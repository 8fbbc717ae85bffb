"""The chat websocket, for victims and staff alike (protocol: docs/api/chat.md).

Every message is stored (encrypted, under the case's next sequence number) and committed
before it is acknowledged. Then the bus rings "message `seq` in case X", and the ring carries
the stored message as it is in the database: encrypted under the case key (never the text:
the bus may be Redis). Each connection sends a message frame only for the very next number it
owes its client, decrypting the ring's copy with the case key it holds; on any gap (a missed
or reordered ring, a reconnect, a ring without the message) it reads everything it has not
sent from the database, in order. So a connection never skips or repeats a message, whether
the ring came from this instance, another one, or (when Redis is down) a periodic look.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus, Message, Sender
from helpline.core.audit import record
from helpline.core.bus import Subscription
from helpline.core.clock import as_utc
from helpline.core.crypto import DecryptionError, FieldCipher, KeyShredded, case_scope
from helpline.core.db import Database
from helpline.core.errors import HelplineError, NotFound
from helpline.core.http import CheckedInHandshake, services, websocket_route
from helpline.core.metrics import websocket_connected
from helpline.core.services import Services

log = logging.getLogger("helpline.chat")

HELLO_TIMEOUT = 10.0
FALLBACK_POLL = 5.0  # how often to look in the database when the bus is down
READ_BATCH = 500  # messages per database read when catching up
LANE_SIZE = 8  # connections the chat keeps for storing messages (PostgreSQL)
# the console hears "something happened" at most this often per connection (seconds): a burst
# of messages is one notice at once and one at the end, not a queue refetch per message
ACTIVITY_INTERVAL = 0.5
LANE_KEY = "chat-lane"
MAX_FRAME = 16_000
STAFF_CAN_OPEN_ANY = ("supervisor", "admin")

HANDSHAKE = CheckedInHandshake("a victim's token or a staff session, checked in the hello frame")


class Refused(Exception):
    pass


class MessageLane:
    """A few database connections that the chat keeps checked out of the pool, in autocommit
    mode, while chats are open on this instance (PostgreSQL only). Storing a message is one
    statement (`service.post_message`), so over these it costs one round trip: no check-out
    with its ping, no BEGIN, no COMMIT. When the last chat closes, they go back to the pool."""

    def __init__(self, db: Database, size: int = LANE_SIZE) -> None:
        self.db = db
        self.users = 0
        self.idle: list[AsyncConnection] = []
        self.slots = asyncio.Semaphore(size)

    def join(self) -> None:
        self.users += 1

    async def leave(self) -> None:
        self.users -= 1
        while not self.users and self.idle:
            await self.idle.pop().close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        async with self.slots:
            if self.idle:
                connection = self.idle.pop()
            else:
                connection = await self.db.engine.connect()
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            healthy = True
            try:
                yield connection
            except HelplineError:
                raise  # a refusal; the connection is fine
            except BaseException:
                healthy = False  # perhaps cut off half-way through a statement
                with contextlib.suppress(Exception):
                    await connection.invalidate()
                raise
            finally:
                if healthy and self.users:
                    if connection.in_transaction():
                        await connection.commit()  # sends nothing in autocommit mode
                    self.idle.append(connection)
                else:
                    with contextlib.suppress(Exception):
                        await connection.close()


def _lane(found: Services) -> MessageLane | None:
    if not found.db.is_postgresql:
        return None  # SQLite stores inside a transaction holding the write lock
    lane = found.extras.get(LANE_KEY)
    if not isinstance(lane, MessageLane):
        lane = found.extras[LANE_KEY] = MessageLane(found.db)
    return lane


@contextlib.asynccontextmanager
async def _one_statement(found: Services) -> AsyncIterator[AsyncSession | AsyncConnection]:
    """Where to run work that is one statement: the lane if there is one, else a transaction."""
    lane = found.extras.get(LANE_KEY)
    if isinstance(lane, MessageLane) and lane.users:
        async with lane.connection() as connection:
            yield connection
    else:
        async with found.db.transaction() as session:
            yield session


@dataclass
class Participant:
    case_id: str
    side: Sender
    staff_id: str | None = None
    # an agent writes only while the case is theirs; supervisors may step into any chat
    writes_only_when_assigned: bool = False

    @property
    def writer(self) -> str | None:
        """The staff id the store must find the case assigned to, if any."""
        return self.staff_id if self.writes_only_when_assigned else None


@dataclass(slots=True)  # thousands of these: no __dict__ each
class Connection:
    websocket: WebSocket
    services: Services
    who: Participant
    last_sent: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # every bus message for this connection, from all its channels: one queue, no task each
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(1000))
    cipher: FieldCipher | None = None  # the case's, once unwrapped: not again on every read
    subscriptions: list[Subscription] = field(default_factory=list)
    dropped: int = 0  # rings the inbox had no room for, as far as handled
    activity_at: float = -ACTIVITY_INTERVAL  # (loop time) the last notice to the consoles
    activity_pending: bool = False  # something happened since that notice

    async def note_activity(self, *, flush: bool = False) -> None:
        """Tell the consoles that this case has news: now, unless they were told less than
        ACTIVITY_INTERVAL ago; then the writer tells them when the interval is over (the
        sender's own ring wakes it), or the connection does as it closes (`flush`)."""
        now = asyncio.get_running_loop().time()
        if flush or now - self.activity_at >= ACTIVITY_INTERVAL:
            self.activity_at, self.activity_pending = now, False
            await self.services.bus.publish(service.ACTIVITY_CHANNEL, {"type": "queue_changed"})
        else:
            self.activity_pending = True

    def activity_due_in(self) -> float | None:
        if not self.activity_pending:
            return None
        elapsed = asyncio.get_running_loop().time() - self.activity_at
        return max(0.0, ACTIVITY_INTERVAL - elapsed)

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.websocket.send_text(json.dumps(frame))

    async def send_new_messages(self) -> None:
        """Send every stored message this connection has not sent yet, in order."""
        async with self.lock:
            await self._send_from_database()

    async def deliver(self, ring: dict[str, Any]) -> None:
        """Pass on the message a ring announces: from the ring itself if it is the next one
        this connection owes, else (a gap, or a ring without the message) from the database."""
        async with self.lock:
            seq = ring.get("seq")
            if isinstance(seq, int) and seq <= self.last_sent:
                return  # sent already (read from the database on an earlier gap)
            frame = self._frame_from_ring(ring) if seq == self.last_sent + 1 else None
            if frame is None:
                await self._send_from_database()
                return
            await self.websocket.send_text(json.dumps(frame))
            self.last_sent = frame["seq"]

    def _frame_from_ring(self, ring: dict[str, Any]) -> dict[str, Any] | None:
        if self.cipher is None or not isinstance(ring.get("body"), str):
            return None
        try:
            text = self.cipher.decrypt_text(
                base64.b64decode(ring["body"], validate=True),
                table="messages",
                row_id=str(ring["id"]),
                field="body",
            )
            return {
                "type": "message",
                "seq": ring["seq"],
                "client_id": str(ring["client_id"]),
                "from": str(ring["from"]),
                "text": text,
                "at": str(ring["at"]),
            }
        except (KeyError, ValueError, binascii.Error, DecryptionError):
            return None  # not what we rang: the database has the message

    def rings_were_dropped(self) -> bool:
        """True once for every time the inbox overflowed since the last call."""
        dropped = sum(s.dropped for s in self.subscriptions)
        if dropped == self.dropped:
            return False
        self.dropped = dropped
        return True

    async def _send_from_database(self) -> None:
        # the caller holds the lock
        while True:
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
                    limit=READ_BATCH,
                    cipher=self.cipher,
                )
            for frame in frames:
                await self.websocket.send_text(json.dumps(frame))
                self.last_sent = frame["seq"]
            if len(frames) < READ_BATCH:
                return


def message_ring(message: Message) -> dict[str, Any]:
    """The ring for a stored message: all a connection needs to send it without reading the
    database, the text encrypted as stored (the ring may travel through Redis)."""
    return {
        "type": "message",
        "seq": message.seq,
        "id": message.id,
        "client_id": message.client_id,
        "from": message.sender,
        "at": as_utc(message.created_at).isoformat(),
        "body": base64.b64encode(message.body).decode(),
    }


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
    return Participant(
        case.id,
        Sender.staff,
        staff_id=principal.id,
        writes_only_when_assigned=principal.role not in STAFF_CAN_OPEN_ANY,
    )


async def _welcome(connection: Connection) -> None:
    found, who = connection.services, connection.who
    async with found.db.transaction() as session:
        case = await session.get(Case, who.case_id)
        assert case is not None
        position = await service.queue_position(session, case, now=found.clock.now())
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
    text, client_id = str(frame.get("text", "")), str(frame.get("client_id", ""))
    stored: tuple[Message, bool] | None = None
    reopened = False
    if connection.cipher is not None:
        # the common case, one round trip: store unless the case is closed or gone
        with contextlib.suppress(service.CaseClosed, NotFound):
            async with _one_statement(found) as session:
                stored = await service.post_message(
                    session,
                    found.keyring,
                    found.clock,
                    case_id=who.case_id,
                    sender=who.side,
                    text=text,
                    client_id=client_id,
                    staff_id=who.staff_id,
                    cipher=connection.cipher,
                    if_open=True,
                    writer=who.writer,
                )
    if stored is None:  # the first message (no key yet), or the case is closed or gone
        async with found.db.transaction() as session:
            case = await session.get(Case, who.case_id)
            if case is None:
                await connection.send({"type": "deleted"})
                return
            if case.status == CaseStatus.closed:
                if who.side != Sender.victim:
                    await connection.send(
                        {"type": "error", "code": "ended", "client_id": client_id}
                    )
                    return
                await service.reopen(session, found.clock, case)
                reopened = True
            stored = await service.post_message(
                session,
                found.keyring,
                found.clock,
                case_id=who.case_id,
                sender=who.side,
                text=text,
                client_id=client_id,
                staff_id=who.staff_id,
                cipher=connection.cipher,
                writer=who.writer,
            )
            if connection.cipher is None:  # the first message made the case's key: keep it
                connection.cipher = await found.keyring.cipher(session, case_scope(who.case_id))
    message, created = stored
    # committed: now acknowledge, and ring for everyone (this connection included)
    await connection.send({"type": "ack", "client_id": message.client_id, "seq": message.seq})
    # a retry rings again: its first ring may never have gone out (the sender's connection
    # dropped between the commit and the ring), and connections that have it skip it
    ring = message_ring(message)
    if not await found.bus.publish(service.channel(who.case_id), ring):
        with contextlib.suppress(asyncio.QueueFull):  # the bus is down: show it here at least
            connection.inbox.put_nowait(ring)
    if created:
        await connection.note_activity()
    if reopened:
        await found.bus.publish(service.QUEUE_CHANNEL, {"type": "queue_changed"})


async def _handle_read(connection: Connection, frame: dict[str, Any]) -> None:
    found, who = connection.services, connection.who
    seq = frame.get("seq")
    if not isinstance(seq, int) or seq < 1:
        return
    async with _one_statement(found) as session:
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
    """Forward what happens in the case, in the order it was heard."""
    found = connection.services
    inbox = connection.inbox
    while True:
        due = connection.activity_due_in()
        try:
            async with asyncio.timeout(FALLBACK_POLL if due is None else due):
                event = await inbox.get()
        except TimeoutError:
            if due is not None:
                await connection.note_activity()
            elif not found.bus.healthy:  # the bus may have lost rings: look for ourselves
                await connection.send_new_messages()
            continue
        events = [event]
        while not inbox.empty():
            events.append(inbox.get_nowait())
        if connection.rings_were_dropped():  # a ring that never came leaves no gap to see
            await connection.send_new_messages()
        for waiting in events:
            if waiting.get("type") == "message":
                await connection.deliver(waiting)
            elif not await _forward(connection, waiting):
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
            position = (
                await service.queue_position(session, case, now=found.clock.now()) if case else None
            )
        if position is not None:
            await connection.send(_queue_frame(found, position))
    elif kind in ("joined", "ended"):
        await connection.send(event)
    elif kind == "evidence" and who.side == Sender.staff:
        await connection.send(event)
    elif kind == "handover":  # a handover of the case changed: the client fetches it again
        frame = {"type": "handover"} if who.side == Sender.victim else event
        await connection.send(frame)
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
        stack.enter_context(websocket_connected(websocket, f"chat_{who.side.value}"))
        lane = _lane(found)
        if lane is not None:
            lane.join()
            stack.push_async_callback(lane.leave)
        # subscribe before reading the backlog: nothing can fall between the two
        connection.subscriptions.append(
            await stack.enter_async_context(
                found.bus.subscribe(service.channel(who.case_id), queue=connection.inbox)
            )
        )
        if who.side == Sender.victim:
            connection.subscriptions.append(
                await stack.enter_async_context(
                    found.bus.subscribe(service.QUEUE_CHANNEL, queue=connection.inbox)
                )
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
            if connection.activity_pending:
                with contextlib.suppress(Exception):  # the app may be stopping
                    await connection.note_activity(flush=True)


def chat_socket_routes() -> list[BaseRoute]:
    return [websocket_route("/ws/chat", chat_socket, access=HANDSHAKE)]
