"""Publish/subscribe between the parts of the app and between app instances.

The bus is a doorbell, not a mailbox: what matters is stored in the database first, and a
message on the bus only tells listeners to look. A listener that missed messages (a Redis
outage, a reconnect) catches up from the database. So `publish` never raises: when Redis is
down it reports `False`, and readiness shows the bus as degraded until it is back.

When `subscribe` has entered its block, the subscription is in place: a message published from
then on, by any instance, arrives. So "subscribe, then read the database" misses nothing.
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
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger("helpline.bus")

Message = dict[str, Any]
QUEUE_SIZE = 1000


class Subscription:
    """Messages of one channel, in the order published, for as long as the block runs."""

    def __init__(self, channel: str, queue: asyncio.Queue[Message] | None = None) -> None:
        self.channel = channel
        # several subscriptions may share one queue: a listener of many channels needs no
        # task per channel (thousands of chat connections each listen to two or three)
        self.queue: asyncio.Queue[Message] = (
            queue if queue is not None else asyncio.Queue(QUEUE_SIZE)
        )
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
        """Send to every subscriber of `channel` in every instance; False if it could not.
        A message that is not JSON raises `TypeError` (or `ValueError`), whatever the bus."""
        ...

    def subscribe(
        self, channel: str, *, queue: asyncio.Queue[Message] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

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

    def deliver(self, channel: str, text: str | bytes) -> None:
        # each subscriber decodes its own copy: no listener shares a mutable object with the
        # sender or with another listener, and the in-process bus behaves like Redis
        for subscription in list(self.by_channel.get(channel, ())):
            try:
                message = json.loads(text)
            except ValueError:
                log.warning("bus message is not JSON; dropped")
                return
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
        self._subscribers.deliver(channel, json.dumps(message))
        return True

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, queue: asyncio.Queue[Message] | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel, queue)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.remove(subscription)


class RedisBus:
    """Redis pub/sub shared by all instances. One connection listens for the whole process;
    when it drops, or stops answering pings, the bus reports itself unhealthy, reconnects with
    exponential back-off and re-subscribes.

    `timeout` bounds every wait on Redis (connecting, publishing, a subscription being
    confirmed), so a Redis that hangs costs a caller seconds, not a stuck request.
    `client_name` names the bus's connections in Redis's `CLIENT LIST`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "helpline:",
        max_backoff: float = 5.0,
        ping_interval: float = 5.0,
        timeout: float = 2.0,
        client_name: str | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.max_backoff = max_backoff
        self.ping_interval = ping_interval
        self.timeout = timeout
        self.client_name = client_name
        self._subscribers = _Subscribers()
        self._publisher: aioredis.Redis | None = None
        self._listening: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._healthy = False
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # orders (un)subscribe commands with (re)connecting
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}
        self._attempt = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    def _client(self) -> aioredis.Redis:
        # from_url gives no retries inside redis-py: a failure surfaces here at once, and the
        # listener, not the driver, decides when to reconnect (and reports it meanwhile)
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            client_name=self.client_name,
        )

    async def start(self) -> None:
        self._publisher = self._client()
        self._listening = self._client()
        self._listener = asyncio.create_task(self._listen(), name="helpline-bus-listener")
        # wait briefly for the first connection; if Redis is down the app still starts, degraded
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.timeout + 1)

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._drop_connection()
        for client in (self._publisher, self._listening):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self._publisher = self._listening = None

    async def publish(self, channel: str, message: Message) -> bool:
        assert self._publisher is not None, "bus not started"
        text = json.dumps(message)  # not JSON: the caller's mistake, raised like MemoryBus does
        try:
            await self._publisher.publish(self.prefix + channel, text)
        except (RedisError, OSError) as exc:
            # the listener's pings decide about readiness: one failed publish may be a blip
            log.warning("bus publish failed", extra={"error": type(exc).__name__})
            return False
        return True

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, queue: asyncio.Queue[Message] | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channel, queue)
        try:
            if self._subscribers.add(subscription):
                await self._send_subscription("subscribe", channel)
            yield subscription
        finally:
            if self._subscribers.remove(subscription):
                await self._send_subscription("unsubscribe", channel)

    async def _send_subscription(self, verb: str, channel: str) -> None:
        confirmed: asyncio.Future[None] | None = None
        async with self._lock:
            if (channel in self._subscribers.by_channel) != (verb == "subscribe"):
                return  # another subscriber came or went while this one waited for the lock
            if self._pubsub is None:
                return  # the listener subscribes to every live channel when it connects
            if verb == "subscribe":
                confirmed = asyncio.get_running_loop().create_future()
                self._confirming.setdefault(channel, []).append(confirmed)
            try:
                await getattr(self._pubsub, verb)(self.prefix + channel)
            except (RedisError, OSError):
                return  # the listener sees the same failure, reconnects and re-subscribes
        if confirmed is not None:
            # Redis has processed SUBSCRIBE once it answers; until then a message published
            # by another connection may not reach us
            await asyncio.wait({confirmed}, timeout=self.timeout)
            waiting = self._confirming.get(channel, [])
            if confirmed in waiting:
                waiting.remove(confirmed)
                if not waiting:
                    self._confirming.pop(channel, None)

    def _confirm(self, channel: str) -> None:
        for waiting in self._confirming.pop(channel, []):
            if not waiting.done():
                waiting.set_result(None)

    async def _drop_connection(self) -> None:
        self._healthy = False
        self._ready.clear()
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        for channel in list(self._confirming):
            self._confirm(channel)  # nobody waits on a connection that is gone
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated upstream

    async def _listen(self) -> None:
        while True:
            try:
                async with self._lock:
                    assert self._listening is not None
                    self._pubsub = pubsub = self._listening.pubsub()
                    # a control channel keeps the connection subscribed even with no listeners
                    channels = [self.prefix + "_control"]
                    channels += [self.prefix + c for c in self._subscribers.by_channel]
                    await pubsub.subscribe(*channels)
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever broke, the listener must live on: reconnect
                if not isinstance(exc, RedisError | OSError):
                    log.exception("bus listener failed")
                await self._drop_connection()
                self._attempt += 1
                delay = min(self.max_backoff, 0.1 * 2**self._attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "bus connection lost; reconnecting",
                    extra={
                        "error": type(exc).__name__,
                        "attempt": self._attempt,
                        "delay": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)

    async def _receive(self, pubsub: PubSub) -> None:
        """Deliver messages until the connection fails or stops answering."""
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while True:
            now = loop.time()
            if now - heard > self.ping_interval + self.timeout:
                # a Redis that is frozen or cut off by the network closes nothing: only its
                # silence tells
                raise RedisConnectionError("no answer to ping")
            if now - pinged >= self.ping_interval:
                await pubsub.ping()  # answered as a "pong" message below
                pinged = now
            wait = min(pinged + self.ping_interval, heard + self.ping_interval + self.timeout)
            message = await pubsub.get_message(timeout=max(0.01, wait - now))
            if message is None:
                continue
            heard = loop.time()
            kind = message.get("type")
            if kind == "message":
                channel = message["channel"].decode()[len(self.prefix) :]
                self._subscribers.deliver(channel, message["data"])
            elif kind == "subscribe":
                # the answer to SUBSCRIBE: everything up to it is in place on the server
                self._confirm(message["channel"].decode()[len(self.prefix) :])
                if not self._healthy:
                    if self._attempt:
                        log.info("bus reconnected", extra={"attempts": self._attempt})
                    self._attempt = 0
                    self._healthy = True
                    self._ready.set()


def create_bus(redis_url: str | None, *, prefix: str = "helpline:") -> MemoryBus | RedisBus:
    return RedisBus(redis_url, prefix=prefix) if redis_url else MemoryBus()
