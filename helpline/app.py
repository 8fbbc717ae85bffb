"""The application factory, and the services both the app and a bare worker run on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from helpline.core.bus import create_bus
from helpline.core.clock import Clock, SystemClock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring, MasterKeys, ensure_signing_key
from helpline.core.db import Database
from helpline.core.http import (
    EXCEPTION_HANDLERS,
    AccessLogMiddleware,
    Authenticator,
    SecurityHeadersMiddleware,
    check_access_rules,
)
from helpline.core.migrate import require_current_schema
from helpline.core.outbox import OutboxWorker
from helpline.core.ratelimit import RateLimiter
from helpline.core.routes import core_routes
from helpline.core.scheduler import Scheduler
from helpline.core.services import Services
from helpline.evidence.routes import evidence_routes
from helpline.evidence.service import orphan_sweep
from helpline.handover.download import handover_download_routes
from helpline.handover.register import register_handover
from helpline.handover.routes_staff import handover_staff_routes
from helpline.handover.routes_victim import handover_victim_routes
from helpline.intake.callback import callback_routes, register_callback
from helpline.intake.chat.routes import chat_routes, victim_authenticator
from helpline.intake.chat.socket import chat_socket_routes
from helpline.intake.email import email_routes, register_email, smtp_listener_if_configured
from helpline.metrics import metrics_routes
from helpline.pages import page_routes
from helpline.retention.register import register_retention
from helpline.retention.routes import retention_routes
from helpline.retention.victim import victim_routes as victim_export_routes
from helpline.staff.auth import idle_session_purge
from helpline.staff.casework import casework_routes
from helpline.staff.console import console_routes
from helpline.staff.routes import register_staff, staff_routes
from helpline.stats.counters import register_stats
from helpline.stats.routes import report_routes, stats_pages, stats_routes
from helpline.takedown.platform_api import platform_routes, register_platform_api
from helpline.takedown.portal import portal_routes, register_portal
from helpline.takedown.register import register_takedown, takedown_staff_routes
from helpline.takedown.replies import register_notice_replies, reply_routes
from helpline.takedown.routes_figures import figures_routes
from helpline.triage import sla
from helpline.triage.presence import running_presence
from helpline.triage.routes import triage_routes
from helpline.triage.service import CONSOLE_CHANNEL


class State(TypedDict):
    services: Services


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, master: MasterKeys, clock: Clock, *, workers: bool
) -> AsyncIterator[Services]:
    """Connect to the database and bus, and (if `workers`) run the outbox worker and the
    scheduler, until the block ends."""
    db = Database(settings.database_url)
    bus = create_bus(settings.redis_url)
    limiter = RateLimiter(settings.redis_url, secret=master.derive("rate-limit-keys"))
    tasks: list[asyncio.Task[None]] = []
    per_instance = contextlib.AsyncExitStack()
    try:
        await require_current_schema(db)
        async with db.transaction() as session:
            signer = await ensure_signing_key(session, master, clock)
        await bus.start()
        keyring = Keyring(master, clock)
        services = Services(
            settings=settings,
            clock=clock,
            db=db,
            keyring=keyring,
            signer=signer,
            bus=bus,
            limiter=limiter,
            outbox=OutboxWorker(
                db,
                keyring,
                clock,
                max_attempts=settings.outbox_max_attempts,
                lease_seconds=settings.outbox_lease_seconds,
                poll_seconds=settings.worker_poll_seconds,
            ),
            scheduler=Scheduler(db, clock, poll_seconds=settings.worker_poll_seconds),
        )
        # domain packages register their outbox handlers and periodic jobs here
        services.scheduler.register(
            "staff-session-purge", timedelta(minutes=10), idle_session_purge(db, settings)
        )
        services.scheduler.register(
            "evidence-orphan-sweep", timedelta(hours=1), orphan_sweep(services)
        )
        services.scheduler.register(
            sla.JOB_NAME, sla.JOB_INTERVAL, sla.breach_watch(services, CONSOLE_CHANNEL)
        )
        register_email(services)  # the reply handler and the quarantine purge
        register_callback(services)  # the sweep that opens windows and deletes numbers
        register_takedown(services)  # notice delivery, the notice clock and escalations
        register_notice_replies(services)  # platforms' e-mail replies to a notice
        register_handover(services)  # packet sealing and delivery, link and consent expiry
        register_retention(services)  # the daily purge (crypto-shred what is past retention)
        register_stats(services)  # the counters' day boundaries follow HELPLINE_TIMEZONE
        # who has which case open in the console: one bus subscription per instance
        await per_instance.enter_async_context(running_presence(services))
        if workers:
            tasks.append(asyncio.create_task(services.outbox.run_forever(), name="outbox"))
            tasks.append(asyncio.create_task(services.scheduler.run_forever(), name="scheduler"))
        yield services
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await per_instance.aclose()
        await bus.stop()
        await limiter.aclose()
        await db.dispose()


def create_app(settings: Settings, *, clock: Clock | None = None) -> Starlette:
    """Build the app. Invalid keys or a route without an access rule fail here, at start."""
    master = MasterKeys.from_settings(settings)
    clock = clock or SystemClock()
    routes: list[BaseRoute] = [
        *core_routes(),
        *chat_routes(),
        *chat_socket_routes(),
        *staff_routes(),
        *console_routes(),
        *triage_routes(),
        *casework_routes(),
        *email_routes(),
        *callback_routes(),
        *takedown_staff_routes(),
        *handover_staff_routes(),
        *handover_victim_routes(),
        *retention_routes(),
        *victim_export_routes(),
        *stats_routes(),
        *stats_pages(),
        *report_routes(),
        *reply_routes(),
        *figures_routes(),
        *portal_routes(),
        *handover_download_routes(),
        *platform_routes(),
        *evidence_routes(),
        *metrics_routes(),
        *page_routes(),
    ]
    check_access_rules(routes)
    authenticators: dict[str, Authenticator] = {"victim": victim_authenticator}
    register_staff(authenticators)
    register_portal(authenticators)  # a notice's portal link
    register_platform_api(authenticators)  # a platform's API key

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with (
            running_services(settings, master, clock, workers=settings.run_workers) as services,
            smtp_listener_if_configured(services),
        ):
            yield {"services": services}

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(SecurityHeadersMiddleware, https=settings.is_https),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.authenticators = authenticators
    return app
