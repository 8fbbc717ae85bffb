"""Rate limits over the `limits` library: in memory for one instance, in Redis for several.

Keys are never IP addresses where anonymity matters: limit on what the caller names (a case
reference, a staff user name) and on a global bucket per action, e.g.
`await limiter.check("passphrase", "5/15 minutes", case_reference)` and
`await limiter.check("passphrase-global", "200/minute")`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from helpline.core.errors import TooManyRequests

log = logging.getLogger("helpline.ratelimit")

GLOBAL = "global"
# a rate limit is asked on the way into a request: Redis gets this long before we give up on it
REDIS_TIMEOUT = 1.0
_UNAVAILABLE = (StorageError, RedisError, OSError)


class RateLimiter:
    """Counts attempts per (action, key) in a moving window.

    `secret`, when given, keys the hash of what is counted (HMAC-SHA256): a case reference is
    short enough that a plain hash of it could be reversed by trying them all."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "helpline-rl",
        secret: bytes | None = None,
        timeout: float = REDIS_TIMEOUT,
    ) -> None:
        self.storage: Storage
        self._pool: aioredis.ConnectionPool | None = None
        if redis_url:
            # our own pool: bounded timeouts (the library's default waits for the OS, minutes
            # on a dead network) and something to close at shutdown
            self._pool = aioredis.ConnectionPool.from_url(
                redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            self.storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=prefix,
                wrap_exceptions=True,
                connection_pool=self._pool,  # type: ignore[arg-type]  # passed to redis-py
            )
        else:
            self.storage = MemoryStorage()
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}
        self._secret = secret

    async def aclose(self) -> None:
        """Close the connections to Redis, if any."""
        if self._pool is not None:
            await self._pool.disconnect()

    def _item(self, limit: str) -> RateLimitItem:
        # parsed outside any `try`: a malformed limit is a bug to raise, not an outage to allow
        if limit not in self._items:
            self._items[limit] = parse(limit)
        return self._items[limit]

    def _key(self, key: str) -> str:
        # what is counted may be a case reference: store only a hash of it
        if self._secret is not None:
            return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:32]
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    async def hit(self, action: str, limit: str, key: str = GLOBAL) -> bool:
        """Count one attempt; False if the limit was already reached (the attempt is refused).
        If the storage is unreachable the attempt is allowed and a warning logged: a helpline
        must stay reachable when Redis is not."""
        item = self._item(limit)
        try:
            return await self._strategy.hit(item, action, self._key(key))
        except _UNAVAILABLE as exc:
            log.warning("rate limit storage unavailable", extra={"error": type(exc).__name__})
            return True

    async def check(self, action: str, limit: str, key: str = GLOBAL) -> None:
        """Count one attempt or raise `TooManyRequests` with the seconds until the next one."""
        if await self.hit(action, limit, key):
            return
        item = self._item(limit)
        try:
            stats = await self._strategy.get_window_stats(item, action, self._key(key))
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        except _UNAVAILABLE:
            retry_after = item.get_expiry()  # Redis went away since the hit: the whole window
        raise TooManyRequests("too many attempts; try again later", retry_after=retry_after)

    async def reset(self, action: str, limit: str, key: str = GLOBAL) -> None:
        """Forget the attempts counted, e.g. after a successful login. Never raises for an
        unreachable storage: the caller has succeeded at what it was doing."""
        item = self._item(limit)
        try:
            await self._strategy.clear(item, action, self._key(key))
        except _UNAVAILABLE as exc:
            log.warning("rate limit storage unavailable", extra={"error": type(exc).__name__})
