"""The takedown engine under test: the real app (plus the takedown routes until create_app
has them), a real SMTP sink for mail to platforms, and a small real HTTP server on loopback
that is both a "platform" (it takes notices by POST, acting once per `Idempotency-Key`) and a
web site whose pages the notices are about (for snapshots and re-checks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from helpline.app import create_app
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.models import AuditEntry
from helpline.takedown.models import Notice, NoticeHistory, NoticeUrl
from helpline.takedown.register import register_takedown, takedown_staff_routes
from tests.live import serve_asgi
from tests.triage.kit import Desk, Member

CONTENT_URL = "https://photoshare.example.org/p/123?utm=x&id=7"


@dataclass
class Received:
    idempotency_key: str
    body: bytes
    headers: dict[str, str]


@dataclass
class PlatformSite:
    """Records every notice POST and acts on each idempotency key once (`effects`).
    `fail_next` answers that many POSTs with `fail_status`; with `hold` set, a POST waits
    after its effect, before answering, until the event is set (a worker killed mid-send)."""

    posts: list[Received] = field(default_factory=list)
    effects: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0
    fail_status: int = 503
    hold: asyncio.Event | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)
    pages: dict[str, int] = field(default_factory=dict)  # path -> status of GET
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def notices(self, request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        self.posts.append(Received(key, body, dict(request.headers)))
        if self.fail_next:
            self.fail_next -= 1
            return JSONResponse({"error": "try later"}, status_code=self.fail_status)
        first = key not in self.effects
        if first:
            self.effects[key] = body
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        return JSONResponse({"received": True, "duplicate": not first}, status_code=201)

    async def page(self, request: Request) -> Response:
        status = self.pages.get(request.url.path, 404)
        return PlainTextResponse("the page" if status == 200 else "gone", status_code=status)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/dsa/notices", self.notices, methods=["POST"]),
                Route("/content/{name}", self.page),
            ]
        )


@contextlib.asynccontextmanager
async def platform_site() -> AsyncIterator[PlatformSite]:
    site = PlatformSite()
    running = await serve_asgi(site.app())
    site.port = running.port
    try:
        yield site
    finally:
        if site.hold is not None:
            site.hold.set()
        await running.stop()


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the takedown routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/notices" for r in app.routes):
        app.router.routes.extend(takedown_staff_routes())
    return app


class Office(Desk):
    """A running app with the takedown engine, its staff and helpers."""

    async def start(self) -> None:
        register_takedown(self.services)

    async def put(self, member: Member, path: str, body: dict[str, Any]) -> Any:
        return await member.http.put(path, json=body, headers={"X-CSRF-Token": member.csrf})

    async def delete(self, member: Member, path: str) -> Any:
        return await member.http.delete(path, headers={"X-CSRF-Token": member.csrf})

    async def platform(self, admin: Member, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Photoshare",
            "slug": "photoshare",
            "delivery": "email",
            "contact_email": "dsa@photoshare.example.org",
            "escalation_email": "lead@photoshare.example.org",
            "complaint_email": "complaints@photoshare.example.org",
            "languages": ["en", "nl"],
            "flagger_reference": "TF-0042",
        }
        body.update(fields)
        answer = await admin.post("/api/staff/platforms", body)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def case(self, agent: Member, category: str = "intimate_images") -> str:
        """A victim's chat, claimed by `agent` and triaged to `category`; returns its id."""
        receipt = await self.victim(topic=None)
        case_id = receipt["case_id"]
        await agent.act(case_id, "claim")
        await agent.act(case_id, "triage", {"category": category})
        return case_id

    async def hashes(self, agent: Member, case_id: str, sha: str) -> str:
        answer = await agent.post(
            f"/api/staff/cases/{case_id}/evidence/hashes",
            {"sha256": sha, "pdq": "f" * 64, "pdq_quality": 90},
        )
        assert answer.status_code == 201, answer.text
        item_id: str = answer.json()["id"]
        return item_id

    async def url_item(self, agent: Member, case_id: str, url: str) -> str:
        answer = await agent.post(f"/api/staff/cases/{case_id}/evidence/urls", {"url": url})
        assert answer.status_code == 201, answer.text
        item_id: str = answer.json()["id"]
        return item_id

    async def notice(
        self, agent: Member, case_id: str, platform_id: str, **fields: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "platform_id": platform_id,
            "urls": [{"url": CONTENT_URL, "content_type": "CONTENT_TYPE_IMAGE"}],
        }
        body.update(fields)
        answer = await agent.post(f"/api/staff/cases/{case_id}/notices", body)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def do(
        self, member: Member, notice_id: str, action: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        answer = await member.post(f"/api/staff/notices/{notice_id}/{action}", body)
        assert answer.status_code in (200, 201), answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def row(self, notice_id: str) -> Notice:  # type: ignore[override]
        async with self.services.db.transaction() as session:
            notice = await session.get(Notice, notice_id)
            assert notice is not None
            return notice

    async def urls(self, notice_id: str) -> list[NoticeUrl]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(NoticeUrl)
                .where(col(NoticeUrl.notice_id) == notice_id)
                .order_by(col(NoticeUrl.position))
            )
            return list(rows.scalars().all())

    async def history(self, notice_id: str) -> list[NoticeHistory]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(NoticeHistory)
                .where(col(NoticeHistory.notice_id) == notice_id)
                .order_by(col(NoticeHistory.at), col(NoticeHistory.seq), col(NoticeHistory.id))
            )
            return list(rows.scalars().all())

    async def audit_actions(self, target: str) -> list[str]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(col(AuditEntry.action))
                .where(col(AuditEntry.target) == target)
                .order_by(col(AuditEntry.seq))
            )
            return list(rows.scalars().all())

    async def run_outbox(self) -> int:
        total = 0
        while handled := await self.services.outbox.run_once():
            total += handled
        return total
