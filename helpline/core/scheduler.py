"""Periodic jobs (SLA checks, reminders, re-checks, retention purges).

Jobs are registered by name with an interval and must be idempotent. Each job has a row in
`scheduled_jobs`; an instance runs a due job only after taking that row's lease with a
conditional update, so with several instances one runs each job at a time. A crashed run's
lease expires and another instance takes over. Due-ness is read from the injected clock, so
tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from helpline.core.clock import Clock
from helpline.core.db import Database
from helpline.core.ids import new_id
from helpline.core.models import ScheduledJob

log = logging.getLogger("helpline.scheduler")

JobFunction = Callable[[datetime], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    name: str
    interval: timedelta
    run: JobFunction  # receives the clock's time of this run
    lease: timedelta


# Short, and renewed while a job runs: an instance that crashes holds a job back for at most
# this long, however long the job's interval is.
DEFAULT_LEASE = timedelta(minutes=2)


class Scheduler:
    def __init__(
        self, db: Database, clock: Clock, *, owner: str | None = None, poll_seconds: float = 1.0
    ) -> None:
        self.db = db
        self.clock = clock
        self.owner = owner or f"scheduler-{new_id()[:12]}"
        self.poll_seconds = poll_seconds
        self.jobs: dict[str, Job] = {}

    def register(
        self,
        name: str,
        interval: timedelta,
        run: JobFunction,
        *,
        lease: timedelta | None = None,
    ) -> None:
        if name in self.jobs:
            raise ValueError(f"a job named {name!r} is registered already")
        self.jobs[name] = Job(name, interval, run, lease or DEFAULT_LEASE)

    async def _ensure_rows(self) -> None:
        for job in self.jobs.values():
            try:
                async with self.db.transaction() as session:
                    if await session.get(ScheduledJob, job.name) is None:
                        session.add(ScheduledJob(name=job.name, next_run_at=self.clock.now()))
            except IntegrityError:  # another instance created it at the same moment
                pass

    async def _take(self, job: Job, now: datetime) -> bool:
        async with self.db.transaction() as session:
            result = await session.execute(
                update(ScheduledJob)
                .where(
                    col(ScheduledJob.name) == job.name,
                    col(ScheduledJob.next_run_at) <= now,
                    or_(
                        col(ScheduledJob.lease_until).is_(None),
                        col(ScheduledJob.lease_until) < now,
                    ),
                )
                .values(lease_owner=self.owner, lease_until=now + job.lease)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release(self, job: Job, started: datetime, status: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(ScheduledJob)
                .where(
                    col(ScheduledJob.name) == job.name,
                    col(ScheduledJob.lease_owner) == self.owner,
                )
                .values(
                    lease_owner=None,
                    lease_until=None,
                    last_run_at=started,
                    last_status=status,
                    next_run_at=started + job.interval,
                    runs=col(ScheduledJob.runs) + 1,
                )
            )

    async def _give_back(self, job: Job) -> None:
        """Release the lease without counting a run: the job stays due for whoever is next."""
        async with self.db.transaction() as session:
            await session.execute(
                update(ScheduledJob)
                .where(
                    col(ScheduledJob.name) == job.name,
                    col(ScheduledJob.lease_owner) == self.owner,
                )
                .values(lease_owner=None, lease_until=None)
            )

    async def _keep_lease(self, job: Job) -> None:
        """Renew the lease while the job runs, so a long run is never taken over."""
        while True:
            await asyncio.sleep(job.lease.total_seconds() / 3)
            async with self.db.transaction() as session:
                await session.execute(
                    update(ScheduledJob)
                    .where(
                        col(ScheduledJob.name) == job.name,
                        col(ScheduledJob.lease_owner) == self.owner,
                    )
                    .values(lease_until=self.clock.now() + job.lease)
                )

    async def run_due(self) -> list[str]:
        """Run every job that is due and not running elsewhere; returns the names run."""
        await self._ensure_rows()
        ran: list[str] = []
        for job in self.jobs.values():
            now = self.clock.now()
            if not await self._take(job, now):
                continue
            status = "ok"
            keeper = asyncio.create_task(self._keep_lease(job))
            try:
                await job.run(now)
            except asyncio.CancelledError:
                # stopping (a deploy, a restart): hand the job back rather than leave it blocked
                # until the lease runs out, which for a daily job is a day
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._give_back(job))
                raise
            except Exception as exc:  # one failing job must not stop the others
                # where it failed, not what it said: the text may hold personal data (an
                # address, a reported URL), which never goes into a log line
                log.error(
                    "scheduled job failed",
                    extra={
                        "job": job.name,
                        "error": type(exc).__name__,
                        "trace": "".join(traceback.format_tb(exc.__traceback__)),
                    },
                )
                status = "failed"
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            await self._release(job, now, status)
            ran.append(job.name)
        return ran

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed")
            await asyncio.sleep(self.poll_seconds)
