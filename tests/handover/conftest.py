"""Handover tests: the real app in-process on both databases (with the handover routes, mounted
here too until create_app has them), a clock the test moves, staff logged in with password and
TOTP, victims with a real chat token. Delivery is the real `helpline.handover.delivery`; no
outbox worker runs, so "queued" is an outbox row and nothing leaves."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from PIL import Image
from pyrage import x25519
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import receipts
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.models import OutboxEntry
from helpline.handover.models import Handover, HandoverConsent
from helpline.handover.routes_staff import handover_staff_routes
from helpline.handover.routes_victim import handover_victim_routes
from helpline.staff import accounts
from helpline.staff.models import Role
from tests.triage.kit import Desk, Member


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Argon2id code, at a tiny cost."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the handover routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/partners" for r in app.routes):
        app.router.routes.extend([*handover_staff_routes(), *handover_victim_routes()])
    return app


def jpeg() -> bytes:
    image = Image.new("RGB", (64, 48))
    for x in range(0, 64, 4):
        image.putpixel((x, x % 48), (x * 3 % 256, 80, 160))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


@dataclass
class Victim:
    case_id: str
    reference: str
    token: str
    http: httpx.AsyncClient

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path, headers=self.bearer)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(path, json=body or {}, headers=self.bearer)

    async def handovers(self) -> list[dict[str, Any]]:
        answer = await self.get("/api/chat/handovers")
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()["handovers"]
        return result

    async def upload(self, name: str = "screenshot.jpg") -> str:
        answer = await self.http.post(
            "/api/chat/evidence/files", files={"file": (name, jpeg())}, headers=self.bearer
        )
        assert answer.status_code == 201, answer.text
        item_id: str = answer.json()["id"]
        return item_id


class Scene(Desk):
    """The app with staff and victims, and the steps of a handover as helpers."""

    async def put(self, member: Member, path: str, body: dict[str, Any]) -> httpx.Response:
        return await member.http.put(path, json=body, headers={"X-CSRF-Token": member.csrf})

    async def start_victim(self, language: str = "en") -> Victim:
        receipt = await self.victim(language=language)
        return Victim(receipt["case_id"], receipt["reference"], receipt["token"], self.client())

    async def partner(
        self,
        admin: Member,
        *,
        kind: str = "sexual_violence_care",
        name: str = "Fier",
        **fields: Any,
    ) -> tuple[dict[str, Any], Any]:
        """A partner with a confirmed key; returns its JSON and its age identity."""
        body = {
            "name": name,
            "kind": kind,
            "contact_email": "overdracht@partner.example.org",
            "description": f"nl: {name} helpt je verder.\nen: {name} helps you further.",
            "languages": ["nl", "en"],
            **fields,
        }
        created = await admin.post("/api/staff/partners", body)
        assert created.status_code == 201, created.text
        identity = x25519.Identity.generate()
        partner_id = created.json()["id"]
        keyed = await admin.post(
            f"/api/staff/partners/{partner_id}/key", {"recipient": str(identity.to_public())}
        )
        assert keyed.status_code == 200, keyed.text
        confirmed = await admin.post(
            f"/api/staff/partners/{partner_id}/key/confirm",
            {"fingerprint": " ".join(keyed.json()["key"]["fingerprint_words"])},
        )
        assert confirmed.status_code == 200, confirmed.text
        result: dict[str, Any] = confirmed.json()
        return result, identity

    async def propose(self, member: Member, case_id: str, **body: Any) -> dict[str, Any]:
        answer = await member.post(f"/api/staff/cases/{case_id}/handovers", body)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def proposal(
        self,
        cast: Cast,
        *,
        kind: str = "sexual_violence_care",
        name: str = "Fier",
        items: int = 2,
        language: str = "en",
        **body: Any,
    ) -> tuple[dict[str, Any], Victim]:
        """A victim with `items` uploaded files, the agent holding the case, and a proposal to
        a new partner of every part (all the items)."""
        partner, _ = await self.partner(cast.admin, kind=kind, name=name)
        victim = await self.start_victim(language)
        await cast.agent.act(victim.case_id, "claim")
        ids = [await victim.upload(f"screenshot-{n}.jpg") for n in range(items)]
        proposal = {
            "partner_id": partner["id"],
            "parts": ["summary", "categories", "timeline", "contact", "evidence"],
            "summary": "Her ex shares her photos in a group chat since Monday.",
            "evidence_ids": ids,
            "contact_method": "phone",
            **body,
        }
        return await self.propose(cast.agent, victim.case_id, **proposal), victim

    async def victim_says(
        self, victim: Victim, handover_id: str, decision: str = "accepted", **extra: Any
    ) -> httpx.Response:
        [shown] = [h for h in await victim.handovers() if h["id"] == handover_id]
        return await victim.post(
            f"/api/chat/handovers/{handover_id}/consent",
            {"decision": decision, "text_sha256": shown["text_sha256"], **extra},
        )

    async def handover_row(self, handover_id: str) -> Handover:
        async with self.services.db.transaction() as session:
            row = await session.get(Handover, handover_id)
            assert row is not None
            return row

    async def consents(self, handover_id: str) -> list[HandoverConsent]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(HandoverConsent)
                .where(col(HandoverConsent.handover_id) == handover_id)
                .order_by(col(HandoverConsent.recorded_at))
            )
            return list(rows.scalars().all())

    async def outbox(self) -> list[OutboxEntry]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(OutboxEntry).where(col(OutboxEntry.kind) == "handover.deliver")
            )
            return list(rows.scalars().all())


@pytest.fixture
async def scene(settings_for: Any, database_url: str, clock: FrozenClock) -> AsyncIterator[Scene]:
    settings = settings_for(
        database_url,
        staff_idle_minutes=60 * 24 * 30,  # the tests move the clock by days
        opening_hours="mo-su 00:00-24:00",
    )
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        running = Scene(app, state, clock)
        try:
            yield running
        finally:
            await running.close()


@dataclass
class Cast:
    admin: Member
    supervisor: Member
    agent: Member
    colleague: Member


@pytest.fixture
async def cast(scene: Scene) -> Cast:
    return Cast(
        admin=await scene.staff("ada", Role.admin),
        supervisor=await scene.staff("sam", Role.supervisor),
        agent=await scene.staff("anna"),
        colleague=await scene.staff("bert"),
    )
