"""Who is online in the console and which cases each has open, across all app instances.

Each console socket announces itself on the bus (`PRESENCE_CHANNEL`) when it opens, whenever its
open cases change, at least every 20 s as a heartbeat, and when it closes. Every instance keeps
one `PresenceRegistry`, subscribed to that channel once, that remembers the last announcement
of every console connection anywhere. An entry not refreshed within `EXPIRY` has gone (its
instance died, or the console stopped beating); a staff member is online while any of their
connections is. Times are read from the injected clock when an announcement arrives, so no two
instances' clocks are compared. A registry that starts (a new or restarted instance) asks on
the channel for everyone's presence (`presence_sync`), and every instance announces its own
consoles again at once, so the newcomer does not show an empty console until the next beat.

The registry hands its consoles one `presence` frame per staff member whose state changed:
`{"type": "presence", "staff": {"id", "name"}, "viewing": [...], "online": bool}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from helpline.core.bus import Bus
from helpline.core.clock import Clock
from helpline.core.services import Services

log = logging.getLogger("helpline.triage.presence")

PRESENCE_CHANNEL = "presence"
SYNC = {"type": "presence_sync"}
EXPIRY = timedelta(seconds=45)
SWEEP_SECONDS = 1.0  # how often expired entries are looked for (a dict walk: cheap)
MAX_VIEWING = 50
REGISTRY_KEY = "presence"

Frame = dict[str, Any]


@dataclass
class _Entry:
    staff_id: str
    name: str
    viewing: tuple[str, ...]
    seen_at: datetime


def _viewing(value: object) -> tuple[str, ...] | None:
    """Case ids as announced, or None if the value is not a short list of short strings."""
    if not isinstance(value, list) or len(value) > MAX_VIEWING:
        return None
    if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        return None
    return tuple(dict.fromkeys(value))  # unique, in the order given


class PresenceRegistry:
    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        *,
        expiry: timedelta = EXPIRY,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.expiry = expiry
        self.sweep_seconds = sweep_seconds
        self._entries: dict[str, _Entry] = {}  # by console connection id
        self._local: dict[str, Frame] = {}  # this instance's consoles: their last announcement
        self._listeners: set[asyncio.Queue[Frame]] = set()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._listen(subscribed), name="helpline-presence")
        waiting = asyncio.create_task(subscribed.wait())
        await asyncio.wait({waiting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            self._task.result()  # the listener died before subscribing: say why
        # subscribed: whatever the others announce from now on reaches us
        await self.bus.publish(PRESENCE_CHANNEL, SYNC)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, subscribed: asyncio.Event) -> None:
        async with self.bus.subscribe(PRESENCE_CHANNEL) as subscription:
            subscribed.set()
            while True:
                try:
                    message = await subscription.get(timeout=self.sweep_seconds)
                except TimeoutError:
                    pass
                else:
                    try:
                        if message.get("type") == SYNC["type"]:
                            await self._announce_local()
                        else:
                            self.apply(message)
                    except Exception:  # one odd message must not end presence for everyone
                        log.exception("presence message dropped")
                self.sweep()

    # ------------------------------------------------------------ announcing

    async def announce(
        self,
        connection_id: str,
        staff: dict[str, str],
        viewing: Iterable[str],
        *,
        online: bool = True,
    ) -> bool:
        """Tell every instance what this console connection has open (or that it closed)."""
        message = {
            "type": "presence",
            "connection": connection_id,
            "staff": {"id": staff["id"], "name": staff["name"]},
            "viewing": list(viewing) if online else [],
            "online": online,
        }
        if online:
            self._local[connection_id] = message
        else:
            self._local.pop(connection_id, None)
        return await self.bus.publish(PRESENCE_CHANNEL, message)

    async def _announce_local(self) -> None:
        """Announce this instance's consoles again (another instance has just started)."""
        for message in list(self._local.values()):
            await self.bus.publish(PRESENCE_CHANNEL, message)

    # ------------------------------------------------------------ keeping track

    def apply(self, message: Frame) -> None:
        connection = message.get("connection")
        staff = message.get("staff")
        viewing = _viewing(message.get("viewing", []))
        if (
            message.get("type") != "presence"
            or not isinstance(connection, str)
            or not isinstance(staff, dict)
            or not isinstance(staff.get("id"), str)
            or viewing is None
        ):
            return
        staff_id, name = staff["id"], str(staff.get("name", ""))
        before = self._state(staff_id)
        if message.get("online"):
            self._entries[connection] = _Entry(staff_id, name, viewing, self.clock.now())
        else:
            self._entries.pop(connection, None)
        if self._state(staff_id) != before:  # a heartbeat that changes nothing says nothing
            self._notify(staff_id, name)

    def sweep(self) -> None:
        """Forget connections not heard from within the expiry; tell consoles who went."""
        limit = self.clock.now() - self.expiry
        gone = {key: e for key, e in self._entries.items() if e.seen_at <= limit}
        for key in gone:
            del self._entries[key]
        for staff_id, name in {(e.staff_id, e.name) for e in gone.values()}:
            self._notify(staff_id, name)

    def _alive(self) -> list[_Entry]:
        limit = self.clock.now() - self.expiry
        return [e for e in self._entries.values() if e.seen_at > limit]

    def _state(self, staff_id: str) -> tuple[bool, tuple[str, ...]]:
        entries = [e for e in self._alive() if e.staff_id == staff_id]
        viewing = sorted({case_id for e in entries for case_id in e.viewing})
        return bool(entries), tuple(viewing)

    def frame(self, staff_id: str, name: str) -> Frame:
        online, viewing = self._state(staff_id)
        return {
            "type": "presence",
            "staff": {"id": staff_id, "name": name},
            "viewing": list(viewing),
            "online": online,
        }

    def _notify(self, staff_id: str, name: str) -> None:
        frame = self.frame(staff_id, name)
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck console must not stall us
                queue.put_nowait(dict(frame))

    # ------------------------------------------------------------ reading

    @contextlib.contextmanager
    def listening(self, queue: asyncio.Queue[Frame]) -> Any:
        """Receive a presence frame in `queue` whenever someone's presence changes."""
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def snapshot(self) -> list[Frame]:
        """A presence frame for everyone online now."""
        names = {e.staff_id: e.name for e in self._alive()}
        return [self.frame(staff_id, name) for staff_id, name in sorted(names.items())]

    def viewers(self, case_id: str) -> list[dict[str, str]]:
        """Staff who have the case open now, by name."""
        seen: dict[str, str] = {}
        for entry in self._alive():
            if case_id in entry.viewing:
                seen[entry.staff_id] = entry.name
        return [{"id": i, "name": n} for i, n in sorted(seen.items(), key=lambda x: x[1])]

    def online(self) -> set[str]:
        return {e.staff_id for e in self._alive()}

    def viewing_of(self, staff_id: str) -> list[str]:
        return list(self._state(staff_id)[1])


def presence_of(found: Services) -> PresenceRegistry:
    """This instance's registry (started with the app's services)."""
    registry = found.extras.get(REGISTRY_KEY)
    if not isinstance(registry, PresenceRegistry):
        raise RuntimeError("no presence registry: the app's services were not started")
    return registry


@contextlib.asynccontextmanager
async def running_presence(found: Services) -> AsyncIterator[PresenceRegistry]:
    """Start this instance's registry for as long as the block runs."""
    registry = PresenceRegistry(found.bus, found.clock)
    await registry.start()
    found.extras[REGISTRY_KEY] = registry
    try:
        yield registry
    finally:
        found.extras.pop(REGISTRY_KEY, None)
        await registry.stop()
