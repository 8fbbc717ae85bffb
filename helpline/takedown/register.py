"""What the app wires in: `takedown_staff_routes()` and `register_takedown(services)` (the
outbox handlers for notices and platform mails, the notice clock, and the periodic URL
re-check when HELPLINE_NOTICE_RECHECK_HOURS is set)."""

from __future__ import annotations

from datetime import datetime, timedelta

from helpline.core.services import Services
from helpline.takedown import recheck, sla
from helpline.takedown.delivery import register_delivery
from helpline.takedown.routes_staff import takedown_staff_routes

__all__ = ["register_takedown", "takedown_staff_routes"]


def register_takedown(services: Services) -> None:
    """Register handlers and jobs (once per Services)."""
    register_delivery(services)
    scheduler = services.scheduler
    if sla.JOB_NAME not in scheduler.jobs:
        scheduler.register(sla.JOB_NAME, sla.JOB_INTERVAL, sla.clock_job(services))
    hours = services.settings.notice_recheck_hours
    if hours and recheck.RECHECK_JOB not in scheduler.jobs:

        async def run(now: datetime) -> None:
            await recheck.recheck_due(services, now)

        scheduler.register(recheck.RECHECK_JOB, timedelta(hours=min(hours, 1)), run)
