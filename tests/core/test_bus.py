"""The bus: one suite for the in-process and the Redis implementation, then what only Redis
does (several instances, reconnecting, degrading when Redis is down)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from helpline.app import create_app
from helpline.core.bus import Bus, MemoryBus, RedisBus, Subscription, create_bus

REDIS_ENV = "HELPLINE_TEST_REDIS_URL"
WAIT = 10.0  # the longest any test waits for something to happen


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = WAIT
) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.005)


async def receive(subscription: Subscription) -> dict[str, Any]:
    return await subscription.get(timeout=WAIT)


def assert_nothing_more(*subscriptions: Subscription) -> None:
    for subscription in subscriptions:
        assert subscription.queue.empty(), subscription.queue.get_nowait()


async def redis_bus(url: str, prefix: str, *, name: str = "bus") -> RedisBus:
    bus = RedisBus(url, prefix=prefix, client_name=f"{prefix}{name}")
    await bus.start()
    return bus


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A started bus of each kind; the Redis one on channels of this test's own."""
    started: Bus
    if request.param == "memory":
        started = MemoryBus()
        await started.start()
    else:
        started = await redis_bus(
            request.getfixturevalue("redis_server_url"), request.getfixturevalue("redis_prefix")
        )
    try:
        assert started.healthy
        yield started
    finally:
        await started.stop()


# ---------------------------------------------------------------- both implementations


async def test_subscriber_receives_its_channel_in_publish_order(bus: Bus) -> None:
    async with bus.subscribe("case:1") as subscription:
        for n in range(50):
            assert await bus.publish("case:1", {"n": n}) is True
        assert [(await receive(subscription))["n"] for _ in range(50)] == list(range(50))
        assert_nothing_more(subscription)


async def test_subscriber_gets_no_messages_of_other_channels(bus: Bus) -> None:
    async with bus.subscribe("case:1") as subscription:
        for other in ("case:10", "case:", "case:2", "Case:1", "case:1 "):
            assert await bus.publish(other, {"from": other}) is True
        assert await bus.publish("case:1", {"from": "case:1"}) is True
        # published last by the same sender: had another channel leaked it would be first
        assert await receive(subscription) == {"from": "case:1"}
        assert_nothing_more(subscription)


async def test_every_subscriber_gets_every_message(bus: Bus) -> None:
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(bus.subscribe("chat")) for _ in range(3)]
        for n in range(5):
            assert await bus.publish("chat", {"n": n}) is True
        for subscription in subscriptions:
            assert [(await receive(subscription))["n"] for _ in range(5)] == list(range(5))
        assert_nothing_more(*subscriptions)


async def test_no_messages_after_the_subscription_block_exits(bus: Bus) -> None:
    async with bus.subscribe("marker") as marker, bus.subscribe("chat") as staying:
        async with bus.subscribe("chat") as leaving:
            assert await bus.publish("chat", {"n": 1}) is True
            assert await receive(leaving) == {"n": 1}
            assert await receive(staying) == {"n": 1}
        assert await bus.publish("chat", {"n": 2}) is True
        assert await receive(staying) == {"n": 2}
        assert_nothing_more(leaving)

    # the last subscriber of a channel left: nothing is delivered to it any more...
    async with bus.subscribe("marker") as marker:
        assert await bus.publish("chat", {"n": 3}) is True
        assert await bus.publish("marker", {"after": 3}) is True
        assert await receive(marker) == {"after": 3}  # so n=3 would have arrived by now
    assert_nothing_more(leaving, staying)

    # ...and subscribing again to that channel works
    async with bus.subscribe("chat") as again:
        assert await bus.publish("chat", {"n": 4}) is True
        assert await receive(again) == {"n": 4}


async def test_publish_returns_true_with_or_without_subscribers(bus: Bus) -> None:
    assert await bus.publish("nobody-listens", {"n": 1}) is True
    async with bus.subscribe("somebody-listens") as subscription:
        assert await bus.publish("somebody-listens", {"n": 1}) is True
        await receive(subscription)


async def test_messages_are_json_safe_copies(bus: Bus) -> None:
    message: dict[str, Any] = {"case": "K7Q-M2X", "ids": (1, 2), "nested": {"seen": [False]}}
    async with bus.subscribe("chat") as first, bus.subscribe("chat") as second:
        assert await bus.publish("chat", message) is True
        message["nested"]["seen"].append(True)  # the sender changes its object afterwards
        one, two = await receive(first), await receive(second)
    expected = {"case": "K7Q-M2X", "ids": [1, 2], "nested": {"seen": [False]}}
    assert one == expected and two == expected  # a tuple arrives as a list, as through JSON
    one["nested"]["seen"].append("changed by the first listener")
    assert two == expected  # listeners do not share objects with each other either


async def test_a_message_that_is_not_json_is_refused_by_both(bus: Bus) -> None:
    with pytest.raises(TypeError):
        await bus.publish("chat", {"when": object()})


def test_create_bus_picks_redis_only_when_a_url_is_given() -> None:
    assert isinstance(create_bus(None), MemoryBus)
    assert isinstance(create_bus(""), MemoryBus)
    assert isinstance(create_bus("redis://127.0.0.1:6379/0"), RedisBus)


# ---------------------------------------------------------------- Redis only


async def test_message_published_on_one_instance_reaches_the_others(
    redis_server_url: str, redis_prefix: str
) -> None:
    first = await redis_bus(redis_server_url, redis_prefix, name="first")
    second = await redis_bus(redis_server_url, redis_prefix, name="second")
    try:
        async with first.subscribe("chat") as on_first, second.subscribe("chat") as on_second:
            assert await second.publish("chat", {"from": "second"}) is True
            assert await receive(on_first) == {"from": "second"}
            assert await receive(on_second) == {"from": "second"}
            assert await first.publish("chat", {"from": "first"}) is True
            assert await receive(on_second) == {"from": "first"}
            assert await receive(on_first) == {"from": "first"}
            assert_nothing_more(on_first, on_second)
    finally:
        await first.stop()
        await second.stop()


async def test_buses_with_other_prefixes_do_not_hear_each_other(
    redis_server_url: str, redis_prefix: str
) -> None:
    ours = await redis_bus(redis_server_url, redis_prefix)
    theirs = await redis_bus(redis_server_url, redis_prefix + "other:")
    try:
        async with ours.subscribe("chat") as subscription:
            assert await theirs.publish("chat", {"from": "theirs"}) is True
            assert await ours.publish("chat", {"from": "ours"}) is True
            assert await receive(subscription) == {"from": "ours"}
            assert_nothing_more(subscription)
    finally:
        await ours.stop()
        await theirs.stop()


async def _pubsub_connections(admin: aioredis.Redis, name: str) -> list[str]:
    """Ids of the subscribed connections of the client called `name`."""
    clients: list[dict[str, Any]] = await admin.client_list()
    return [
        str(c["id"])
        for c in clients
        if c.get("name") == name and (int(c.get("sub", 0)) > 0 or "P" in str(c.get("flags")))
    ]


async def test_reconnects_and_restores_subscriptions_after_losing_its_connection(
    redis_server_url: str, redis_prefix: str
) -> None:
    bus = await redis_bus(redis_server_url, redis_prefix)
    name = f"{redis_prefix}bus"
    admin = aioredis.Redis.from_url(redis_server_url, decode_responses=True)
    try:
        async with bus.subscribe("before") as before:
            [killed] = await _pubsub_connections(admin, name)
            assert await admin.client_kill_filter(_id=killed) == 1

            await eventually(lambda: not bus.healthy, "the bus notices its connection dropped")
            await eventually(lambda: bus.healthy, "the bus reconnects")
            [reconnected] = await _pubsub_connections(admin, name)
            assert reconnected != killed

            # the subscription made before the drop is back, and new ones work
            async with bus.subscribe("after") as after:
                assert await bus.publish("before", {"n": 1}) is True
                assert await bus.publish("after", {"n": 2}) is True
                assert await receive(before) == {"n": 1}
                assert await receive(after) == {"n": 2}
    finally:
        await admin.aclose()
        await bus.stop()
    assert not bus.healthy  # a stopped bus is not one to count on


# ---------------------------------------------------------------- Redis down: degraded


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get(REDIS_ENV):
            pytest.fail(f"{REDIS_ENV} is set but there is no redis-server binary on PATH")
        pytest.skip("redis-server is not installed; install it to test the bus outage")
    return binary


class PrivateRedis:
    """A redis-server of this test's own on a free loopback port, to stop and start at will."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:

            async def answers() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    pytest.fail(f"redis-server exited with {self.process.returncode}")
                try:
                    return bool(await client.ping())
                except (RedisError, OSError):
                    return False

            await eventually(answers, f"redis-server answers on port {self.port}")
        finally:
            await client.aclose()

    def freeze(self) -> None:
        """Stop the process without closing anything: Redis hangs, as on a cut network."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WAIT)
        self.process = None


@pytest.fixture
def private_redis(redis_server_binary: str) -> Iterator[PrivateRedis]:
    server = PrivateRedis(redis_server_binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
async def test_app_keeps_serving_degraded_while_redis_is_down(
    private_redis: PrivateRedis, settings_for: Any, sqlite_url: str
) -> None:
    await private_redis.start()
    app = create_app(settings_for(sqlite_url, redis_url=private_redis.url))
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        bus = state["services"].bus
        assert isinstance(bus, RedisBus)
        transport = httpx.ASGITransport(app=asgi)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
            bus.subscribe("chat") as subscription,
        ):

            async def readiness_is(status: str, bus_check: str) -> bool:
                response = await client.get("/readyz")
                assert response.status_code == 200, response.text
                return bool(
                    response.json()
                    == {"status": status, "checks": {"database": "ok", "bus": bus_check}}
                )

            assert await readiness_is("ok", "ok")

            private_redis.stop()
            await eventually(lambda: readiness_is("degraded", "down"), "readiness degrades")
            started = time.monotonic()
            assert await bus.publish("chat", {"n": 1}) is False
            assert time.monotonic() - started < 3, "publish must fail fast while Redis is down"
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert await readiness_is("degraded", "down")  # it stays degraded, not flapping

            await private_redis.start()  # the same port again
            await eventually(lambda: readiness_is("ok", "ok"), "readiness recovers")
            # the subscription made before the outage was restored on the new connection
            assert await bus.publish("chat", {"n": 2}) is True
            assert await receive(subscription) == {"n": 2}
            assert_nothing_more(subscription)


@pytest.mark.slow
async def test_a_hung_redis_is_noticed_and_publish_does_not_hang(
    private_redis: PrivateRedis,
) -> None:
    await private_redis.start()
    bus = RedisBus(
        private_redis.url, prefix="hung:", ping_interval=0.5, timeout=0.5, max_backoff=1.0
    )
    await bus.start()
    try:
        async with bus.subscribe("chat") as subscription:
            assert bus.healthy
            private_redis.freeze()
            started = time.monotonic()
            assert await asyncio.wait_for(bus.publish("chat", {"n": 1}), WAIT) is False
            assert time.monotonic() - started < 2, "publish must give up after its timeout"
            await eventually(lambda: not bus.healthy, "the bus notices Redis stopped answering")

            private_redis.thaw()
            await eventually(lambda: bus.healthy, "the bus reconnects once Redis answers")
            assert await bus.publish("chat", {"n": 2}) is True
            received = await receive(subscription)
            if received == {"n": 1}:  # the frozen PUBLISH may still run when Redis resumes
                received = await receive(subscription)
            assert received == {"n": 2}
            assert_nothing_more(subscription)
    finally:
        await bus.stop()
