"""The rate limiter, with memory and with Redis storage; Redis down or hung lets attempts in."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from helpline.core.errors import TooManyRequests
from helpline.core.ratelimit import RateLimiter

WAIT = 10.0
CASE = "K7Q-M2X"  # a case reference: what an anonymous victim's attempts are counted on


async def _delete_keys(url: str, prefix: str) -> list[bytes]:
    """Delete this test's keys from Redis; return their raw values (DUMP) first."""
    admin = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        dumps = [await admin.dump(key) for key in keys]
        if keys:
            await admin.delete(*keys)
        return [*keys, *(d for d in dumps if d is not None)]
    finally:
        await admin.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield RateLimiter()
        return
    url: str = request.getfixturevalue("redis_server_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    result = RateLimiter(url, prefix=prefix)
    try:
        yield result
    finally:
        await result.aclose()
        await _delete_keys(url, prefix)


# ---------------------------------------------------------------- both storages


async def test_allows_the_limit_then_refuses_the_same_key(limiter: RateLimiter) -> None:
    assert [await limiter.hit("passphrase", "5/15 minutes", CASE) for _ in range(5)] == [True] * 5
    assert await limiter.hit("passphrase", "5/15 minutes", CASE) is False
    assert await limiter.hit("passphrase", "5/15 minutes", CASE) is False


async def test_other_keys_and_actions_are_counted_apart(limiter: RateLimiter) -> None:
    for _ in range(3):
        await limiter.hit("passphrase", "3/minute", CASE)
    assert await limiter.hit("passphrase", "3/minute", CASE) is False
    assert await limiter.hit("passphrase", "3/minute", "P4T-9HN") is True  # another case
    assert await limiter.hit("passphrase", "3/minute") is True  # the global bucket
    assert await limiter.hit("upload", "3/minute", CASE) is True  # another action
    assert await limiter.hit("passphrase", "3/minute", CASE.lower()) is True  # keys are exact


async def test_check_raises_too_many_requests_with_a_retry_after(limiter: RateLimiter) -> None:
    await limiter.check("login", "2/minute", "agent@helpline.example")
    await limiter.check("login", "2/minute", "agent@helpline.example")
    with pytest.raises(TooManyRequests) as refused:
        await limiter.check("login", "2/minute", "agent@helpline.example")
    assert 1 <= refused.value.retry_after <= 60
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    await limiter.check("login", "2/minute", "other@helpline.example")  # not refused


async def test_reset_clears_the_count(limiter: RateLimiter) -> None:
    for _ in range(2):
        await limiter.hit("login", "2/hour", "agent")
    await limiter.hit("login", "2/hour", "someone else")
    assert await limiter.hit("login", "2/hour", "agent") is False
    await limiter.reset("login", "2/hour", "agent")
    assert [await limiter.hit("login", "2/hour", "agent") for _ in range(3)] == [True, True, False]
    assert await limiter.hit("login", "2/hour", "someone else") is True  # left as it was
    assert await limiter.hit("login", "2/hour", "someone else") is False


async def test_a_malformed_limit_is_an_error_not_an_allowance(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.hit("login", "5 per fortnight", "agent")


# ---------------------------------------------------------------- Redis


async def test_redis_stores_only_a_hash_of_the_key(
    redis_server_url: str, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis_server_url, prefix=redis_prefix)
    try:
        assert await limiter.hit("passphrase", "5/15 minutes", CASE) is True
    finally:
        await limiter.aclose()
    stored = await _delete_keys(redis_server_url, redis_prefix)
    assert stored, "the count should be in Redis"
    for raw in stored:
        for plain in (CASE, CASE.lower(), CASE.replace("-", "")):
            assert plain.encode() not in raw


async def test_with_a_secret_the_stored_hash_is_keyed(
    redis_server_url: str, redis_prefix: str
) -> None:
    first = RateLimiter(redis_server_url, prefix=redis_prefix, secret=b"k" * 32)
    same = RateLimiter(redis_server_url, prefix=redis_prefix, secret=b"k" * 32)
    other = RateLimiter(redis_server_url, prefix=redis_prefix, secret=b"x" * 32)
    try:
        assert await first.hit("passphrase", "1/minute", CASE) is True
        assert await same.hit("passphrase", "1/minute", CASE) is False
        assert await other.hit("passphrase", "1/minute", CASE) is True
    finally:
        for limiter in (first, same, other):
            await limiter.aclose()
    stored = await _delete_keys(redis_server_url, redis_prefix)
    plain_hash = hashlib.sha256(CASE.encode()).hexdigest()[:32].encode()
    assert stored and not any(plain_hash in raw for raw in stored)


async def test_two_instances_on_one_redis_share_their_counts(
    redis_server_url: str, redis_prefix: str
) -> None:
    first = RateLimiter(redis_server_url, prefix=redis_prefix)
    second = RateLimiter(redis_server_url, prefix=redis_prefix)
    try:
        assert [await first.hit("passphrase", "5/minute", CASE) for _ in range(3)] == [True] * 3
        assert [await second.hit("passphrase", "5/minute", CASE) for _ in range(3)] == [
            True,
            True,
            False,
        ]
        assert await first.hit("passphrase", "5/minute", CASE) is False
        with pytest.raises(TooManyRequests):
            await first.check("passphrase", "5/minute", CASE)
        await second.reset("passphrase", "5/minute", CASE)
        assert await first.hit("passphrase", "5/minute", CASE) is True
    finally:
        await first.aclose()
        await second.aclose()
        await _delete_keys(redis_server_url, redis_prefix)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis, or a cut network."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes the connections; nobody ever reads them
        yield server.getsockname()[1]


@pytest.mark.parametrize("where", ["closed port", "silent server"])
async def test_unreachable_redis_lets_attempts_in_without_raising(
    where: str, silent_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port() if where == "closed port" else silent_server
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    started = time.monotonic()
    try:
        async with asyncio.timeout(WAIT):  # a hang fails the test instead of stalling the run
            assert [await limiter.hit("passphrase", "1/minute", CASE) for _ in range(3)] == [
                True
            ] * 3
            await limiter.check("passphrase", "1/minute", CASE)
            await limiter.reset("passphrase", "1/minute", CASE)
    finally:
        await limiter.aclose()
    assert time.monotonic() - started < 5 * 0.5 + 1, "each attempt waits at most the timeout"
    assert "rate limit storage unavailable" in caplog.text
