"""The platform side under test: the real app (with the portal, platform API and reply routes
added until create_app has them), real notices built from a real case by the notice builder,
signed, and moved to `sent` the way delivery does.

`Desk` holds what a test needs: the app's services, an httpx client on the app, and helpers
to make platforms, cases and notices and to log staff in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest
import uvicorn
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import service
from helpline.cases.models import Case, Sender
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence.models import EvidenceItem, ItemKind, ItemStatus
from helpline.intake.email import tokens
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from helpline.takedown import delivery, state
from helpline.takedown.builder import ItemChoice, NoticeRequest, UrlChoice, create_notice
from helpline.takedown.models import Notice, NoticeToken, NoticeUrl, Platform, notice_scope
from helpline.takedown.platform_api import platform_routes, register_platform_api
from helpline.takedown.platforms import PlatformFields, create_platform, issue_api_key
from helpline.takedown.portal import portal_routes, register_portal
from helpline.takedown.register import takedown_staff_routes
from helpline.takedown.replies import register_notice_replies, reply_routes

PASSWORD = "a long staff password"
VICTIM_TEXT = "Mijn ex heeft mijn naaktfoto's op een forum gezet, ik ben Fenna uit Zwolle"
SHA256 = "9f" * 32
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the platform-side routes and authenticators (and the staff's notice
    routes) until create_app has them."""
    app = create_app(settings, clock=clock)
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/portal/notice" not in paths:
        app.router.routes[0:0] = [*portal_routes(), *platform_routes(), *reply_routes()]
    if "/api/staff/notices" not in paths:
        app.router.routes[0:0] = takedown_staff_routes()
    register_portal(app.state.authenticators)
    register_platform_api(app.state.authenticators)
    return app


@dataclass
class Sent:
    """A notice as the platform got it: its rows and a portal link."""

    notice: Notice
    urls: list[NoticeUrl]
    case: Case
    token: str
    link_id: str

    @property
    def url_ids(self) -> list[str]:
        return [u.id for u in self.urls]


@dataclass
class Desk:
    app: Starlette
    state: dict[str, Any]
    clock: FrozenClock
    staff_id: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = self.client()  # for anonymous, portal and platform calls

    @property
    def services(self) -> Services:
        found: Services = self.state["services"]
        return found

    def client(self) -> httpx.AsyncClient:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        result = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:8000"
        )
        self.clients.append(result)
        return result

    async def platform(self, slug: str, *, key: bool = True) -> tuple[Platform, str | None]:
        async with self.services.db.transaction() as session:
            platform = await create_platform(
                session,
                self.clock,
                self.services.settings,
                PlatformFields(
                    name=slug.title(),
                    slug=slug,
                    delivery="email",
                    contact_email=f"dsa@{slug}.example.org",
                    languages=["en"],
                    flagger_reference=f"TF-{slug.upper()}-7",
                ),
            )
            api_key = await issue_api_key(session, self.clock, platform) if key else None
        return platform, api_key

    async def case(self, text: str = VICTIM_TEXT) -> Case:
        """A victim's chat case, with a message and an image known by its hashes."""
        async with self.services.db.transaction() as session:
            receipt = await service.start_chat(
                session, self.clock, language="nl", topic="intimate_images"
            )
            await service.post_message(
                session,
                self.services.keyring,
                self.clock,
                case_id=receipt.case.id,
                sender=Sender.victim,
                text=text,
                client_id=new_id(),
            )
            session.add(
                EvidenceItem(
                    id=new_id(),
                    case_id=receipt.case.id,
                    kind=ItemKind.hash_only.value,
                    status=ItemStatus.recorded.value,
                    media_type="image/jpeg",
                    sha256=SHA256,
                    pdq=PDQ,
                    pdq_quality=88,
                    captured_at=self.clock.now(),
                    captured_by="victim",
                    channel="chat",
                )
            )
        return receipt.case

    async def sent_notice(
        self, platform: Platform, case: Case | None = None, *, urls: int = 2
    ) -> Sent:
        """A notice built by the builder, queued (signed, with a reply token and a portal link)
        and marked sent, as delivery does once the platform's server took it."""
        case = case or await self.case()
        async with self.services.db.transaction() as session:
            items = (
                (
                    await session.execute(
                        select(EvidenceItem).where(col(EvidenceItem.case_id) == case.id)
                    )
                )
                .scalars()
                .all()
            )
            notice = await create_notice(
                session,
                self.services,
                case,
                staff_id=self.staff_id,
                request=NoticeRequest(
                    platform_id=platform.id,
                    urls=[
                        UrlChoice(
                            url=f"https://{platform.slug}.example.org/p/{n}{new_id()[:6]}",
                            content_type="CONTENT_TYPE_IMAGE",
                        )
                        for n in range(1, urls + 1)
                    ],
                    items=[ItemChoice(item.id) for item in items],
                ),
            )
            actor = f"staff:{self.staff_id}"
            await delivery.queue_notice(session, self.services, notice, platform, actor=actor)
            await delivery.mark_sent(
                session, self.services, notice, platform, actor=actor, details={"via": "test"}
            )
            cipher = await self.services.keyring.cipher(session, notice_scope(notice.id))
            token = await delivery.current_portal_token(session, self.services, notice, cipher)
            assert token is not None
            link = (
                await session.execute(
                    select(NoticeToken).where(
                        col(NoticeToken.token_hash) == tokens.token_hash(token)
                    )
                )
            ).scalar_one()
            rows = await state.urls_of(session, notice.id)
        return Sent(notice, rows, case, token, link.id)

    async def notice(self, notice_id: str) -> Notice:
        async with self.services.db.transaction() as session:
            found = await session.get(Notice, notice_id)
            assert found is not None
            return found

    async def urls(self, notice_id: str) -> list[NoticeUrl]:
        async with self.services.db.transaction() as session:
            return await state.urls_of(session, notice_id)

    async def staff_client(self, username: str, role: Role = Role.agent) -> httpx.AsyncClient:
        async with self.services.db.transaction() as session:
            account = await create_staff(
                session, self.clock, username=username, password=PASSWORD, role=role
            )
        http = self.client()
        started = await http.post(
            "/api/staff/login", json={"username": username, "password": PASSWORD}
        )
        started.raise_for_status()
        secret = (await http.get("/api/staff/totp/enrolment")).json()["secret"]
        csrf = (await http.get("/api/staff/me")).json()["csrf_token"]
        code = pyotp.TOTP(secret).at(self.clock.now())
        enrolled = await http.post(
            "/api/staff/totp/enrol", json={"code": code}, headers={"X-CSRF-Token": csrf}
        )
        enrolled.raise_for_status()
        http.headers["X-CSRF-Token"] = (await http.get("/api/staff/me")).json()["csrf_token"]
        http.staff_id = account.id  # type: ignore[attr-defined]
        return http


@pytest.fixture
async def desk(settings: Settings, clock: FrozenClock) -> AsyncIterator[Desk]:
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as lifespan_state:
        found: Services = lifespan_state["services"]
        register_notice_replies(found)
        async with found.db.transaction() as session:
            builder = await create_staff(
                session, clock, username="builder", password=PASSWORD, role=Role.supervisor
            )
        room = Desk(app, dict(lifespan_state), clock, staff_id=builder.id)
        yield room
        for client in room.clients:
            await client.aclose()


def removed(url_id: str, **more: Any) -> dict[str, Any]:
    """A complete `removed` answer."""
    return {
        "url_id": url_id,
        "decision": "removed",
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
        "ground": "art. 139h Sr",
        "explanation": "Intimate image shared without consent; removed under our policy.",
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        "territorial_scope": ["NL", "BE"],
        "puid": "post-4711",
        **more,
    }


def declined(url_id: str, **more: Any) -> dict[str, Any]:
    return {
        "url_id": url_id,
        "decision": "declined",
        "reason": "not_illegal",
        "explanation": "The picture is not sexual in nature.",
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        **more,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def served(settings: Settings, clock: FrozenClock) -> AsyncIterator[str]:
    """The app (with the platform side) under uvicorn on a free loopback port, configured as
    `helpline serve` runs it (no uvicorn access log); yields its base URL."""
    config = uvicorn.Config(
        build_app(settings, clock),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped")
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
