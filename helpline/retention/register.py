"""What the app wires in: `retention_routes()` (staff), `victim_routes()` (the victim's
export) and `register_retention(services)` (the daily purge)."""

from __future__ import annotations

from datetime import datetime, timedelta

from helpline.core.services import Services
from helpline.retention.purge import purge
from helpline.retention.routes import retention_routes
from helpline.retention.victim import victim_routes

__all__ = ["JOB_NAME", "register_retention", "retention_routes", "victim_routes"]

JOB_NAME = "retention-purge"
JOB_INTERVAL = timedelta(days=1)


def register_retention(services: Services) -> None:
    """Register the purge as a daily scheduled job (once per Services). The scheduler's lease
    runs it on one instance at a time; `purge` is safe beside a manual run as well."""
    if JOB_NAME in services.scheduler.jobs:
        return

    async def run(now: datetime) -> None:
        await purge(services, now, trigger="schedule")

    services.scheduler.register(JOB_NAME, JOB_INTERVAL, run)
