"""The callback channel: victims ask to be called back; staff call, record each attempt, and
the number is deleted once it is not needed any more.

For the app: `callback_routes()` (victim and staff endpoints) and `register_callback(services)`
(the sweep that ends requests whose windows have passed and announces the ones whose window
opened). See docs/api/callback.md.
"""

from __future__ import annotations

from helpline.core.services import Services
from helpline.intake.callback.routes import callback_routes
from helpline.intake.callback.service import JOB_INTERVAL, JOB_NAME, sweep_job
from helpline.triage.service import CONSOLE_CHANNEL


def register_callback(services: Services) -> None:
    """Register the callback sweep with the scheduler (in `running_services`)."""
    services.scheduler.register(JOB_NAME, JOB_INTERVAL, sweep_job(services, CONSOLE_CHANNEL))


__all__ = ["callback_routes", "register_callback"]
