"""The e-mail channel under test: the real app's services, the real SMTP listener on a
loopback port, and a real SMTP sink (aiosmtpd) standing in for the outbound relay.

Mail goes in with Python's `smtplib` (in a thread: the listener runs in the test's event
loop), and out through aiosmtplib when a test runs the outbox worker.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP as SMTP_POLICY
from email.policy import default
from typing import Any

import httpx
import pyotp
import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import select
from starlette.applications import Starlette

from helpline.app import create_app
from helpline.cases.models import Case, Message
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.crypto import case_scope
from helpline.core.services import Services
from helpline.intake.email import email_routes, register_email, smtp_listener
from helpline.intake.email.listener import Listener
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role

HELPLINE = "help@helpline.test"
VICTIM = "victim@example.org"
PASSWORD = "a long staff password"


# ---------------------------------------------------------------- the outbound relay


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = BytesParser(policy=default).parsebytes(self.raw)
        return parsed


@dataclass
class SinkHandler:
    """Records what the relay is given; `refuse_rcpt` makes it answer RCPT with a code."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: str | None = None
    logins: list[bytes] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 OK"


@dataclass
class Sink:
    handler: SinkHandler
    server: asyncio.Server
    port: int

    @property
    def received(self) -> list[Received]:
        return self.handler.received


async def start_sink(**smtp_options: Any) -> Sink:
    handler = SinkHandler()
    loop = asyncio.get_running_loop()
    ssl_context = smtp_options.pop("ssl", None)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.test", loop=loop, **smtp_options),
        "127.0.0.1",
        0,
        ssl=ssl_context,
    )
    return Sink(handler, server, server.sockets[0].getsockname()[1])


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


# ---------------------------------------------------------------- the helpline


@pytest.fixture
def mail_overrides() -> dict[str, Any]:
    """Settings a test module changes (override this fixture)."""
    return {}


@pytest.fixture
def settings(
    settings_for: Any, database_url: str, sink: Sink, mail_overrides: dict[str, Any]
) -> Settings:
    values: dict[str, Any] = {
        "inbound_addresses": HELPLINE,
        "mail_from": HELPLINE,
        "mail_from_name": "Test Helpline",
        "smtp_out_host": "127.0.0.1",
        "smtp_out_port": sink.port,
        "smtp_out_security": "none",
        "smtp_out_timeout_seconds": 10,
        "smtp_in_max_message_mb": 2,
        "email_max_attachments": 3,
        "email_max_attachment_mb": 1,
        **mail_overrides,
    }
    result: Settings = settings_for(database_url, **values)
    return result


@dataclass
class Mailroom:
    app: Starlette
    state: dict[str, Any]
    clock: FrozenClock
    listener: Listener
    sink: Sink
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def services(self) -> Services:
        result: Services = self.state["services"]
        return result

    @property
    def port(self) -> int:
        return self.listener.port

    async def send(
        self,
        mail: bytes | EmailMessage,
        *,
        mail_from: str = VICTIM,
        to: list[str] | None = None,
        source: str = "127.0.0.1",
        helo: str = "client.example.org",
        port: int | None = None,
    ) -> None:
        """Deliver over SMTP with smtplib (in a thread); raises what smtplib raises."""
        raw = mail.as_bytes(policy=SMTP_POLICY) if isinstance(mail, EmailMessage) else mail

        def deliver() -> None:
            with smtplib.SMTP(
                "127.0.0.1",
                port or self.port,
                local_hostname=helo,
                source_address=(source, 0),
                timeout=30,
            ) as client:
                client.sendmail(mail_from, to or [HELPLINE], raw)

        await asyncio.to_thread(deliver)

    async def run_outbox(self) -> int:
        return await self.services.outbox.run_once()

    def client(self) -> httpx.AsyncClient:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        result = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url=self.services.settings.base_url,
            headers={"Origin": self.services.settings.base_url},
        )
        self.clients.append(result)
        return result

    async def staff(self, username: str, role: Role = Role.agent) -> StaffClient:
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
        csrf = (await http.get("/api/staff/me")).json()["csrf_token"]
        http.headers["X-CSRF-Token"] = csrf
        return StaffClient(account.id, http)

    async def cases(self) -> list[Case]:
        async with self.services.db.transaction() as session:
            return list((await session.execute(select(Case))).scalars().all())

    async def texts(self, case_id: str) -> list[tuple[str, str]]:
        """(sender, text) of a case's messages, decrypted, in order."""
        async with self.services.db.transaction() as session:
            rows = (
                (
                    await session.execute(
                        select(Message).where(Message.case_id == case_id).order_by(Message.seq)  # type: ignore[arg-type]
                    )
                )
                .scalars()
                .all()
            )
            cipher = await self.services.keyring.cipher(session, case_scope(case_id))
            return [
                (
                    row.sender,
                    cipher.decrypt_text(row.body, table="messages", row_id=row.id, field="body"),
                )
                for row in rows
            ]


@dataclass
class StaffClient:
    id: str
    http: httpx.AsyncClient

    async def claim(self, case_id: str) -> None:
        answer = await self.http.post(f"/api/staff/cases/{case_id}/claim")
        assert answer.status_code == 200, answer.text

    async def reply(self, case_id: str, text: str, **more: Any) -> httpx.Response:
        body = {"text": text, "client_id": more.pop("client_id", f"c-{len(text)}-{id(text)}")}
        return await self.http.post(
            f"/api/staff/cases/{case_id}/email/reply", json={**body, **more}
        )


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app, plus the e-mail routes until create_app has them."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", "") == "/api/staff/email/quarantine" for r in app.routes):
        app.router.routes.extend(email_routes())
    return app


@pytest.fixture
async def mailroom(settings: Settings, clock: FrozenClock, sink: Sink) -> AsyncIterator[Mailroom]:
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        services: Services = state["services"]
        register_email(services)
        async with smtp_listener(services, host="127.0.0.1", port=0) as listener:
            room = Mailroom(app, dict(state), clock, listener, sink)
            yield room
            for client in room.clients:
                await client.aclose()


def victim_mail(
    text: str = "Iemand dreigt mijn foto's te delen. Wat kan ik doen?",
    *,
    subject: str = "Hulp nodig",
    sender: str = VICTIM,
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Victim <{sender}>"
    mail["To"] = HELPLINE
    mail["Subject"] = subject
    mail["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@mail.example.org>"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    return mail
