"""The scheduler: periodic jobs by name, one instance at a time, time from the injected clock.

Every test runs on SQLite and on PostgreSQL; time moves only when the FrozenClock is told to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from helpline.core.clock import FrozenClock, as_utc
from helpline.core.db import Database
from helpline.core.models import ScheduledJob
from helpline.core.scheduler import Scheduler

INTERVAL = timedelta(minutes=10)


class Runs:
    """A job that records the time it was given on each run."""

    def __init__(self, *, fail: bool = False) -> None:
        self.times: list[datetime] = []
        self.fail = fail

    async def __call__(self, now: datetime) -> None:
        self.times.append(now)
        if self.fail:
            raise RuntimeError("the job broke")


async def job_row(db: Database, name: str) -> ScheduledJob:
    async with db.transaction() as session:
        row = await session.get(ScheduledJob, name)
    assert row is not None
    return row


@pytest.fixture
async def other_db(database_url: str) -> AsyncIterator[Database]:
    """A second connection pool on the same database, as a second app instance has."""
    database = Database(database_url)
    yield database
    await database.dispose()


async def test_job_runs_when_due_and_not_again_before_its_interval(
    db: Database, clock: FrozenClock
) -> None:
    scheduler = Scheduler(db, clock, owner="instance-a")
    sla_check = Runs()
    scheduler.register("sla-check", INTERVAL, sla_check)
    started = clock.now()

    assert await scheduler.run_due() == ["sla-check"]  # a new job is due at once
    assert await scheduler.run_due() == []
    clock.advance(INTERVAL - timedelta(seconds=1))
    assert await scheduler.run_due() == []
    clock.advance(seconds=1)
    assert await scheduler.run_due() == ["sla-check"]
    assert await scheduler.run_due() == []
    assert sla_check.times == [started, started + INTERVAL]

    row = await job_row(db, "sla-check")
    assert (row.runs, row.last_status, row.lease_owner, row.lease_until) == (2, "ok", None, None)
    assert row.last_run_at is not None and as_utc(row.last_run_at) == started + INTERVAL
    assert as_utc(row.next_run_at) == started + 2 * INTERVAL


async def test_job_receives_the_clocks_time(db: Database) -> None:
    moment = datetime(2031, 7, 14, 23, 59, 30, 123456, tzinfo=UTC)
    clock = FrozenClock(moment)
    scheduler = Scheduler(db, clock)
    reminder = Runs()
    scheduler.register("reminders", timedelta(hours=1), reminder)

    await scheduler.run_due()
    clock.advance(hours=5)  # a long outage: it runs once, not five times to catch up
    await scheduler.run_due()
    await scheduler.run_due()
    assert reminder.times == [moment, moment + timedelta(hours=5)]
    assert as_utc((await job_row(db, "reminders")).next_run_at) == moment + timedelta(hours=6)


async def test_due_job_runs_once_across_instances_running_concurrently(
    db: Database, other_db: Database, clock: FrozenClock
) -> None:
    runs: list[str] = []
    release = asyncio.Event()
    instances = [
        Scheduler(database, clock, owner=f"instance-{n}")
        for n, database in enumerate([db, other_db, db, other_db])
    ]
    for instance in instances:

        async def purge(_now: datetime, owner: str = instance.owner) -> None:
            runs.append(owner)
            await release.wait()  # still running while the other instances look

        instance.register("retention-purge", INTERVAL, purge)

    tasks = [asyncio.create_task(instance.run_due()) for instance in instances]
    try:
        # every instance but the one running the job finds it taken and returns empty-handed
        pending = set(tasks)
        while len(pending) > 1:
            done, pending = await asyncio.wait(
                pending, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "the other instances waited for the running job"
        assert len(runs) == 1
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        release.set()
        for task in tasks:
            task.cancel()
    assert sorted(results) == [[], [], [], ["retention-purge"]]
    assert len(runs) == 1
    row = await job_row(db, "retention-purge")
    assert (row.runs, row.last_status, row.lease_owner) == (1, "ok", None)

    # and once more, all at once, when it is due again
    clock.advance(INTERVAL)
    results = await asyncio.wait_for(asyncio.gather(*(i.run_due() for i in instances)), 30)
    assert sorted(results) == [[], [], [], ["retention-purge"]]
    assert len(runs) == 2
    assert (await job_row(db, "retention-purge")).runs == 2


async def test_failing_job_is_recorded_and_runs_again_after_its_interval(
    db: Database, clock: FrozenClock
) -> None:
    scheduler = Scheduler(db, clock)
    broken, healthy = Runs(fail=True), Runs()
    scheduler.register("recheck-links", INTERVAL, broken)
    scheduler.register("sla-check", INTERVAL, healthy)

    assert await scheduler.run_due() == ["recheck-links", "sla-check"]  # one failure stops none
    row = await job_row(db, "recheck-links")
    assert (row.runs, row.last_status, row.lease_owner, row.lease_until) == (
        1,
        "failed",
        None,
        None,
    )
    assert (await job_row(db, "sla-check")).last_status == "ok"

    clock.advance(INTERVAL - timedelta(seconds=1))
    assert await scheduler.run_due() == []
    clock.advance(seconds=1)
    broken.fail = False
    assert await scheduler.run_due() == ["recheck-links", "sla-check"]
    assert len(broken.times) == 2
    row = await job_row(db, "recheck-links")
    assert (row.runs, row.last_status) == (2, "ok")


async def test_lease_of_a_crashed_instance_blocks_others_until_it_expires(
    db: Database, other_db: Database, clock: FrozenClock
) -> None:
    lease = timedelta(minutes=30)
    crashed = Scheduler(db, clock, owner="crashed")
    started = asyncio.Event()

    async def freeze(_now: datetime) -> None:
        started.set()
        await asyncio.Event().wait()  # never returns, never releases: as good as dead

    crashed.register("purge", INTERVAL, freeze, lease=lease)
    survivor = Scheduler(other_db, clock, owner="survivor")
    purge = Runs()
    survivor.register("purge", INTERVAL, purge, lease=lease)

    taken_at = clock.now()
    frozen = asyncio.create_task(crashed.run_due())
    try:
        await asyncio.wait_for(started.wait(), 30)
        row = await job_row(db, "purge")
        assert row.lease_owner == "crashed"
        assert row.lease_until is not None and as_utc(row.lease_until) == taken_at + lease

        assert await survivor.run_due() == []
        clock.advance(INTERVAL)  # due again by its interval, but the lease still holds
        assert await survivor.run_due() == []
        clock.set(taken_at + lease)
        assert await survivor.run_due() == []
        clock.advance(seconds=1)
        assert await survivor.run_due() == ["purge"]
        assert purge.times == [clock.now()]
        row = await job_row(db, "purge")
        assert (row.lease_owner, row.last_status, row.runs) == (None, "ok", 1)
    finally:
        frozen.cancel()
        with pytest.raises(asyncio.CancelledError):
            await frozen


async def test_stopped_instance_hands_its_running_job_back(
    db: Database, other_db: Database, clock: FrozenClock
) -> None:
    stopping = Scheduler(db, clock, owner="stopping")
    started = asyncio.Event()

    async def interrupted(_now: datetime) -> None:
        started.set()
        await asyncio.Event().wait()

    stopping.register("daily-purge", timedelta(days=1), interrupted)  # a lease of a day
    other = Scheduler(other_db, clock, owner="other")
    purge = Runs()
    other.register("daily-purge", timedelta(days=1), purge)

    run = asyncio.create_task(stopping.run_due())
    await asyncio.wait_for(started.wait(), 30)
    run.cancel()  # what the app's lifespan does on shutdown
    with pytest.raises(asyncio.CancelledError):
        await run

    row = await job_row(db, "daily-purge")
    assert (row.lease_owner, row.lease_until, row.runs, row.last_run_at) == (None, None, 0, None)
    assert await other.run_due() == ["daily-purge"]  # at once, not a day later
    assert purge.times == [clock.now()]


async def test_failing_job_is_logged_without_its_message(
    db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "https://platform.example/p/reported-image-4411"

    async def recheck(_now: datetime) -> None:
        raise ConnectionError(f"cannot reach {secret}")

    scheduler = Scheduler(db, clock)
    scheduler.register("recheck-links", INTERVAL, recheck)
    with caplog.at_level(logging.DEBUG, logger="helpline.scheduler"):
        assert await scheduler.run_due() == ["recheck-links"]

    [record] = [r for r in caplog.records if r.getMessage() == "scheduled job failed"]
    assert (record.__dict__["job"], record.__dict__["error"]) == (
        "recheck-links",
        "ConnectionError",
    )
    assert "recheck" in record.__dict__["trace"]  # where it failed is kept
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)
        assert record.exc_info is None or secret not in repr(record.exc_info[1])


async def test_run_that_outlives_its_lease_does_not_free_the_new_holders_lease(
    db: Database, other_db: Database, clock: FrozenClock
) -> None:
    lease = timedelta(minutes=30)
    gates = {"slow": asyncio.Event(), "next": asyncio.Event()}
    started = {"slow": asyncio.Event(), "next": asyncio.Event()}
    instances: dict[str, Scheduler] = {}
    for owner, database in (("slow", db), ("next", other_db), ("third", db)):
        instances[owner] = Scheduler(database, clock, owner=owner)

        async def purge(_now: datetime, owner: str = owner) -> None:
            started[owner].set()
            await gates[owner].wait()

        instances[owner].register("purge", INTERVAL, purge, lease=lease)

    slow = asyncio.create_task(instances["slow"].run_due())
    await asyncio.wait_for(started["slow"].wait(), 30)
    clock.advance(lease + timedelta(seconds=1))  # the slow run's lease has run out...
    taken_over_at = clock.now()
    following = asyncio.create_task(instances["next"].run_due())
    try:
        await asyncio.wait_for(started["next"].wait(), 30)  # ...so another instance took over
        gates["slow"].set()
        assert await asyncio.wait_for(slow, 30) == ["purge"]  # the slow run ends meanwhile

        row = await job_row(db, "purge")
        assert row.lease_owner == "next", "the late run released a lease it no longer held"
        clock.advance(INTERVAL)
        assert await instances["third"].run_due() == []

        gates["next"].set()
        assert await asyncio.wait_for(following, 30) == ["purge"]
    finally:
        for gate in gates.values():
            gate.set()
        following.cancel()
    row = await job_row(db, "purge")
    assert (row.lease_owner, row.runs) == (None, 1)
    assert row.last_run_at is not None and as_utc(row.last_run_at) == taken_over_at
    assert as_utc(row.next_run_at) == taken_over_at + INTERVAL


async def test_a_job_name_is_registered_once(db: Database, clock: FrozenClock) -> None:
    scheduler = Scheduler(db, clock)
    scheduler.register("sla-check", INTERVAL, Runs())
    with pytest.raises(ValueError, match="sla-check"):
        scheduler.register("sla-check", INTERVAL, Runs())


async def test_a_running_job_keeps_renewing_its_lease(
    db: Database, other_db: Database, clock: FrozenClock
) -> None:
    """A long run is not taken over: its instance renews the lease while the job works."""
    lease = timedelta(seconds=0.3)  # renewed every 0.1 s of real time
    first, second = Scheduler(db, clock, owner="first"), Scheduler(other_db, clock, owner="second")
    release = asyncio.Event()
    started = asyncio.Event()

    async def long_job(_now: datetime) -> None:
        started.set()
        await release.wait()

    first.register("export", INTERVAL, long_job, lease=lease)
    second.register("export", INTERVAL, Runs(), lease=lease)
    running = asyncio.create_task(first.run_due())
    try:
        await asyncio.wait_for(started.wait(), 30)
        clock.advance(lease * 10)  # far past the lease the run started with
        row = await job_row(db, "export")
        deadline = asyncio.get_running_loop().time() + 10
        while as_utc(row.lease_until) <= clock.now():  # type: ignore[arg-type]
            assert asyncio.get_running_loop().time() < deadline, "the lease was never renewed"
            await asyncio.sleep(0.05)
            row = await job_row(db, "export")
        clock.advance(lease / 10)  # still inside the renewed lease: nobody else may take it
        assert await second.run_due() == []
    finally:
        release.set()
    assert await asyncio.wait_for(running, 30) == ["export"]
