"""The console in-process: the real app with a clock the test moves, staff logged in with
password and TOTP over HTTP, victims starting chats over HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
from sqlalchemy import select
from sqlmodel import col
from starlette.applications import Starlette

from helpline.cases.models import Case, CaseEvent
from helpline.core.clock import FrozenClock
from helpline.core.models import AuditEntry
from helpline.core.services import Services
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role

PASSWORD = "a long staff password"


@dataclass
class Member:
    """A logged-in staff member with their own cookie jar."""

    id: str
    name: str
    http: httpx.AsyncClient
    csrf: str

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(path, json=body or {}, headers={"X-CSRF-Token": self.csrf})

    async def queue(self, **filters: str) -> list[dict[str, Any]]:
        answer = await self.get("/api/staff/cases", params=filters)
        assert answer.status_code == 200, answer.text
        cases: list[dict[str, Any]] = answer.json()["cases"]
        return cases

    async def case(self, case_id: str) -> dict[str, Any]:
        answer = await self.get(f"/api/staff/cases/{case_id}")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def act(self, case_id: str, action: str, body: dict[str, Any] | None = None) -> Any:
        """POST an action on a case that must succeed; returns the case object."""
        answer = await self.post(f"/api/staff/cases/{case_id}/{action}", body)
        assert answer.status_code == 200, answer.text
        return answer.json()


class Desk:
    """A running app, its services and clock."""

    def __init__(self, app: Starlette, state: Any, clock: FrozenClock) -> None:
        self.app = app
        self.state = state
        self.clock = clock
        self.clients: list[httpx.AsyncClient] = []

    @property
    def services(self) -> Services:
        result: Services = self.state["services"]
        return result

    def client(self) -> httpx.AsyncClient:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        result = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://testserver"
        )
        self.clients.append(result)
        return result

    async def staff(self, username: str, role: Role = Role.agent) -> Member:
        async with self.services.db.transaction() as session:
            account = await create_staff(
                session,
                self.clock,
                username=username,
                password=PASSWORD,
                role=role,
                display_name=username.capitalize(),
            )
        http = self.client()
        answer = await http.post(
            "/api/staff/login", json={"username": username, "password": PASSWORD}
        )
        assert answer.json() == {"stage": "enrol"}, answer.text
        secret = (await http.get("/api/staff/totp/enrolment")).json()["secret"]
        csrf = (await http.get("/api/staff/me")).json()["csrf_token"]
        code = pyotp.TOTP(secret).at(self.clock.now())
        done = await http.post(
            "/api/staff/totp/enrol", json={"code": code}, headers={"X-CSRF-Token": csrf}
        )
        assert done.status_code == 200, done.text
        csrf = (await http.get("/api/staff/me")).json()["csrf_token"]
        return Member(account.id, account.display_name, http, csrf)

    async def victim(self, topic: str | None = None, language: str = "nl") -> dict[str, str]:
        """Start a chat; returns the receipt with the case id added."""
        body: dict[str, Any] = {"language": language}
        if topic is not None:
            body["topic"] = topic
        answer = await self.client().post("/api/chat/start", json=body)
        assert answer.status_code == 201, answer.text
        receipt: dict[str, str] = answer.json()
        async with self.services.db.transaction() as session:
            found = await session.execute(
                select(col(Case.id)).where(col(Case.reference) == receipt["reference"])
            )
            receipt["case_id"] = str(found.scalar_one())
        return receipt

    async def row(self, case_id: str) -> Case:
        async with self.services.db.transaction() as session:
            case = await session.get(Case, case_id)
            assert case is not None
            return case

    async def events(self, case_id: str) -> list[CaseEvent]:
        async with self.services.db.transaction() as session:
            rows = await session.execute(
                select(CaseEvent)
                .where(col(CaseEvent.case_id) == case_id)
                .order_by(col(CaseEvent.at), col(CaseEvent.kind))
            )
            return list(rows.scalars().all())

    async def audit(self, target: str | None = None) -> list[AuditEntry]:
        async with self.services.db.transaction() as session:
            query = select(AuditEntry).order_by(col(AuditEntry.seq))
            if target is not None:
                query = query.where(col(AuditEntry.target) == target)
            return list((await session.execute(query)).scalars().all())

    async def actions(self, case_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """The audit lines about a case: (action, actor, details)."""
        return [
            (line.action, line.actor, json.loads(line.details))
            for line in await self.audit(f"case:{case_id}")
        ]

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
