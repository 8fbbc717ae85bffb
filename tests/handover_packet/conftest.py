"""Handover packet tests: the real app on both databases, a clock the test moves, a real SMTP
sink, and a real HTTP server of the test partner on loopback that records every request (it
must never get one). Partners, cases, evidence, handovers and consents are made directly with
the models (real pyrage identities); the outbox worker and scheduler are run by the test."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyrage  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from helpline.app import create_app
from helpline.cases.models import Case, CaseEvent
from helpline.cases.receipts import new_reference
from helpline.core.clock import FrozenClock
from helpline.core.crypto import case_scope
from helpline.core.ids import new_id
from helpline.core.models import OutboxEntry
from helpline.core.services import Services
from helpline.evidence import custody
from helpline.evidence.models import EvidenceItem, ItemKind, ItemStatus
from helpline.evidence.service import Captor, capture_file
from helpline.handover import delivery, gate, state
from helpline.handover.download import handover_download_routes
from helpline.handover.models import (
    Handover,
    HandoverConsent,
    HandoverHistory,
    Partner,
    handover_scope,
)
from helpline.handover.packet import fingerprint_of, vault_for
from helpline.handover.register import register_handover
from helpline.handover.states import HandoverStatus, PartnerKind
from helpline.staff.models import Staff
from tests.email.conftest import Sink, start_sink
from tests.live import serve_asgi

HELPLINE_MAIL = "meldpunt@helpline.test"
SUMMARY = "Ex-partner shares intimate photos in a Telegram group since 3 March; she is scared."
CONTENT_URL = "https://leaks.example.net/album/7781?ref=secret-marker"
FILE_NAME = "screenshot of the group chat.png"
H = HandoverStatus


@dataclass
class PartnerSite:
    """The test partner's web server: records every request it gets."""

    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def anything(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
        return Starlette(routes=[Route("/{path:path}", self.anything, methods=methods)])


@contextlib.asynccontextmanager
async def partner_site() -> AsyncIterator[PartnerSite]:
    site = PartnerSite()
    running = await serve_asgi(site.app())
    site.port = running.port
    try:
        yield site
    finally:
        await running.stop()


@dataclass
class PartnerKeys:
    partner_id: str
    identity: str  # AGE-SECRET-KEY-1…
    recipient: str


@dataclass
class Desk:
    """The running app with the handover package registered, and helpers."""

    app: Starlette
    state: dict[str, Any]
    clock: FrozenClock
    sink: Sink
    site: PartnerSite
    http: httpx.AsyncClient
    staff_ids: list[str] = field(default_factory=list)

    @property
    def services(self) -> Services:
        result: Services = self.state["services"]
        return result

    async def staff(self, role: str = "supervisor") -> str:
        async with self.services.db.transaction() as session:
            member = Staff(
                id=new_id(),
                username=f"s{new_id()[:10]}".lower(),
                display_name="Staff Member Name",
                password_hash="x",
                role=role,
                created_at=self.clock.now(),
            )
            session.add(member)
        self.staff_ids.append(member.id)
        return member.id

    async def partner(self, kind: PartnerKind = PartnerKind.sexual_violence_care) -> PartnerKeys:
        identity = pyrage.x25519.Identity.generate()
        recipient = str(identity.to_public())
        admin = await self.staff("admin")
        now = self.clock.now()
        partner = Partner(
            id=new_id(),
            name=f"Partner {kind.value}",
            kind=kind.value,
            contact_email="intake@partner.example.org",
            website=self.site.url,
            age_recipient=recipient,
            key_fingerprint=fingerprint_of(recipient),
            key_imported_at=now,
            key_imported_by=admin,
            key_confirmed_at=now,
            key_confirmed_by=admin,
            created_at=now,
            updated_at=now,
        )
        async with self.services.db.transaction() as session:
            session.add(partner)
        return PartnerKeys(partner.id, str(identity), recipient)

    async def case(self) -> str:
        now = self.clock.now()
        case = Case(
            id=new_id(),
            reference=new_reference(),
            channel="chat",
            status="in_conversation",
            language="en",
            category="intimate_images",
            risk_flags="spreading_now,wants_police",
            created_at=now,
            queued_at=now,
            last_activity_at=now,
        )
        async with self.services.db.transaction() as session:
            session.add(case)
            await session.flush()
            session.add(
                CaseEvent(
                    id=new_id(),
                    case_id=case.id,
                    at=now,
                    actor="staff:someone",
                    kind="triage",
                    details='{"category":"intimate_images"}',
                )
            )
        return case.id

    async def file(self, case_id: str, data: bytes, name: str = FILE_NAME) -> str:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 256 * 1024):
                yield data[start : start + 256 * 1024]

        async with self.services.db.transaction() as session:
            item = await capture_file(
                session,
                self.services,
                case_id=case_id,
                chunks=chunks(),
                filename=lambda: name,
                captor=Captor("victim", "chat"),
            )
        return item.id

    async def url(self, case_id: str, url: str = CONTENT_URL) -> str:
        """A URL item recorded without fetching (nothing here may contact a web site)."""
        async with self.services.db.transaction() as session:
            cipher = await self.services.keyring.cipher(session, case_scope(case_id))
            item = EvidenceItem(
                id=new_id(),
                case_id=case_id,
                kind=ItemKind.url.value,
                status=ItemStatus.recorded.value,
                captured_at=self.clock.now(),
                captured_by="victim",
                channel="chat",
            )
            item.source_url = cipher.encrypt(
                url, table="evidence_items", row_id=item.id, field="source_url"
            )
            session.add(item)
            await session.flush()
            await custody.append(
                session,
                self.services.signer,
                self.clock,
                item_id=item.id,
                actor="victim",
                event="captured",
                details={"kind": "url"},
            )
        return item.id

    async def handover(
        self,
        case_id: str,
        partner: PartnerKeys,
        *,
        parts: tuple[str, ...] = ("summary", "categories", "timeline", "contact", "evidence"),
        evidence: list[str] | None = None,
        consent: str | None = "valid",
        consent_evidence: list[str] | None = None,
        approve: bool = True,
        queue: bool = True,
        language: str = "en",
    ) -> str:
        """A proposal, and (unless `consent` is None) the victim's answer: `valid`,
        `declined`, `expired`, `unconfirmed` (verbal, not confirmed). `consent_evidence`
        makes the consent cover other evidence than proposed. Queues the delivery when the
        handover is consented (and approved, for the police) unless `queue` is False."""
        found = self.services
        now = self.clock.now()
        async with found.db.transaction() as session:
            db_partner = await session.get(Partner, partner.partner_id)
            assert db_partner is not None
            handover = Handover(
                id=new_id(),
                reference=f"H-{new_reference()}",
                case_id=case_id,
                partner_id=db_partner.id,
                partner_kind=db_partner.kind,
                language=language,
                parts=",".join(parts),
                evidence_ids=",".join(sorted(evidence or [])),
                contact_method="phone" if "contact" in parts else None,
                scope_sha256="",
                approval_required=db_partner.kind == PartnerKind.police.value,
                created_at=now,
                updated_at=now,
            )
            cipher = await found.keyring.cipher(session, handover_scope(handover.id))
            if "summary" in parts:
                handover.summary = cipher.encrypt(
                    SUMMARY, table="handovers", row_id=handover.id, field="summary"
                )
            if "contact" in parts:
                handover.contact_details = cipher.encrypt(
                    "06-12345678 after 18:00",
                    table="handovers",
                    row_id=handover.id,
                    field="contact_details",
                )
            scope = gate.scope_of(handover, db_partner)
            handover.scope_sha256 = gate.scope_hash(scope)
            session.add(handover)
            await session.flush()
            if consent is None:
                return handover.id
            given = dict(scope)
            if consent_evidence is not None:
                given["evidence"] = sorted(consent_evidence)
            record = HandoverConsent(
                id=new_id(),
                handover_id=handover.id,
                scope=gate.scope_bytes(given).decode(),
                scope_sha256=gate.scope_hash(given),
                text=cipher.encrypt(
                    "consent text", table="handover_consents", row_id="x", field="text"
                ),
                text_sha256="0" * 64,
                language="en",
                method="verbal" if consent == "unconfirmed" else "chat",
                decision="declined" if consent == "declined" else "accepted",
                recorded_by="staff:" + self.staff_ids[0] if consent == "unconfirmed" else "victim",
                recorded_at=now,
                expires_at=now
                + (timedelta(minutes=-1) if consent == "expired" else timedelta(hours=72)),
            )
            session.add(record)
            handover.consent_id = record.id
            await session.flush()
            if consent == "declined":
                await state.move(session, self.clock, handover, H.declined, actor="victim")
                return handover.id
            # the status as the service would set it, or (for the negative cases) as a bug
            # might: the gate must refuse anyway
            await state.move(session, self.clock, handover, H.consented, actor="victim")
            if handover.approval_required and approve:
                handover.approved_by = await self._supervisor(session)
                await state.move(session, self.clock, handover, H.approved, actor="staff:x")
            if queue:
                await delivery.queue_delivery(session, found, handover)
        return handover.id

    async def _supervisor(self, session: Any) -> str:
        member = Staff(
            id=new_id(),
            username=f"sup{new_id()[:10]}".lower(),
            display_name="Supervisor Name",
            password_hash="x",
            role="supervisor",
            created_at=self.clock.now(),
        )
        session.add(member)
        await session.flush()
        return member.id

    async def withdraw(self, handover_id: str) -> None:
        async with self.services.db.transaction() as session:
            handover = await session.get(Handover, handover_id, with_for_update=True)
            assert handover is not None
            consent = await session.get(HandoverConsent, handover.consent_id)
            assert consent is not None
            consent.withdrawn_at, consent.withdrawn_by = self.clock.now(), "victim"
            await state.move(session, self.clock, handover, H.withdrawn, actor="victim")
            await delivery.stop_delivery(session, self.services, handover)

    async def row(self, handover_id: str) -> Handover:
        async with self.services.db.transaction() as session:
            handover = await session.get(Handover, handover_id)
            assert handover is not None
            return handover

    async def outbox(self) -> list[OutboxEntry]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(select(OutboxEntry))
            return list(rows.scalars().all())

    async def history(self, handover_id: str) -> list[HandoverHistory]:
        async with self.services.db.transaction() as session:
            return await state.history(session, handover_id)

    async def run_outbox(self) -> int:
        total = 0
        while handled := await self.services.outbox.run_once():
            total += handled
        return total

    async def retry_due(self) -> int:
        """Move past any back-off and run the outbox again."""
        self.clock.advance(hours=2)
        return await self.run_outbox()

    def blobs(self) -> list[str]:
        root = vault_for(self.services.settings).root
        return sorted(p.name for p in root.iterdir()) if root.exists() else []

    def link(self) -> str:
        """The token in the newest notification mail."""
        text = self.sink.received[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        match = re.search(r"/handover/([0-9a-f]{32})", text)
        assert match is not None
        return match.group(1)

    async def events(self, case_id: str) -> list[CaseEvent]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(select(CaseEvent).where(col(CaseEvent.case_id) == case_id))
            return list(rows.scalars().all())


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


@pytest.fixture
async def site() -> AsyncIterator[PartnerSite]:
    async with partner_site() as running:
        yield running


@pytest.fixture
async def desk(
    settings_for: Any,
    database_url: str,
    clock: FrozenClock,
    sink: Sink,
    site: PartnerSite,
    tmp_path: Path,
) -> AsyncIterator[Desk]:
    settings = settings_for(
        database_url,
        mail_from=HELPLINE_MAIL,
        mail_from_name="Meldpunt",
        inbound_addresses=HELPLINE_MAIL,
        smtp_out_host="127.0.0.1",
        smtp_out_port=sink.port,
        smtp_out_security="none",
        smtp_out_timeout_seconds=10,
        base_url="https://helpline.test",
        evidence_max_file_mb=64,
    )
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/handover/{token}" for r in app.routes):
        app.router.routes.extend(handover_download_routes())
    async with app.router.lifespan_context(app) as lifespan_state:
        state_dict = dict(lifespan_state)
        register_handover(state_dict["services"])

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(state_dict)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="https://helpline.test") as http:
            running = Desk(app, state_dict, clock, sink, site, http)
            await running.staff("agent")
            yield running
