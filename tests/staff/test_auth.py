"""Staff login over HTTP: password, TOTP enrolment and login, lockout, code reuse, sessions,
idle timeout, CSRF, origins, cookie attributes, roles, and the TOTP secret at rest."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from helpline.app import create_app
from helpline.core.clock import FrozenClock, as_utc
from helpline.core.config import Settings
from helpline.core.http import route
from helpline.core.models import AuditEntry
from helpline.core.services import Services
from helpline.staff.accounts import create_staff
from helpline.staff.auth import (
    idle_session_purge,
    open_session,
    purge_idle_sessions,
    staff,
    staff_authenticator,
    token_hash,
    totp_scope,
)
from helpline.staff.models import LoginStage, Role, Staff, StaffSession
from helpline.staff.routes import register_staff, staff_routes

PASSWORD = "correct horse battery staple"
BASE = "http://127.0.0.1:8000"  # the settings' default base URL
MAX_FAILURES = 3
LOCKOUT_MINUTES = 15
IDLE_MINUTES = 30


# ---------------------------------------------------------------- the app with staff login


async def whoami(request: Request) -> Response:
    principal = request.state.principal
    return JSONResponse({"id": principal.id, "role": principal.role})


def build_app(settings: Settings, clock: FrozenClock) -> Starlette:
    """The real app plus the staff routes and authenticators (until create_app has them), and
    two test routes behind role rules."""
    app = create_app(settings, clock=clock)
    if not any(getattr(r, "path", None) == "/api/staff/login" for r in app.router.routes):
        app.router.routes.extend(staff_routes())
        register_staff(app.state.authenticators)
    app.router.routes.extend(
        [
            route("/test/agent", whoami, access=staff(), methods=["GET", "POST"]),
            route("/test/admin", whoami, access=staff(Role.admin)),
        ]
    )
    return app


class Helpline:
    """A running app, its services and the clock, with helpers to make clients and staff."""

    def __init__(self, app: Starlette, state: Any, clock: FrozenClock, base_url: str) -> None:
        self.app = app
        self.state = state
        self.clock = clock
        self.base_url = base_url
        self.clients: list[httpx.AsyncClient] = []

    @property
    def services(self) -> Services:
        result: Services = self.state["services"]
        return result

    def client(self) -> httpx.AsyncClient:
        """A client with its own cookie jar (one browser)."""

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(self.state)
            await self.app(scope, receive, send)

        result = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=self.base_url)
        self.clients.append(result)
        return result

    async def add_staff(self, username: str, role: Role = Role.agent) -> str:
        async with self.services.db.transaction() as session:
            account = await create_staff(
                session, self.clock, username=username, password=PASSWORD, role=role
            )
            return account.id

    async def staff_row(self, staff_id: str) -> Staff:
        async with self.services.db.transaction() as session:
            row = await session.get(Staff, staff_id)
            assert row is not None
            return row

    async def sessions_of(self, staff_id: str) -> list[StaffSession]:
        async with self.services.db.transaction() as session:
            query = select(StaffSession).where(StaffSession.staff_id == staff_id)  # type: ignore[arg-type]
            return list((await session.execute(query)).scalars().all())

    async def audit(self) -> list[AuditEntry]:
        async with self.services.db.transaction() as session:
            return list((await session.execute(select(AuditEntry))).scalars().all())

    def code(self, secret: str, offset_steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.clock.now() + timedelta(seconds=30 * offset_steps))


@contextlib.asynccontextmanager
async def running(
    settings: Settings, clock: FrozenClock, base_url: str = "http://testserver"
) -> AsyncIterator[Helpline]:
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        helpline = Helpline(app, state, clock, base_url)
        try:
            yield helpline
        finally:
            for client in helpline.clients:
                await client.aclose()


@pytest.fixture
async def hl(settings_for: Any, database_url: str, clock: FrozenClock) -> AsyncIterator[Helpline]:
    settings = settings_for(
        database_url,
        staff_max_failed_logins=MAX_FAILURES,
        staff_lockout_minutes=LOCKOUT_MINUTES,
        staff_idle_minutes=IDLE_MINUTES,
    )
    async with running(settings, clock) as helpline:
        yield helpline


# ---------------------------------------------------------------- flows


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/staff/login", json={"username": username, "password": password})


async def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    me = await client.get("/api/staff/me")
    assert me.status_code == 200, me.text
    return {"X-CSRF-Token": me.json()["csrf_token"]}


async def enrol(hl: Helpline, client: httpx.AsyncClient, username: str) -> str:
    """Log in for the first time and set up TOTP; returns the secret."""
    response = await login(client, username)
    assert response.json() == {"stage": "enrol"}
    secret: str = (await client.get("/api/staff/totp/enrolment")).json()["secret"]
    done = await client.post(
        "/api/staff/totp/enrol", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert done.status_code == 200 and done.json() == {"stage": "done"}, done.text
    return secret


async def logged_in(hl: Helpline, username: str, role: Role = Role.agent) -> httpx.AsyncClient:
    await hl.add_staff(username, role)
    client = hl.client()
    await enrol(hl, client, username)
    return client


# ---------------------------------------------------------------- tests


async def test_first_login_enrols_totp_then_logs_in_with_a_code(hl: Helpline) -> None:
    staff_id = await hl.add_staff("alice")
    client = hl.client()

    first = await login(client, "alice")
    assert first.status_code == 200 and first.json() == {"stage": "enrol"}
    partial_token = client.cookies["helpline_staff"]
    me = (await client.get("/api/staff/me")).json()
    assert me["stage"] == "enrol" and me["id"] == staff_id and me["username"] == "alice"
    assert me["role"] == "agent" and me["display_name"] == "alice" and me["csrf_token"]
    # the password alone opens nothing but the enrolment
    assert (await client.get("/test/agent")).status_code == 401
    wrong_stage = await client.post(
        "/api/staff/login/totp", json={"code": "123456"}, headers=await csrf(client)
    )
    assert wrong_stage.status_code == 403 and wrong_stage.json()["error"]["code"] == "wrong_stage"

    enrolment = (await client.get("/api/staff/totp/enrolment")).json()
    secret = enrolment["secret"]
    assert len(secret) >= 32
    uri = pyotp.parse_uri(enrolment["uri"])
    assert isinstance(uri, pyotp.TOTP) and uri.secret == secret
    assert uri.issuer == "Helpline" and uri.name == "alice"
    # asking again (a reload) shows the same secret, not a new one
    assert (await client.get("/api/staff/totp/enrolment")).json()["secret"] == secret
    assert (await hl.staff_row(staff_id)).totp_enabled_at is None  # not before a code works

    wrong = await client.post(
        "/api/staff/totp/enrol", json={"code": "000000"}, headers=await csrf(client)
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "wrong_code"
    enrolled = await client.post(
        "/api/staff/totp/enrol", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert enrolled.status_code == 200 and enrolled.json() == {"stage": "done"}
    # the complete login runs under a new token; the partial one is gone
    assert client.cookies["helpline_staff"] != partial_token
    assert [s.stage for s in await hl.sessions_of(staff_id)] == ["done"]
    account = await hl.staff_row(staff_id)
    assert account.totp_enabled_at is not None and account.failed_logins == 0
    assert (await client.get("/api/staff/me")).json()["stage"] == "done"
    assert (await client.get("/test/agent")).json() == {"id": staff_id, "role": "agent"}

    logout = await client.post("/api/staff/logout", headers=await csrf(client))
    assert logout.status_code == 204
    assert (await client.get("/api/staff/me")).status_code == 401
    assert await hl.sessions_of(staff_id) == []

    # the next login asks for a code, and cannot see or replace the secret
    hl.clock.advance(seconds=30)
    assert (await login(client, "alice")).json() == {"stage": "totp"}
    assert (await client.get("/api/staff/totp/enrolment")).status_code == 403
    assert (await client.get("/api/staff/totp/qr.svg")).status_code == 403
    again = await client.post(
        "/api/staff/totp/enrol", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert again.status_code == 403
    assert (await client.get("/test/agent")).status_code == 401
    done = await client.post(
        "/api/staff/login/totp", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert done.status_code == 200 and done.json() == {"stage": "done"}
    assert (await client.get("/test/agent")).status_code == 200

    actions = [(e.action, e.target, e.details) for e in await hl.audit()]
    target = f"staff:{staff_id}"
    assert ("staff.login", target, '{"stage":"enrol"}') in actions
    assert ("staff.totp_enrolled", target, "{}") in actions
    assert ("staff.login", target, '{"stage":"done"}') in actions
    assert ("staff.logout", target, "{}") in actions
    assert ("staff.login_failed", target, '{"failures":1,"reason":"code"}') in actions
    assert all("alice" not in (e.details + (e.target or "")) for e in await hl.audit())


async def test_wrong_password_and_unknown_user_get_the_same_answer(hl: Helpline) -> None:
    staff_id = await hl.add_staff("bob")
    disabled_id = await hl.add_staff("carol")
    async with hl.services.db.transaction() as session:
        row = await session.get(Staff, disabled_id)
        assert row is not None
        row.disabled = True
    client = hl.client()

    wrong = await login(client, "bob", "not the password at all")
    unknown = await login(client, "nobody", "not the password at all")
    disabled = await login(client, "carol")  # right password, disabled account
    for response in (wrong, unknown, disabled):
        assert response.status_code == 401
        assert response.json() == wrong.json()
        assert "set-cookie" not in response.headers
    assert wrong.json()["error"]["code"] == "wrong_credentials"
    assert (await hl.staff_row(staff_id)).failed_logins == 1  # committed with the 401

    failed = [e for e in await hl.audit() if e.action == "staff.login_failed"]
    assert [(e.target, e.details) for e in failed] == [
        (f"staff:{staff_id}", '{"failures":1,"reason":"password"}'),
        (None, '{"reason":"unknown"}'),
        (f"staff:{disabled_id}", '{"reason":"disabled"}'),
    ]
    assert all("nobody" not in e.details and "bob" not in e.details for e in failed)


async def test_unknown_fields_and_bad_json_are_refused(hl: Helpline) -> None:
    await hl.add_staff("dave")
    client = hl.client()
    extra = await client.post(
        "/api/staff/login", json={"username": "dave", "password": PASSWORD, "remember": True}
    )
    assert extra.status_code == 422 and extra.json()["error"]["code"] == "invalid"
    missing = await client.post("/api/staff/login", json={"username": "dave"})
    assert missing.status_code == 422
    garbage = await client.post("/api/staff/login", content=b"{not json")
    assert garbage.status_code == 422
    assert "set-cookie" not in extra.headers


async def test_lockout_after_failures_and_unlock_after_the_lockout_time(hl: Helpline) -> None:
    staff_id = await hl.add_staff("erin")
    client = hl.client()
    for _ in range(MAX_FAILURES - 1):
        response = await login(client, "erin", "wrong password here")
        assert response.status_code == 401
    locking = await login(client, "erin", "wrong password here")
    assert locking.status_code == 423
    assert locking.json()["error"]["code"] == "locked"
    assert locking.json()["error"]["details"]["retry_after"] == LOCKOUT_MINUTES * 60
    assert locking.headers["retry-after"] == str(LOCKOUT_MINUTES * 60)
    account = await hl.staff_row(staff_id)
    assert account.locked_until is not None
    assert as_utc(account.locked_until) == hl.clock.now() + timedelta(minutes=LOCKOUT_MINUTES)

    hl.clock.advance(minutes=LOCKOUT_MINUTES - 1)
    still = await login(client, "erin")  # even the right password
    assert still.status_code == 423
    assert still.json()["error"]["details"]["retry_after"] == 60
    assert "set-cookie" not in still.headers

    hl.clock.advance(minutes=1)
    unlocked = await login(client, "erin")
    assert unlocked.status_code == 200 and unlocked.json() == {"stage": "enrol"}
    actions = [e.action for e in await hl.audit() if e.target == f"staff:{staff_id}"]
    assert actions.count("staff.login_failed") == MAX_FAILURES
    assert actions.count("staff.locked") == 1


async def test_wrong_codes_count_as_failures_and_lock(hl: Helpline) -> None:
    await hl.add_staff("frank")
    client = hl.client()
    secret = await enrol(hl, client, "frank")
    await client.post("/api/staff/logout", headers=await csrf(client))

    hl.clock.advance(seconds=30)
    assert (await login(client, "frank")).json() == {"stage": "totp"}
    headers = await csrf(client)
    for _ in range(MAX_FAILURES - 1):
        wrong = await client.post("/api/staff/login/totp", json={"code": "000000"}, headers=headers)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "wrong_code"
    locking = await client.post(
        "/api/staff/login/totp", json={"code": "not-a-code"}, headers=headers
    )
    assert locking.status_code == 423
    # the half-done login is gone: after the lock, start again from the password
    assert (await client.get("/api/staff/me")).status_code == 401
    assert (await login(client, "frank")).status_code == 423

    hl.clock.advance(minutes=LOCKOUT_MINUTES)
    assert (await login(client, "frank")).json() == {"stage": "totp"}
    done = await client.post(
        "/api/staff/login/totp", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert done.status_code == 200


async def test_a_password_login_does_not_reset_the_count_of_wrong_codes(hl: Helpline) -> None:
    staff_id = await hl.add_staff("gina")
    client = hl.client()
    await enrol(hl, client, "gina")
    await client.post("/api/staff/logout", headers=await csrf(client))
    for attempt in range(MAX_FAILURES):
        assert (await login(client, "gina")).json() == {"stage": "totp"}
        wrong = await client.post(
            "/api/staff/login/totp", json={"code": "000000"}, headers=await csrf(client)
        )
        assert wrong.status_code == (423 if attempt == MAX_FAILURES - 1 else 401)
    assert (await hl.staff_row(staff_id)).locked_until is not None


async def test_a_code_works_once(hl: Helpline) -> None:
    await hl.add_staff("hank")
    client = hl.client()
    secret = await enrol(hl, client, "hank")
    enrol_code = hl.code(secret)
    await client.post("/api/staff/logout", headers=await csrf(client))

    # same moment, same code: refused
    assert (await login(client, "hank")).json() == {"stage": "totp"}
    reused = await client.post(
        "/api/staff/login/totp", json={"code": enrol_code}, headers=await csrf(client)
    )
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "wrong_code"

    # a minute on: the code of the step before (inside the window) works, once
    hl.clock.advance(seconds=60)
    previous = hl.code(secret, offset_steps=-1)
    first = await client.post(
        "/api/staff/login/totp", json={"code": previous}, headers=await csrf(client)
    )
    assert first.status_code == 200
    await client.post("/api/staff/logout", headers=await csrf(client))
    await login(client, "hank")
    second = await client.post(
        "/api/staff/login/totp", json={"code": previous}, headers=await csrf(client)
    )
    assert second.status_code == 401
    # a code two steps old is outside the window
    hl.clock.advance(seconds=60)
    stale = await client.post(
        "/api/staff/login/totp",
        json={"code": hl.code(secret, offset_steps=-2)},
        headers=await csrf(client),
    )
    assert stale.status_code == 401
    fresh = await client.post(
        "/api/staff/login/totp", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert fresh.status_code == 200


async def test_idle_sessions_end(hl: Helpline) -> None:
    client = await logged_in(hl, "ivy")
    staff_id = (await client.get("/api/staff/me")).json()["id"]
    [row] = await hl.sessions_of(staff_id)
    seen = as_utc(row.last_seen_at)

    # used within the minute: last_seen_at is not rewritten
    hl.clock.advance(seconds=20)
    assert (await client.get("/test/agent")).status_code == 200
    assert as_utc((await hl.sessions_of(staff_id))[0].last_seen_at) == seen

    # activity keeps it alive well beyond the idle time counted from the login
    for _ in range(3):
        hl.clock.advance(minutes=IDLE_MINUTES - 1)
        assert (await client.get("/test/agent")).status_code == 200
    assert as_utc((await hl.sessions_of(staff_id))[0].last_seen_at) == hl.clock.now()

    hl.clock.advance(minutes=IDLE_MINUTES)
    refused = await client.get("/test/agent")
    assert refused.status_code == 401
    assert await hl.sessions_of(staff_id) == []  # deleted, not only refused
    assert (await client.get("/api/staff/me")).status_code == 401


async def test_purge_deletes_idle_sessions_nobody_came_back_to(hl: Helpline) -> None:
    staff_id = await hl.add_staff("jack")
    async with hl.services.db.transaction() as session:
        account = await session.get(Staff, staff_id)
        assert account is not None
        await open_session(session, hl.clock, account, LoginStage.done)
        hl.clock.advance(minutes=IDLE_MINUTES - 1)
        await open_session(session, hl.clock, account, LoginStage.totp)
    hl.clock.advance(minutes=1)
    async with hl.services.db.transaction() as session:
        purged = await purge_idle_sessions(session, hl.clock.now(), hl.services.settings)
    assert purged == 1
    assert [s.stage for s in await hl.sessions_of(staff_id)] == ["totp"]
    # the same as a scheduler job
    job = idle_session_purge(hl.services.db, hl.services.settings)
    await job(hl.clock.advance(minutes=IDLE_MINUTES))
    assert await hl.sessions_of(staff_id) == []


async def test_disabling_an_account_ends_its_sessions(hl: Helpline) -> None:
    client = await logged_in(hl, "kate")
    staff_id = (await client.get("/api/staff/me")).json()["id"]
    async with hl.services.db.transaction() as session:
        row = await session.get(Staff, staff_id)
        assert row is not None
        row.disabled = True
    assert (await client.get("/test/agent")).status_code == 401
    assert await hl.sessions_of(staff_id) == []


async def test_state_changes_need_the_csrf_token(hl: Helpline) -> None:
    client = await logged_in(hl, "liam")
    token = (await csrf(client))["X-CSRF-Token"]
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": token[:-1] + "x"}):
        for path in ("/api/staff/logout", "/test/agent"):
            response = await client.post(path, headers=headers)
            assert response.status_code == 403, (path, headers)
            assert response.json()["error"]["code"] == "csrf"
    assert (await client.get("/api/staff/me")).status_code == 200  # still logged in
    # a cross-site request with the right token (a leaked one) is still refused
    cross = await client.post(
        "/test/agent", headers={"X-CSRF-Token": token, "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    ours = await client.post("/test/agent", headers={"X-CSRF-Token": token, "Origin": BASE})
    assert ours.status_code == 200
    assert (
        await client.post("/api/staff/logout", headers={"X-CSRF-Token": token})
    ).status_code == 204

    # the partial login's POSTs too
    await login(client, "liam")
    no_token = await client.post("/api/staff/login/totp", json={"code": "123456"})
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf"


async def test_login_from_another_origin_is_refused(hl: Helpline) -> None:
    await hl.add_staff("mia")
    client = hl.client()
    for origin in ("https://evil.example", "http://127.0.0.1:8001", "null"):
        response = await client.post(
            "/api/staff/login",
            json={"username": "mia", "password": PASSWORD},
            headers={"Origin": origin},
        )
        assert response.status_code == 403, origin
        assert response.json()["error"]["code"] == "cross_origin"
        assert "set-cookie" not in response.headers
    same = await client.post(
        "/api/staff/login",
        json={"username": "mia", "password": PASSWORD},
        headers={"Origin": BASE},
    )
    assert same.status_code == 200


def _cookie_attributes(header: str) -> tuple[str, set[str]]:
    name = header.split("=", 1)[0]
    attributes = {part.strip().lower() for part in header.split(";")[1:]}
    return name, attributes


async def test_session_cookie_on_plain_http(hl: Helpline) -> None:
    await hl.add_staff("noah")
    response = await login(hl.client(), "noah")
    name, attributes = _cookie_attributes(response.headers["set-cookie"])
    assert name == "helpline_staff"
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes
    assert not any(a.startswith(("max-age", "expires", "domain")) for a in attributes)


async def test_session_cookie_on_https(
    settings_for: Any, database_url: str, clock: FrozenClock
) -> None:
    settings = settings_for(database_url, base_url="https://help.example")
    async with running(settings, clock, base_url="https://help.example") as hl:
        await hl.add_staff("olga")
        client = hl.client()
        response = await login(client, "olga")
        name, attributes = _cookie_attributes(response.headers["set-cookie"])
        assert name == "__Host-helpline_staff"
        assert {"httponly", "samesite=strict", "path=/", "secure"} <= attributes
        assert not any(a.startswith("domain") for a in attributes)
        # the whole login works with it
        secret: str = (await client.get("/api/staff/totp/enrolment")).json()["secret"]
        enrolled = await client.post(
            "/api/staff/totp/enrol", json={"code": hl.code(secret)}, headers=await csrf(client)
        )
        assert enrolled.status_code == 200
        assert "secure" in _cookie_attributes(enrolled.headers["set-cookie"])[1]
        # the plain name is not accepted in its place
        token = client.cookies["__Host-helpline_staff"]
        other = hl.client()
        other.cookies.set("helpline_staff", token)
        assert (await other.get("/test/agent")).status_code == 401
        logout = await client.post("/api/staff/logout", headers=await csrf(client))
        name, attributes = _cookie_attributes(logout.headers["set-cookie"])
        assert name == "__Host-helpline_staff" and "secure" in attributes
        assert "max-age=0" in attributes


async def test_roles_are_checked(hl: Helpline) -> None:
    agent = await logged_in(hl, "pia", Role.agent)
    supervisor = await logged_in(hl, "quinn", Role.supervisor)
    admin = await logged_in(hl, "rosa", Role.admin)
    refused = await agent.get("/test/admin")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (await supervisor.get("/test/admin")).status_code == 403
    assert (await admin.get("/test/admin")).json()["role"] == "admin"
    for client in (agent, supervisor, admin):
        assert (await client.get("/test/agent")).status_code == 200
    assert (await hl.client().get("/test/agent")).status_code == 401  # anonymous


async def test_totp_secret_is_stored_encrypted(hl: Helpline) -> None:
    staff_id = await hl.add_staff("sam")
    client = hl.client()
    secret = await enrol(hl, client, "sam")
    async with hl.services.db.engine.connect() as connection:
        raw = (
            await connection.execute(
                text("SELECT totp_secret FROM staff WHERE id = :id"), {"id": staff_id}
            )
        ).scalar_one()
    raw = bytes(raw)
    assert secret.encode() not in raw and secret.lower().encode() not in raw
    assert base64.b32decode(secret) not in raw
    # and it is the secret, under the staff member's own key and bound to the row
    async with hl.services.db.transaction() as session:
        cipher = await hl.services.keyring.cipher(session, totp_scope(staff_id), create=False)
        opened = cipher.decrypt_text(raw, table="staff", row_id=staff_id, field="totp_secret")
    assert opened == secret


async def test_qr_code_is_svg(hl: Helpline) -> None:
    await hl.add_staff("tess")
    client = hl.client()
    assert (await client.get("/api/staff/totp/qr.svg")).status_code == 401
    await login(client, "tess")
    response = await client.get("/api/staff/totp/qr.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    body = response.text
    assert body.startswith("<?xml") and "<svg" in body and "</svg>" in body
    assert "<script" not in body.lower() and "href" not in body.lower()
    assert response.headers["x-content-type-options"] == "nosniff"
    # the QR code and the manual key are the same enrolment
    secret = (await client.get("/api/staff/totp/enrolment")).json()["secret"]
    assert (await client.get("/api/staff/totp/qr.svg")).text == body
    assert secret not in body  # a drawing, not the key in text


async def test_websocket_needs_our_origin(hl: Helpline) -> None:
    client = await logged_in(hl, "uma")
    token = client.cookies["helpline_staff"]

    def connection(origin: str | None) -> HTTPConnection:
        headers = [(b"cookie", f"helpline_staff={token}".encode())]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        scope = {
            "type": "websocket",
            "path": "/ws/console",
            "headers": headers,
            "state": {"services": hl.services},
        }
        return HTTPConnection(scope)

    principal = await staff_authenticator(connection(BASE))
    assert principal is not None and principal.kind == "staff" and principal.role == "agent"
    assert await staff_authenticator(connection("https://evil.example")) is None
    assert await staff_authenticator(connection(None)) is None
    assert token_hash(token) in {s.token_hash for s in await hl.sessions_of(principal.id or "")}


async def test_logins_are_rate_limited_per_user_name(hl: Helpline) -> None:
    await hl.add_staff("vera")
    client = hl.client()
    answers = [(await login(client, "vera", "wrong password here")).status_code for _ in range(11)]
    assert answers[-1] == 429
    assert set(answers[:-1]) <= {401, 423}
    # another account is not affected by this one's limit
    await hl.add_staff("walt")
    assert (await login(client, "walt")).status_code == 200


async def test_each_enrolment_attempt_gets_a_new_secret(hl: Helpline) -> None:
    await hl.add_staff("xena")
    client = hl.client()
    await login(client, "xena")
    abandoned = (await client.get("/api/staff/totp/enrolment")).json()["secret"]
    await login(client, "xena")  # gave up, started again
    secret = (await client.get("/api/staff/totp/enrolment")).json()["secret"]
    assert secret != abandoned
    stale = await client.post(
        "/api/staff/totp/enrol", json={"code": hl.code(abandoned)}, headers=await csrf(client)
    )
    assert stale.status_code == 401
    enrolled = await client.post(
        "/api/staff/totp/enrol", json={"code": hl.code(secret)}, headers=await csrf(client)
    )
    assert enrolled.status_code == 200


async def test_the_same_code_sent_twice_at_once_works_once(hl: Helpline) -> None:
    await hl.add_staff("yves")
    first = hl.client()
    secret = await enrol(hl, first, "yves")
    await first.post("/api/staff/logout", headers=await csrf(first))
    hl.clock.advance(seconds=30)
    second = hl.client()
    for client in (first, second):
        assert (await login(client, "yves")).json() == {"stage": "totp"}
    code = hl.code(secret)
    headers = [await csrf(first), await csrf(second)]
    answers = await asyncio.gather(
        *(
            client.post("/api/staff/login/totp", json={"code": code}, headers=h)
            for client, h in zip((first, second), headers, strict=True)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 401]
