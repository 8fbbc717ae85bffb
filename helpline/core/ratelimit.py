"""Rate limits over the `limits` library: in memory for one instance, in Redis for several.

Keys are never IP addresses where anonymity matters: limit on what the caller names (a case
reference, a staff user name) and on a global bucket per action, e.g.
`await limiter.check("passphrase", "5/15 minutes", case_reference)` and
`await limiter.check("passphrase-global", "200/minute")`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from helpline.core.errors import TooManyRequests

log = logging.getLogger("helpline.ratelimit")

GLOBAL = "global"


class RateLimiter:
    def __init__(self, redis_url: str | None = None, *, prefix: str = "helpline-rl") -> None:
        self.storage: Storage
        if redis_url:
            self.storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=prefix,
                wrap_exceptions=True,
            )
        else:
            self.storage = MemoryStorage()
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        if limit not in self._items:
            self._items[limit] = parse(limit)
        return self._items[limit]

    @staticmethod
    def _key(key: str) -> str:
        # what is counted may be a case reference: store only a hash of it
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    async def hit(self, action: str, limit: str, key: str = GLOBAL) -> bool:
        """Count one attempt; False if the limit was already reached (the attempt is refused).
        If the storage is unreachable the attempt is allowed and a warning logged: a helpline
        must stay reachable when Redis is not."""
        try:
            return await self._strategy.hit(self._item(limit), action, self._key(key))
        except Exception as exc:  # limits wraps every storage failure in StorageError
            log.warning("rate limit storage unavailable", extra={"error": type(exc).__name__})
            return True

    async def check(self, action: str, limit: str, key: str = GLOBAL) -> None:
        """Count one attempt or raise `TooManyRequests` with the seconds until the next one."""
        if await self.hit(action, limit, key):
            return
        stats = await self._strategy.get_window_stats(self._item(limit), action, self._key(key))
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests("too many attempts; try again later", retry_after=retry_after)

    async def reset(self, action: str, limit: str, key: str = GLOBAL) -> None:
        await self._strategy.clear(self._item(limit), action, self._key(key))
