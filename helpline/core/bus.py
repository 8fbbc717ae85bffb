"""Publish/subscribe between the parts of the app and between app instances.

The bus is a doorbell, not a mailbox: what matters is stored in the database first, and a
message on the bus only tells listeners to look. A listener that missed messages (a Redis
outage, a reconnect) catches up from the database. So `publish` never raises: when Redis is
down it reports `False`, and readiness shows the bus as degraded until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("helpline.bus")

Message = dict[str, Any]
QUEUE_SIZE = 1000


class Subscription:
    """Messages of one channel, in the order published, for as long as the block runs."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def deliver(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:  # a stuck listener must not stall the others
            self.dropped += 1

    async def get(self, timeout: float | None = None) -> Message:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            yield await self.queue.get()


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, channel: str, message: Message) -> bool:
        """Send to every subscriber of `channel` in every instance; False if it could not."""
        ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    @property
    def healthy(self) -> bool: ...


class _Subscribers:
    def __init__(self) -> None:
        self.by_channel: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> bool:
        """Add; True if it is the channel's first subscriber."""
        subscribers = self.by_channel.setdefault(subscription.channel, set())
        subscribers.add(subscription)
        return len(subscribers) == 1

    def remove(self, subscription: Subscription) -> bool:
        """Remove; True if the channel has no subscribers left."""
        subscribers = self.by_channel.get(subscription.channel, set())
        subscribers.discard(subscription)
        if not subscribers:
            self.by_channel.pop(subscription.channel, None)
            return True
        return False

    def deliver(self, channel: str, message: Message) -> None:
        for subscription in list(self.by_channel.get(channel, ())):
            subscription.deliver(message)


class MemoryBus:
    """In-process bus: enough for one app instance."""

    def __init__(self) -> None:
        self._subscribers = _Subscribers()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def healthy(self) -> bool:
        return True

    async def publish(self, channel: str, message: Message) -> bool:
        # a round trip through JSON, like Redis: no listener shares a mutable object with the sender
        self._subscribers.deliver(channel, json.loads(json.dumps(message)))
        return True

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.remove(subscription)


class RedisBus:
    """Redis pub/sub shared by all instances. One connection listens for the whole process;
    when it drops, it reconnects with exponential back-off and re-subscribes."""

    def __init__(self, url: str, *, prefix: str = "helpline:", max_backoff: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.max_backoff = max_backoff
        self._subscribers = _Subscribers()
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._healthy = False
        self._lock = asyncio.Lock()

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=10
        )
        self._listener = asyncio.create_task(self._listen(), name="helpline-bus-listener")
        # wait briefly for the first connection; if Redis is down the app still starts, degraded
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 3)

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        if self._client is not None:
            await self._client.aclose()

    async def publish(self, channel: str, message: Message) -> bool:
        assert self._client is not None, "bus not started"
        try:
            await self._client.publish(self.prefix + channel, json.dumps(message))
        except (RedisError, OSError) as exc:
            log.warning("bus publish failed", extra={"error": type(exc).__name__})
            self._healthy = False
            return False
        return True

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel)
        if self._subscribers.add(subscription):
            await self._send_subscription("subscribe", channel)
        try:
            yield subscription
        finally:
            if self._subscribers.remove(subscription):
                await self._send_subscription("unsubscribe", channel)

    async def _send_subscription(self, verb: str, channel: str) -> None:
        async with self._lock:
            if self._pubsub is None or not self._connected.is_set():
                return  # the listener (re)subscribes to every live channel when it connects
            try:
                await getattr(self._pubsub, verb)(self.prefix + channel)
            except (RedisError, OSError):
                self._healthy = False  # the listener notices and reconnects

    async def _listen(self) -> None:
        assert self._client is not None
        attempt = 0
        while True:
            try:
                async with self._lock:
                    self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    # a control channel keeps the connection subscribed even with no listeners
                    channels = [self.prefix + "_control"]
                    channels += [self.prefix + c for c in self._subscribers.by_channel]
                    await self._pubsub.subscribe(*channels)
                    self._connected.set()
                if attempt:
                    log.info("bus reconnected", extra={"attempts": attempt})
                self._healthy = True
                attempt = 0
                while True:
                    message = await self._pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel = message["channel"].decode()[len(self.prefix) :]
                    try:
                        payload = json.loads(message["data"])
                    except ValueError:
                        continue
                    self._subscribers.deliver(channel, payload)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._connected.clear()
                self._healthy = False
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None
                attempt += 1
                delay = min(self.max_backoff, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "bus connection lost; reconnecting",
                    extra={
                        "error": type(exc).__name__,
                        "attempt": attempt,
                        "delay": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)


def create_bus(redis_url: str | None, *, prefix: str = "helpline:") -> MemoryBus | RedisBus:
    return RedisBus(redis_url, prefix=prefix) if redis_url else MemoryBus()
