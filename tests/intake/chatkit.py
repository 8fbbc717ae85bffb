"""Test clients for the chat: a victim and a logged-in staff member, over real HTTP and
websockets against a live server (see tests/live.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
from websockets.asyncio.client import ClientConnection, connect

from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role

PASSWORD = "a long staff password"


@dataclass
class ChatClient:
    """One websocket connection that remembers every frame it got."""

    socket: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    welcome: dict[str, Any] = field(default_factory=dict)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def say(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a message and wait for its ack."""
        client_id = client_id or uuid.uuid4().hex
        await self.send({"type": "send", "client_id": client_id, "text": text})
        return await self.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == client_id)

    async def next_frame(self, timeout: float = 10) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def wait_for(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        for frame in self.frames:
            if predicate(frame):
                self.frames.remove(frame)
                return frame
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; got {self.frames}")
            frame = await self.next_frame(remaining)
            if predicate(frame):
                self.frames.remove(frame)
                return frame

    async def messages(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        got = []
        for _ in range(count):
            got.append(await self.wait_for(lambda f: f["type"] == "message", timeout))
        return got

    async def close(self) -> None:
        await self.socket.close()


async def open_chat(
    ws_url: str, hello: dict[str, Any], headers: dict[str, str] | None = None
) -> ChatClient:
    socket = await connect(f"{ws_url}/ws/chat", additional_headers=headers or {})
    client = ChatClient(socket)
    await client.send({"type": "hello", **hello})
    client.welcome = await client.next_frame()
    client.frames.clear()
    return client


@dataclass
class Victim:
    base_url: str
    reference: str = ""
    passphrase: str = ""
    token: str = ""

    async def start(self, language: str = "nl") -> Victim:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            answer = await http.post("/api/chat/start", json={"language": language})
        answer.raise_for_status()
        body = answer.json()
        self.reference, self.passphrase, self.token = (
            body["reference"],
            body["passphrase"],
            body["token"],
        )
        return self

    async def chat(self, ws_url: str, after: int = 0) -> ChatClient:
        return await open_chat(ws_url, {"token": self.token, "after": after})


@dataclass
class StaffMember:
    base_url: str
    http: httpx.AsyncClient
    csrf: str = ""
    id: str = ""

    @classmethod
    async def create(
        cls, db: Database, base_url: str, username: str, role: Role = Role.agent
    ) -> StaffMember:
        async with db.transaction() as session:
            account = await create_staff(
                session, SystemClock(), username=username, password=PASSWORD, role=role
            )
        member = cls(base_url, httpx.AsyncClient(base_url=base_url), id=account.id)
        await member.log_in(username)
        return member

    async def log_in(self, username: str) -> None:
        origin = {"Origin": self.base_url}
        answer = await self.http.post(
            "/api/staff/login", json={"username": username, "password": PASSWORD}, headers=origin
        )
        answer.raise_for_status()
        assert answer.json()["stage"] == "enrol"
        secret = (await self.http.get("/api/staff/totp/enrolment")).json()["secret"]
        csrf = (await self.http.get("/api/staff/me")).json()["csrf_token"]
        enrolled = await self.http.post(
            "/api/staff/totp/enrol",
            json={"code": pyotp.TOTP(secret).now()},
            headers={**origin, "X-CSRF-Token": csrf},
        )
        enrolled.raise_for_status()
        self.csrf = (await self.http.get("/api/staff/me")).json()["csrf_token"]

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, "Origin": self.base_url}

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, headers=self.headers(), **kwargs)

    async def claim(self, reference: str) -> str:
        cases = (await self.http.get("/api/staff/cases")).json()["cases"]
        [case] = [c for c in cases if c["reference"] == reference]
        answer = await self.post(f"/api/staff/cases/{case['id']}/claim")
        answer.raise_for_status()
        return str(case["id"])

    async def chat(self, ws_url: str, case_id: str, after: int = 0) -> ChatClient:
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return await open_chat(
            ws_url,
            {"case": case_id, "after": after},
            headers={"Cookie": cookies, "Origin": self.base_url},
        )

    async def close(self) -> None:
        await self.http.aclose()
