"""The outbox: written in the caller's transaction, delivered at least once, never twice at once.

Every test runs on SQLite and on PostgreSQL. Time is the FrozenClock's, except in the test that
kills a real worker process (marked slow), which runs real workers against the real clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from helpline.core.clock import FrozenClock, SystemClock, as_utc
from helpline.core.crypto import Keyring, b64e, case_scope
from helpline.core.db import Database
from helpline.core.errors import Conflict, NotFound
from helpline.core.models import OutboxEntry
from helpline.core.outbox import (
    DEAD,
    DELIVERED,
    DELIVERING,
    PENDING,
    Delivery,
    DeliveryError,
    OutboxWorker,
    PermanentFailure,
    backoff,
    enqueue,
    entries_by_status,
    retry_dead,
)
from tests.conftest import TEST_MASTER_KEY

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """A handler that records each delivery and then does what `outcome` says."""

    def __init__(self, outcome: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.outcome = outcome

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.outcome is not None:
            await self.outcome(delivery)


def failing_with(exc: Exception) -> Callable[[Delivery], Awaitable[None]]:
    async def fail(_delivery: Delivery) -> None:
        raise exc

    return fail


async def add_entry(
    db: Database, keyring: Keyring, clock: FrozenClock, **kwargs: Any
) -> OutboxEntry:
    kwargs.setdefault("kind", "mail")
    kwargs.setdefault("payload", {"to": "someone@example.org"})
    async with db.transaction() as session:
        return await enqueue(session, keyring, clock, **kwargs)


async def load(db: Database, entry_id: str) -> OutboxEntry:
    async with db.transaction() as session:
        entry = await session.get(OutboxEntry, entry_id)
    assert entry is not None
    return entry


@pytest.fixture
def worker(db: Database, keyring: Keyring, clock: FrozenClock) -> OutboxWorker:
    return OutboxWorker(db, keyring, clock, owner="worker-a", base_delay=10, max_delay=1000)


@pytest.fixture
async def other_db(database_url: str) -> AsyncIterator[Database]:
    """A second connection pool on the same database, as a second app instance has."""
    database = Database(database_url)
    yield database
    await database.dispose()


# ---------------------------------------------------------------- writing and delivering


async def test_entry_of_a_rolled_back_transaction_never_exists(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    handler = Recorder()
    worker.register("mail", handler)
    with pytest.raises(RuntimeError, match="the request failed"):
        async with db.transaction() as session:
            entry = await enqueue(session, keyring, clock, kind="mail", payload={"to": "x"})
            assert await session.get(OutboxEntry, entry.id) is not None  # it was written...
            raise RuntimeError("the request failed")

    async with db.transaction() as session:
        assert await session.get(OutboxEntry, entry.id) is None  # ...and rolled back with it
        assert (await session.execute(select(func.count()).select_from(OutboxEntry))).scalar() == 0
    clock.advance(hours=1)
    assert await worker.run_once() == 0
    assert handler.deliveries == []


async def test_delivery_calls_the_handler_of_its_kind_once_and_marks_it_delivered(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    mail, webhook = Recorder(), Recorder()
    worker.register("mail", mail)
    worker.register("webhook", webhook)
    payload = {"to": "counsellor@example.org", "subject": "New case", "n": 3}
    entry = await add_entry(
        db, keyring, clock, kind="mail", payload=payload, idempotency_key="mail:case-1:new"
    )

    assert await worker.run_once() == 1
    assert mail.deliveries == [Delivery(entry.id, "mail", "mail:case-1:new", payload, 1)]
    assert webhook.deliveries == []
    stored = await load(db, entry.id)
    assert stored.status == DELIVERED
    assert stored.attempts == 1
    assert stored.delivered_at is not None and as_utc(stored.delivered_at) == clock.now()
    assert stored.lease_owner is None and stored.lease_until is None
    assert stored.last_error is None

    clock.advance(days=1)  # neither a later poll nor an expired lease delivers it again
    assert await worker.run_once() == 0
    assert len(mail.deliveries) == 1


async def test_idempotency_key_defaults_to_one_of_its_own(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    first = await add_entry(db, keyring, clock)
    second = await add_entry(db, keyring, clock)
    assert first.idempotency_key == f"mail:{first.id}"
    assert first.idempotency_key != second.idempotency_key


async def test_payload_is_stored_encrypted(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    marker = "victim-marker-7f3c9a1e"
    entry = await add_entry(db, keyring, clock, payload={"to": f"{marker}@example.org"})
    async with db.engine.connect() as connection:
        raw = (
            await connection.execute(
                text("SELECT payload FROM outbox WHERE id = :id"), {"id": entry.id}
            )
        ).scalar_one()
    raw = bytes(raw)
    assert marker.encode() not in raw
    assert b'"to"' not in raw
    assert len(raw) > len(marker)

    handler = Recorder()
    worker.register("mail", handler)
    await worker.run_once()
    assert handler.deliveries[0].payload == {"to": f"{marker}@example.org"}


# ---------------------------------------------------------------- failures


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    for attempt in range(1, 6):
        ceiling = 10 * 2 ** (attempt - 1)
        delays = [backoff(attempt, base=10, cap=1000) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered, so that failed entries do not retry in step
    capped = [backoff(30, base=10, cap=1000) for _ in range(50)]
    assert all(500 <= delay <= 1000 for delay in capped)


async def test_failing_handler_backs_off_then_dead_letters(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    worker = OutboxWorker(
        db, keyring, clock, owner="worker-a", max_attempts=3, base_delay=10, max_delay=1000
    )
    handler = Recorder(failing_with(DeliveryError("SMTP 451, try again later")))
    worker.register("mail", handler)
    entry = await add_entry(db, keyring, clock)

    for attempt, ceiling in ((1, 10), (2, 20)):
        failed_at = clock.now()
        assert await worker.run_once() == 1
        stored = await load(db, entry.id)
        assert (stored.status, stored.attempts) == (PENDING, attempt)
        assert stored.last_error == "SMTP 451, try again later"
        assert stored.lease_owner is None
        due = as_utc(stored.next_attempt_at)
        assert failed_at + timedelta(seconds=ceiling / 2) <= due
        assert due <= failed_at + timedelta(seconds=ceiling)

        clock.set(due - timedelta(milliseconds=1))
        assert await worker.run_once() == 0, "retried before its back-off ran out"
        clock.set(due)

    assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts) == (DEAD, 3)
    assert stored.last_error == "SMTP 451, try again later"
    assert [d.attempt for d in handler.deliveries] == [1, 2, 3]

    clock.advance(days=30)  # a dead entry stays dead until an admin retries it
    assert await worker.run_once() == 0
    assert len(handler.deliveries) == 3
    async with db.transaction() as session:
        assert [e.id for e in await entries_by_status(session, DEAD)] == [entry.id]


async def test_handler_that_succeeds_after_failing_is_delivered(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    async def fail_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise DeliveryError("connection refused")

    handler = Recorder(fail_first)
    worker.register("mail", handler)
    entry = await add_entry(db, keyring, clock)
    assert await worker.run_once() == 1
    clock.advance(seconds=10)  # the longest first back-off
    assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts, stored.last_error) == (DELIVERED, 2, None)
    assert [d.idempotency_key for d in handler.deliveries] == [entry.idempotency_key] * 2


async def test_permanent_failure_dead_letters_at_once(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    handler = Recorder(failing_with(PermanentFailure("SMTP 550, no such mailbox")))
    worker.register("mail", handler)
    entry = await add_entry(db, keyring, clock)

    assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts) == (DEAD, 1)
    assert stored.last_error == "SMTP 550, no such mailbox"
    clock.advance(days=1)
    assert await worker.run_once() == 0
    assert len(handler.deliveries) == 1


async def test_retry_dead_queues_the_entry_again_and_it_is_delivered(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    broken = True

    async def until_fixed(_delivery: Delivery) -> None:
        if broken:
            raise PermanentFailure("the platform rejected the notice")

    handler = Recorder(until_fixed)
    worker.register("mail", handler)
    entry = await add_entry(db, keyring, clock)
    await worker.run_once()
    assert (await load(db, entry.id)).status == DEAD

    broken = False
    clock.advance(hours=2)
    async with db.transaction() as session:
        retried = await retry_dead(session, clock, entry.id)
        assert (retried.status, retried.attempts) == (PENDING, 0)
    assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts) == (DELIVERED, 1)
    assert stored.delivered_at is not None and as_utc(stored.delivered_at) == clock.now()
    assert [d.attempt for d in handler.deliveries] == [1, 1]


async def test_retry_dead_refuses_entries_that_are_not_dead(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    entry = await add_entry(db, keyring, clock)
    async with db.transaction() as session:
        with pytest.raises(Conflict):
            await retry_dead(session, clock, entry.id)
        with pytest.raises(NotFound):
            await retry_dead(session, clock, "no-such-entry")
    assert (await load(db, entry.id)).status == PENDING


async def test_shredded_key_scope_dead_letters_with_a_clear_reason(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    handler = Recorder()
    worker.register("mail", handler)
    doomed = await add_entry(db, keyring, clock, key_scope=case_scope("case-1"))
    unrelated = await add_entry(db, keyring, clock, key_scope=case_scope("case-2"))
    async with db.transaction() as session:
        assert await keyring.shred(session, case_scope("case-1"))

    assert await worker.run_once() == 2
    stored = await load(db, doomed.id)
    assert (stored.status, stored.attempts) == (DEAD, 1)
    assert stored.last_error is not None and "shredded" in stored.last_error
    assert (await load(db, unrelated.id)).status == DELIVERED
    assert [d.id for d in handler.deliveries] == [unrelated.id]


async def test_arbitrary_exception_text_is_neither_stored_nor_logged(
    db: Database,
    keyring: Keyring,
    clock: FrozenClock,
    worker: OutboxWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "alice.victim@example.org"
    worker.register("mail", Recorder(failing_with(ValueError(f"bad address {secret}"))))
    entry = await add_entry(db, keyring, clock, payload={"to": secret})

    with caplog.at_level(logging.DEBUG, logger="helpline.outbox"):
        assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.last_error) == (PENDING, "ValueError")
    assert caplog.records, "the failure should be logged"
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)


async def test_handler_that_hangs_is_timed_out_within_its_lease(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    # a 50 ms lease: the delivery is abandoned after 40 ms of real time, before the lease ends
    worker = OutboxWorker(db, keyring, clock, owner="worker-a", lease_seconds=0.05)

    async def hang(_delivery: Delivery) -> None:
        await asyncio.Event().wait()

    worker.register("mail", Recorder(hang))
    entry = await add_entry(db, keyring, clock)
    assert await asyncio.wait_for(worker.run_once(), 10) == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.last_error, stored.lease_owner) == (PENDING, "timed out", None)


async def test_entry_without_a_handler_is_retried_not_lost(
    db: Database, keyring: Keyring, clock: FrozenClock, worker: OutboxWorker
) -> None:
    entry = await add_entry(db, keyring, clock, kind="sms")
    assert await worker.run_once() == 1
    stored = await load(db, entry.id)
    assert stored.status == PENDING
    assert stored.last_error == "no handler for kind 'sms'"


# ---------------------------------------------------------------- several workers, leases


async def test_two_workers_deliver_every_entry_exactly_once(
    db: Database, other_db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    delivered: list[tuple[str, str]] = []

    def make_worker(database: Database, owner: str) -> OutboxWorker:
        worker = OutboxWorker(database, keyring, clock, owner=owner, batch_size=4)

        async def handler(delivery: Delivery) -> None:
            delivered.append((delivery.id, owner))
            await asyncio.sleep(0)  # let the other worker claim meanwhile

        worker.register("mail", handler)
        return worker

    async with db.transaction() as session:
        ids = {
            (await enqueue(session, keyring, clock, kind="mail", payload={"n": n})).id
            for n in range(40)
        }
    workers = [make_worker(db, "worker-a"), make_worker(other_db, "worker-b")]

    async def drain(worker: OutboxWorker) -> int:
        handled = 0
        while batch := await worker.run_once():
            handled += batch
        return handled

    counts = await asyncio.wait_for(asyncio.gather(*(drain(w) for w in workers)), 60)

    delivered_ids = [entry_id for entry_id, _owner in delivered]
    assert sorted(delivered_ids) == sorted(ids), "an entry was delivered twice or not at all"
    assert sum(counts) == 40
    assert {owner for _id, owner in delivered} == {"worker-a", "worker-b"}, "they did not overlap"
    async with db.transaction() as session:
        stored = (await session.execute(select(OutboxEntry))).scalars().all()
    assert {(e.status, e.attempts) for e in stored} == {(DELIVERED, 1)}


async def test_claim_skips_entries_locked_by_another_transaction(
    db: Database, other_db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    if not db.is_postgresql:
        pytest.skip("FOR UPDATE SKIP LOCKED is PostgreSQL's; SQLite serialises its writers")
    async with db.transaction() as session:
        for n in range(6):
            await enqueue(session, keyring, clock, kind="mail", payload={"n": n})
            clock.advance(seconds=1)  # a definite order of next_attempt_at
    worker = OutboxWorker(other_db, keyring, clock, owner="worker-b", batch_size=10)

    async with db.engine.connect() as locker:  # another worker, in the middle of its claim
        await locker.begin()
        locked = (
            await locker.execute(
                text("SELECT id FROM outbox ORDER BY next_attempt_at LIMIT 3 FOR UPDATE")
            )
        ).scalars()
        locked_ids = set(locked)
        claimed = await asyncio.wait_for(worker.claim(), 10)  # would block without SKIP LOCKED
        await locker.rollback()

    assert len(locked_ids) == 3 and len(claimed) == 3
    assert not locked_ids & {entry.id for entry in claimed}


async def test_expired_lease_is_taken_over_and_the_late_worker_cannot_undo_it(
    db: Database, other_db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    crashed = OutboxWorker(db, keyring, clock, owner="worker-a", lease_seconds=30)
    crashed.register("mail", Recorder(failing_with(DeliveryError("too late"))))
    survivor = OutboxWorker(other_db, keyring, clock, owner="worker-b", lease_seconds=30)
    handler = Recorder()
    survivor.register("mail", handler)
    entry = await add_entry(db, keyring, clock)

    [claimed] = await crashed.claim()  # ...and then it stalls, holding the lease
    stored = await load(db, entry.id)
    assert (stored.status, stored.lease_owner, stored.attempts) == (DELIVERING, "worker-a", 1)
    assert await survivor.run_once() == 0
    clock.advance(seconds=30)
    assert await survivor.run_once() == 0, "took over a lease that had not expired"
    clock.advance(seconds=1)
    assert await survivor.run_once() == 1
    assert [(d.id, d.attempt) for d in handler.deliveries] == [(entry.id, 2)]
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts, stored.lease_owner) == (DELIVERED, 2, None)

    # the stalled worker wakes up, fails, and must not put the delivered entry back in the queue
    assert claimed.id == entry.id
    await crashed.deliver(claimed)
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts, stored.last_error) == (DELIVERED, 2, None)


async def test_entry_whose_workers_keep_dying_is_dead_lettered(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    def worker_named(owner: str) -> OutboxWorker:
        worker = OutboxWorker(db, keyring, clock, owner=owner, max_attempts=2, lease_seconds=10)
        worker.register("mail", handler)
        return worker

    handler = Recorder()
    entry = await add_entry(db, keyring, clock)
    for owner in ("worker-a", "worker-b"):  # each claims it and dies mid-delivery
        assert len(await worker_named(owner).claim()) == 1
        clock.advance(seconds=11)

    assert await worker_named("worker-c").run_once() == 1
    stored = await load(db, entry.id)
    assert (stored.status, stored.attempts) == (DEAD, 3)
    assert stored.last_error is not None and "2 attempts" in stored.last_error
    assert handler.deliveries == []


async def test_run_forever_does_not_lose_a_wake_up(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    # polls once an hour: only wake() can make it deliver the later entries within the test
    worker = OutboxWorker(db, keyring, clock, owner="worker-a", poll_seconds=3600)
    delivered: list[int] = []
    arrived = asyncio.Event()

    async def record(delivery: Delivery) -> None:
        delivered.append(delivery.payload["n"])
        if delivery.payload["n"] == 1:  # a wake-up that arrives while a batch is delivered
            await add_entry(db, keyring, clock, payload={"n": 2})
            worker.wake()
        arrived.set()

    worker.register("mail", Recorder(record))
    await add_entry(db, keyring, clock, payload={"n": 1})
    task = asyncio.create_task(worker.run_forever())
    try:
        while delivered != [1, 2]:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)
        await add_entry(db, keyring, clock, payload={"n": 3})  # and one while it sleeps
        worker.wake()
        while delivered != [1, 2, 3]:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- a real worker, killed


def start_worker_process(
    database_url: str, calls: Path, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HELPLINE_MASTER_KEY=b64e(TEST_MASTER_KEY), PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "tests.core.outbox_worker_process", database_url]
    with log.open("ab") as output:
        return subprocess.Popen(
            [*command, "--calls", str(calls), "--lease", "2", *extra],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker output:\n{log.read_text()}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_worker_killed_mid_delivery_is_redelivered_and_the_effect_happens_once(
    db: Database, database_url: str, keyring: Keyring, tmp_path: Path
) -> None:
    calls, hung, log = tmp_path / "calls", tmp_path / "hung", tmp_path / "workers.log"
    processes: list[subprocess.Popen[bytes]] = []
    async with db.transaction() as session:
        await session.execute(
            text("CREATE TABLE effects (idempotency_key VARCHAR(200) PRIMARY KEY, n INTEGER)")
        )
    try:
        async with db.transaction() as session:  # the workers run on real time, so must this
            entry = await enqueue(
                session,
                keyring,
                SystemClock(),
                kind="effect",
                payload={"n": 1},
                idempotency_key="effect:1",
            )

        async def hanging() -> bool:
            return hung.exists()

        async def delivered() -> bool:
            return (await load(db, entry.id)).status == DELIVERED

        first = start_worker_process(database_url, calls, log, "--hang-after-effect", str(hung))
        processes.append(first)
        await wait_until(hanging, "the first delivery", log)
        first.send_signal(signal.SIGKILL)  # after the effect, before the acknowledgement
        assert first.wait(timeout=10) == -signal.SIGKILL
        stored = await load(db, entry.id)
        assert (stored.status, stored.attempts) == (DELIVERING, 1)

        processes.append(start_worker_process(database_url, calls, log))
        await wait_until(delivered, "the delivery after the restart", log)

        stored = await load(db, entry.id)
        assert (stored.status, stored.attempts) == (DELIVERED, 2)
        assert calls.read_text().splitlines() == ["effect:1 attempt=1", "effect:1 attempt=2"]
        async with db.transaction() as session:
            effects = (await session.execute(text("SELECT idempotency_key, n FROM effects"))).all()
        assert [tuple(row) for row in effects] == [("effect:1", 1)]
    finally:
        for process in processes:  # whatever happened, leave no worker behind
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        async with db.transaction() as session:
            await session.execute(text("DROP TABLE effects"))
