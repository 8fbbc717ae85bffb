"""Retention under test: the real app (plus the retention routes until create_app has them)
on both databases, a clock the test moves, and helpers that give a case everything a case can
hold — messages both ways, a staff note, a timeline event, an evidence file in the vault, an
e-mail thread, a callback request, a notice (own key) and a handover with a sealed packet in
the vault (own key)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlmodel import SQLModel, col
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases import service as cases
from helpline.cases.models import Case, CaseNote, Sender
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.crypto import case_scope
from helpline.core.ids import new_id
from helpline.evidence import service as evidence
from helpline.evidence.service import vault_for
from helpline.handover.models import Handover, Partner, handover_scope
from helpline.handover.packet import vault_for as packet_vault_for
from helpline.intake.callback.models import CallbackRequest, CallbackState
from helpline.intake.email.models import EmailThread, EmailToken
from helpline.models import import_all_models
from helpline.retention.models import PurgeRun
from helpline.retention.purge import purge, run_counts
from helpline.retention.register import retention_routes, victim_routes
from helpline.stats.models import StatCounter
from helpline.takedown.models import Notice, NoticeUrl, Platform, notice_scope
from tests.triage.kit import Desk, Member

VICTIM_SAYS = "He put my photos on photoshare, I am scared"
STAFF_SAYS = "We can ask the platform to remove them"
NOTE_SAYS = "Internal: perpetrator is likely her ex-partner"
FILE_BYTES = b"A screenshot of the chat, as text: he threatened to post it. " * 40
REPORTED_URL = "https://photoshare.example.org/p/999"
PACKET_BYTES = b"age-encryption.org/v1 sealed packet " * 20

# tables that may name a purged case by design: the audit log keeps its lines (ids, never
# personal data) until their own retention
KEPT_BY_DESIGN = {"audit_log"}


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the retention routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/retention/upcoming" for r in app.routes):
        app.router.routes.extend(retention_routes())
    if not any(getattr(r, "path", "") == "/api/chat/case/export" for r in app.routes):
        app.router.routes.extend(victim_routes())
    return app


@dataclass
class Built:
    """One case with everything in it."""

    case_id: str
    reference: str
    token: str
    notice_id: str | None = None
    handover_id: str | None = None
    item_id: str | None = None
    blobs: list[str] = field(default_factory=list)


class Office(Desk):
    async def say(self, case_id: str, words: str, *, staff_id: str | None = None) -> None:
        async with self.services.db.transaction() as session:
            await cases.post_message(
                session,
                self.services.keyring,
                self.clock,
                case_id=case_id,
                sender=Sender.staff if staff_id else Sender.victim,
                text=words,
                client_id=new_id(),
                staff_id=staff_id,
            )

    async def close_case(self, case_id: str) -> None:
        async with self.services.db.transaction() as session:
            case = await session.get(Case, case_id)
            assert case is not None
            case.status, case.ended_at, case.outcome = "closed", self.clock.now(), "advice_only"

    async def note(self, case_id: str, staff_id: str, words: str) -> None:
        async with self.services.db.transaction() as session:
            cipher = await self.services.keyring.cipher(session, case_scope(case_id))
            note_id = new_id()
            session.add(
                CaseNote(
                    id=note_id,
                    case_id=case_id,
                    staff_id=staff_id,
                    body=cipher.encrypt(words, table="case_notes", row_id=note_id, field="body"),
                    created_at=self.clock.now(),
                )
            )

    async def file(self, case_id: str) -> tuple[str, str]:
        async def chunks() -> AsyncIterator[bytes]:
            yield FILE_BYTES

        async with self.services.db.transaction() as session:
            item = await evidence.capture_file(
                session,
                self.services,
                case_id=case_id,
                chunks=chunks(),
                filename=lambda: "screenshot.txt",
                captor=evidence.Captor("victim", "chat"),
            )
            assert item.blob_name is not None
            return item.id, item.blob_name

    async def email_side(self, case_id: str) -> None:
        async with self.services.db.transaction() as session:
            cipher = await self.services.keyring.cipher(session, case_scope(case_id))
            now = self.clock.now()
            session.add(
                EmailThread(
                    case_id=case_id,
                    address=cipher.encrypt(
                        "victim@example.net", table="email_threads", row_id=case_id, field="address"
                    ),
                    created_at=now,
                    updated_at=now,
                )
            )
            session.add(EmailToken(token_hash=new_id() * 2, case_id=case_id, created_at=now))

    async def callback(self, case_id: str, *, state: str = CallbackState.reached) -> str:
        async with self.services.db.transaction() as session:
            now = self.clock.now()
            row = CallbackRequest(
                id=new_id(),
                case_id=case_id,
                state=state,
                source="chat",
                windows=json.dumps([[now.isoformat(), (now + timedelta(hours=1)).isoformat()]]),
                first_window_start=now,
                last_window_end=now + timedelta(hours=1),
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            return row.id

    async def notice(
        self, case_id: str | None, *, status: str = "honoured", closed: bool = True
    ) -> str:
        async with self.services.db.transaction() as session:
            now = self.clock.now()
            platform = (
                await session.execute(select(Platform).where(col(Platform.slug) == "photoshare"))
            ).scalar_one_or_none()
            if platform is None:
                platform = Platform(
                    id=new_id(),
                    name="Photoshare",
                    slug="photoshare",
                    delivery="email",
                    contact_email="dsa@photoshare.example.org",
                    created_at=now,
                    updated_at=now,
                )
                session.add(platform)
                await session.flush()
            notice_id = new_id()
            cipher = await self.services.keyring.cipher(session, notice_scope(notice_id))
            session.add(
                Notice(
                    id=notice_id,
                    reference=f"N-{new_id()[:4].upper()}-{new_id()[:4].upper()}",
                    case_id=case_id,
                    platform_id=platform.id,
                    category="intimate_images",
                    legal_basis="privacy",
                    status=status,
                    delivery="email",
                    idempotency_key=new_id(),
                    created_at=now,
                    updated_at=now,
                    sent_at=now,
                    decided_at=now if closed else None,
                    closed_at=now if closed else None,
                )
            )
            await session.flush()
            url_id = new_id()
            session.add(
                NoticeUrl(
                    id=url_id,
                    notice_id=notice_id,
                    position=1,
                    url=cipher.encrypt(
                        REPORTED_URL, table="notice_urls", row_id=url_id, field="url"
                    ),
                    status=status,
                    updated_at=now,
                )
            )
            return notice_id

    async def handover(self, case_id: str, *, status: str = "downloaded") -> tuple[str, str]:
        vault = packet_vault_for(self.services.settings)

        async def chunks() -> AsyncIterator[bytes]:
            yield PACKET_BYTES

        async with self.services.db.transaction() as session:
            now = self.clock.now()
            partner = Partner(
                id=new_id(),
                name="Centrum Seksueel Geweld",
                kind="sexual_violence_care",
                created_at=now,
                updated_at=now,
            )
            session.add(partner)
            await session.flush()
            handover_id = new_id()
            cipher = await self.services.keyring.cipher(session, handover_scope(handover_id))
            blob = await vault.store(chunks(), cipher.derive("packet"), max_bytes=1 << 20)
            session.add(
                Handover(
                    id=handover_id,
                    reference=f"H-{new_id()[:4].upper()}-{new_id()[:4].upper()}",
                    case_id=case_id,
                    partner_id=partner.id,
                    partner_kind=partner.kind,
                    parts="summary",
                    summary=cipher.encrypt(
                        "summary for the partner",
                        table="handovers",
                        row_id=handover_id,
                        field="summary",
                    ),
                    scope_sha256="0" * 64,
                    status=status,
                    created_at=now,
                    updated_at=now,
                    blob_name=blob.name,
                    delivered_at=now,
                    closed_at=now if status in ("downloaded", "expired", "withdrawn") else None,
                )
            )
            return handover_id, blob.name

    async def full_case(self, agent: Member, *, close: bool = True) -> Built:
        """A chat with everything a case can hold, claimed by `agent`."""
        receipt = await self.victim()
        case_id = receipt["case_id"]
        answer = await agent.post(f"/api/staff/cases/{case_id}/claim")
        assert answer.status_code == 200, answer.text
        await self.say(case_id, VICTIM_SAYS)
        await self.say(case_id, STAFF_SAYS, staff_id=agent.id)
        await self.note(case_id, agent.id, NOTE_SAYS)
        item_id, file_blob = await self.file(case_id)
        await self.email_side(case_id)
        await self.callback(case_id)
        notice_id = await self.notice(case_id)
        handover_id, packet_blob = await self.handover(case_id)
        if close:
            await self.close_case(case_id)
        return Built(
            case_id,
            receipt["reference"],
            receipt["token"],
            notice_id,
            handover_id,
            item_id,
            [file_blob, packet_blob],
        )

    async def purge(self, **options: Any) -> PurgeRun:
        return await purge(self.services, self.clock.now(), **options)

    def vault_names(self) -> set[str]:
        """The blobs in the evidence vault and the handover packets' vault."""
        settings = self.services.settings
        roots = [vault_for(settings).root, packet_vault_for(settings).root]
        return {path.name for root in roots if root.exists() for path in root.iterdir()}

    async def mentions(self, *needles: str) -> list[str]:
        """`table.column` of every value in the database that contains one of `needles`."""
        import_all_models()
        found: list[str] = []
        async with self.services.db.transaction() as session:
            for table in SQLModel.metadata.sorted_tables:
                if table.name in KEPT_BY_DESIGN:
                    continue
                rows = (await session.execute(select(table))).mappings().all()
                for row in rows:
                    for column, value in row.items():
                        if value is None:
                            continue
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        if any(needle.encode() in raw for needle in needles):
                            found.append(f"{table.name}.{column}")
        return sorted(set(found))

    async def all(self, model: Any) -> list[Any]:
        async with self.services.db.transaction() as session:
            return list((await session.execute(select(model))).scalars().all())

    async def get(self, model: Any, key: str) -> Any:
        async with self.services.db.transaction() as session:
            return await session.get(model, key)

    async def count(self, model: Any, **where: Any) -> int:
        async with self.services.db.transaction() as session:
            query = select(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return len((await session.execute(query)).scalars().all())

    async def counters(self, metric: str) -> int:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(StatCounter).where(col(StatCounter.metric) == metric)
            )
            return sum(row.count for row in rows.scalars())

    async def table_sizes(self) -> dict[str, int]:
        import_all_models()
        sizes = {}
        async with self.services.db.transaction() as session:
            for table in SQLModel.metadata.sorted_tables:
                sizes[table.name] = int(
                    (await session.execute(text(f"SELECT count(*) FROM {table.name}"))).scalar_one()
                )
        return sizes

    async def case_exists(self, case_id: str) -> bool:
        async with self.services.db.transaction() as session:
            return await session.get(Case, case_id) is not None


def counts(run: PurgeRun) -> dict[str, int]:
    return {name: value for name, value in run_counts(run).items() if value}


def days(n: float) -> timedelta:
    return timedelta(days=n)
