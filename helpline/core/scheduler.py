"""Periodic jobs (SLA checks, reminders, re-checks, retention purges).

Jobs are registered by name with an interval and must be idempotent. Each job has a row in
`scheduled_jobs`; an instance runs a due job only after taking that row's lease with a
conditional update, so with several instances one runs each job at a time. A crashed run's
lease expires and another instance takes over. Due-ness is read from the injected clock, so
tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

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
        self.jobs[name] = Job(name, interval, run, lease or max(interval, timedelta(minutes=5)))

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
                    ScheduledJob.name == job.name,  # type: ignore[arg-type]
                    ScheduledJob.next_run_at <= now,  # type: ignore[arg-type]
                    or_(ScheduledJob.lease_until.is_(None), ScheduledJob.lease_until < now),  # type: ignore[union-attr,operator]
                )
                .values(lease_owner=self.owner, lease_until=now + job.lease)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release(self, job: Job, started: datetime, status: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(ScheduledJob)
                .where(ScheduledJob.name == job.name, ScheduledJob.lease_owner == self.owner)  # type: ignore[arg-type]
                .values(
                    lease_owner=None,
                    lease_until=None,
                    last_run_at=started,
                    last_status=status,
                    next_run_at=started + job.interval,
                    runs=ScheduledJob.runs + 1,
                )
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
            try:
                await job.run(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # one failing job must not stop the others; it runs again later
                log.exception("scheduled job failed", extra={"job": job.name})
                status = "failed"
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
