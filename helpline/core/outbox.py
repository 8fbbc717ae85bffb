"""The outbox: every e-mail, webhook or platform call leaves the process through here.

`enqueue()` writes an entry inside the caller's transaction, so the side effect happens only if
the state change commits. A worker claims due entries under a lease (with `FOR UPDATE SKIP
LOCKED` on PostgreSQL; the conditional claim is enough on SQLite, whose writers are serialised)
and hands each to the handler registered for its kind. Delivery is at-least-once: a worker that
dies mid-delivery loses its lease and another delivers again with the same idempotency key,
which handlers pass on (a Message-ID, an `Idempotency-Key` header) or check themselves.
Failures back off exponentially with jitter; after the last attempt an entry is dead-lettered
until an admin retries it. Payloads are encrypted, under the case key when they belong to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from helpline.core.clock import Clock
from helpline.core.crypto import DecryptionError, Keyring, KeyShredded
from helpline.core.db import Database
from helpline.core.errors import Conflict, NotFound
from helpline.core.ids import new_id
from helpline.core.models import OutboxEntry

log = logging.getLogger("helpline.outbox")

SYSTEM_SCOPE = "system:outbox"
PENDING, DELIVERING, DELIVERED, DEAD = "pending", "delivering", "delivered", "dead"
CANCELLED = "cancelled"  # withdrawn by its owner before a worker took it (`cancel`)
TABLE = "outbox"


class DeliveryError(Exception):
    """A failure worth retrying. Its message is stored: keep personal data out of it."""


class PermanentFailure(DeliveryError):
    """A failure that retrying cannot fix (e.g. SMTP 5xx): dead-letter now."""


@dataclass(frozen=True)
class Delivery:
    id: str
    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    attempt: int


Handler = Callable[[Delivery], Awaitable[None]]


async def enqueue(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    *,
    kind: str,
    payload: dict[str, Any],
    key_scope: str = SYSTEM_SCOPE,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
) -> OutboxEntry:
    """Queue a side effect in the caller's transaction. Pass the case's key scope when the
    payload holds case data: shredding the case then makes the entry undeliverable too."""
    entry_id = new_id()
    cipher = await keyring.cipher(session, key_scope)
    now = clock.now()
    entry = OutboxEntry(
        id=entry_id,
        kind=kind,
        idempotency_key=idempotency_key or f"{kind}:{entry_id}",
        key_scope=key_scope,
        payload=cipher.encrypt(json.dumps(payload), table=TABLE, row_id=entry_id, field="payload"),
        next_attempt_at=not_before or now,
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    await session.flush()
    return entry


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the `attempt`-th failure: exponential, with half of it jittered."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        clock: Clock,
        *,
        owner: str | None = None,
        max_attempts: int = 8,
        lease_seconds: float = 60,
        poll_seconds: float = 1.0,
        batch_size: int = 10,
        base_delay: float = 5.0,
        max_delay: float = 3600.0,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.owner = owner or f"worker-{new_id()[:12]}"
        self.handlers: dict[str, Handler] = {}
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._wake = asyncio.Event()

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self.handlers:
            raise ValueError(f"an outbox handler for {kind!r} is registered already")
        self.handlers[kind] = handler

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        return or_(
            and_(col(OutboxEntry.status) == PENDING, col(OutboxEntry.next_attempt_at) <= now),
            and_(col(OutboxEntry.status) == DELIVERING, col(OutboxEntry.lease_until) < now),
        )

    async def claim(self) -> list[OutboxEntry]:
        """Take up to `batch_size` due entries under this worker's lease."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            query = (
                select(col(OutboxEntry.id))
                .where(self._claimable(now))
                .order_by(col(OutboxEntry.next_attempt_at))
                .limit(self.batch_size)
            )
            if self.db.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            ids = (await session.execute(query)).scalars().all()
            claimed: list[OutboxEntry] = []
            for entry_id in ids:
                result = await session.execute(
                    update(OutboxEntry)
                    .where(col(OutboxEntry.id) == entry_id, self._claimable(now))
                    .values(
                        status=DELIVERING,
                        lease_owner=self.owner,
                        lease_until=now + self.lease,
                        attempts=col(OutboxEntry.attempts) + 1,
                        updated_at=now,
                    )
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    entry = await session.get(OutboxEntry, entry_id, populate_existing=True)
                    assert entry is not None
                    claimed.append(entry)
        return claimed

    async def _payload(self, entry: OutboxEntry) -> dict[str, Any]:
        async with self.db.transaction() as session:
            cipher = await self.keyring.cipher(session, entry.key_scope, create=False)
        data = cipher.decrypt(entry.payload, table=TABLE, row_id=entry.id, field="payload")
        payload: dict[str, Any] = json.loads(data)
        return payload

    async def deliver(self, entry: OutboxEntry) -> str:
        """Deliver one claimed entry; returns its new status."""
        if entry.attempts > self.max_attempts:
            # The earlier attempts ended with no outcome: their workers died or lost the lease.
            # An entry whose delivery kills its worker must not be retried forever.
            return await self._finish(
                entry, DEAD, f"no outcome after {self.max_attempts} attempts (worker lost)"
            )
        try:
            payload = await self._payload(entry)
        except KeyShredded:
            return await self._finish(entry, DEAD, "its data key was deleted (case shredded)")
        except DecryptionError:
            # a master key missing on this instance, or altered data: worth a few more tries
            return await self._failed(entry, DeliveryError("the payload does not decrypt"))
        handler = self.handlers.get(entry.kind)
        if handler is None:
            return await self._failed(entry, DeliveryError(f"no handler for kind {entry.kind!r}"))
        delivery = Delivery(entry.id, entry.kind, entry.idempotency_key, payload, entry.attempts)
        try:
            # finish well inside the lease, so no other worker takes the entry meanwhile
            await asyncio.wait_for(handler(delivery), self.lease.total_seconds() * 0.8)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any handler failure is retried or dead-lettered
            return await self._failed(entry, exc)
        return await self._finish(entry, DELIVERED, None)

    async def _failed(self, entry: OutboxEntry, exc: BaseException) -> str:
        if isinstance(exc, DeliveryError):
            reason = str(exc)[:500]
        elif isinstance(exc, TimeoutError):
            reason = "timed out"
        else:  # the text of an arbitrary exception may hold personal data: keep only its type
            reason = type(exc).__name__
        log.warning(
            "outbox delivery failed",
            extra={
                "entry": entry.id,
                "kind": entry.kind,
                "attempt": entry.attempts,
                "reason": reason,
            },
        )
        if isinstance(exc, PermanentFailure) or entry.attempts >= self.max_attempts:
            return await self._finish(entry, DEAD, reason)
        delay = backoff(entry.attempts, base=self.base_delay, cap=self.max_delay)
        return await self._finish(
            entry, PENDING, reason, next_attempt_at=self.clock.now() + timedelta(seconds=delay)
        )

    async def _finish(
        self,
        entry: OutboxEntry,
        status: str,
        reason: str | None,
        *,
        next_attempt_at: datetime | None = None,
    ) -> str:
        now = self.clock.now()
        values: dict[str, Any] = {
            "status": status,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
            "last_error": reason,
        }
        if status == DELIVERED:
            values["delivered_at"] = now
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self.db.transaction() as session:
            result = await session.execute(
                update(OutboxEntry)
                .where(col(OutboxEntry.id) == entry.id, col(OutboxEntry.lease_owner) == self.owner)
                .values(**values)
            )
        if not result.rowcount:  # type: ignore[attr-defined]
            log.warning("outbox lease lost before finishing", extra={"entry": entry.id})
        if status == DEAD:
            log.error("outbox entry dead-lettered", extra={"entry": entry.id, "kind": entry.kind})
        return status

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many entries it handled."""
        entries = await self.claim()
        if entries:
            await asyncio.gather(*(self.deliver(entry) for entry in entries))
        return len(entries)

    async def run_forever(self) -> None:
        while True:
            # cleared before looking for work, so a wake() that comes during the batch counts
            self._wake.clear()
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly away; keep the worker alive
                log.exception("outbox worker iteration failed")
                handled = 0
            if handled < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)


# ---------------------------------------------------------------- for admins


async def entries_by_status(
    session: AsyncSession, status: str, *, limit: int = 100
) -> list[OutboxEntry]:
    rows = await session.execute(
        select(OutboxEntry)
        .where(col(OutboxEntry.status) == status)
        .order_by(col(OutboxEntry.updated_at).desc())
        .limit(limit)
    )
    return list(rows.scalars().all())


async def retry_dead(session: AsyncSession, clock: Clock, entry_id: str) -> OutboxEntry:
    """Put a dead-lettered entry back in the queue with a fresh set of attempts."""
    entry = await session.get(OutboxEntry, entry_id)
    if entry is None:
        raise NotFound("no such outbox entry")
    if entry.status != DEAD:
        raise Conflict(f"only dead-lettered entries can be retried; this one is {entry.status}")
    now = clock.now()
    entry.status, entry.attempts, entry.next_attempt_at, entry.updated_at = PENDING, 0, now, now
    await session.flush()
    return entry


async def cancel(session: AsyncSession, clock: Clock, entry_id: str) -> bool:
    """Cancel an entry no worker has taken yet (pending, or dead-lettered), in the caller's
    transaction; True if it was. An entry being delivered right now is not touched: its
    handler must check, as its first step, that what it delivers is still wanted."""
    entry = await session.get(OutboxEntry, entry_id, with_for_update=True)
    if entry is None or entry.status not in (PENDING, DEAD):
        return False
    now = clock.now()
    entry.status, entry.updated_at, entry.last_error = CANCELLED, now, "cancelled"
    await session.flush()
    return True
