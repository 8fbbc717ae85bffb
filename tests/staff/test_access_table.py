"""Who may call each staff endpoint, as a table, and one walk that proves it.

`ACCESS` is the contract of docs/api/console.md (and docs/api/evidence.md, docs/email.md and
docs/api/callback.md for the evidence, e-mail and callback endpoints): the least role that may
call each console endpoint. `LOGIN_FLOW` lists the login
endpoints, which are open to a login in progress rather than to a role. Together they must name
every route of the app under `/api/staff/` and `/ws/console`: a new route without a row fails
`test_the_table_names_every_staff_route`.

The walk runs against the real app under uvicorn, with real logins (password + TOTP), a victim
with a real chat token, a "platform" with an API-key-looking Bearer token (there is no platform
portal yet, so any key must be refused), and nobody at all. Each endpoint must refuse everyone
below its least role — anonymous callers, victims and platforms with 401 (403 is also accepted
for a victim), staff with a lesser role with 403 `forbidden` — and let the least role and every
role above it through (any answer but 401/403; made-up ids give 404, empty bodies 4xx). An
answer of 500 or more is a failure too: bad input must get a clear 4xx.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.routing import BaseRoute, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from helpline.app import create_app
from helpline.cases import receipts
from helpline.core.clock import SystemClock
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.core.ids import new_id, new_token
from helpline.staff import accounts
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from tests.intake.chatkit import PASSWORD, StaffMember, Victim
from tests.live import LiveServer, free_port, live_server

AGENT, SUPERVISOR, ADMIN = Role.agent, Role.supervisor, Role.admin
WS = "WS"  # the "method" of a websocket route in the tables

# (method, path) -> the least role that may call it; `{id}` stands for any path parameter
ACCESS: dict[tuple[str, str], Role] = {
    # triage and the queue (docs/api/console.md)
    ("GET", "/api/staff/triage/vocabulary"): AGENT,
    ("GET", "/api/staff/cases"): AGENT,
    ("GET", "/api/staff/cases/{id}"): AGENT,
    ("POST", "/api/staff/cases/{id}/claim"): AGENT,
    ("POST", "/api/staff/cases/{id}/release"): AGENT,
    ("POST", "/api/staff/cases/{id}/transfer"): AGENT,
    ("POST", "/api/staff/cases/{id}/handover/seen"): AGENT,
    ("POST", "/api/staff/cases/{id}/assign"): SUPERVISOR,
    ("POST", "/api/staff/cases/{id}/triage"): AGENT,
    ("POST", "/api/staff/cases/{id}/priority"): AGENT,
    ("POST", "/api/staff/cases/{id}/status"): AGENT,
    ("POST", "/api/staff/cases/{id}/close"): AGENT,
    # working a case
    ("GET", "/api/staff/cases/{id}/messages"): AGENT,
    ("GET", "/api/staff/cases/{id}/notes"): AGENT,
    ("POST", "/api/staff/cases/{id}/notes"): AGENT,
    ("GET", "/api/staff/cases/{id}/timeline"): AGENT,
    ("GET", "/api/staff/cases/{id}/canned"): AGENT,
    ("GET", "/api/staff/canned"): AGENT,
    ("POST", "/api/staff/canned"): SUPERVISOR,
    ("PUT", "/api/staff/canned/{id}"): SUPERVISOR,
    ("DELETE", "/api/staff/canned/{id}"): SUPERVISOR,
    ("GET", "/api/staff/colleagues"): AGENT,
    ("GET", "/api/staff/overview"): SUPERVISOR,
    (WS, "/ws/console"): AGENT,
    # evidence (docs/api/evidence.md)
    ("GET", "/api/staff/cases/{id}/evidence"): AGENT,
    ("POST", "/api/staff/cases/{id}/evidence/files"): AGENT,
    ("POST", "/api/staff/cases/{id}/evidence/urls"): AGENT,
    ("POST", "/api/staff/cases/{id}/evidence/hashes"): AGENT,
    ("POST", "/api/staff/cases/{id}/possible-minor"): AGENT,
    ("GET", "/api/staff/cases/{id}/evidence/export"): SUPERVISOR,
    ("GET", "/api/staff/evidence/{id}/preview"): AGENT,
    # e-mail (docs/email.md)
    ("GET", "/api/staff/cases/{id}/email"): AGENT,
    ("POST", "/api/staff/cases/{id}/email/reply"): AGENT,
    ("GET", "/api/staff/email/quarantine"): SUPERVISOR,
    ("GET", "/api/staff/email/quarantine/{id}/raw"): SUPERVISOR,
    ("POST", "/api/staff/email/quarantine/{id}/release"): SUPERVISOR,
    ("DELETE", "/api/staff/email/quarantine/{id}"): SUPERVISOR,
    # callback requests (docs/api/callback.md)
    ("GET", "/api/staff/callbacks"): AGENT,
    ("GET", "/api/staff/cases/{id}/callback"): AGENT,
    ("POST", "/api/staff/cases/{id}/callback/attempts"): AGENT,
    ("POST", "/api/staff/cases/{id}/callback/passphrase"): AGENT,
    # takedown notices (docs/api/takedown.md, docs/api/platform.md, docs/api/takedown-figures.md)
    ("GET", "/api/staff/takedown/vocabulary"): AGENT,
    ("GET", "/api/staff/takedown/approval-rules"): AGENT,
    ("PUT", "/api/staff/takedown/approval-rules"): SUPERVISOR,
    ("GET", "/api/staff/platforms"): AGENT,
    ("POST", "/api/staff/platforms"): ADMIN,
    ("GET", "/api/staff/platforms/{id}"): AGENT,
    ("PUT", "/api/staff/platforms/{id}"): ADMIN,
    ("DELETE", "/api/staff/platforms/{id}"): ADMIN,
    ("POST", "/api/staff/platforms/{id}/api-key"): ADMIN,
    ("DELETE", "/api/staff/platforms/{id}/api-key"): ADMIN,
    ("GET", "/api/staff/cases/{id}/notices"): AGENT,
    ("POST", "/api/staff/cases/{id}/notices"): AGENT,
    ("GET", "/api/staff/notices"): AGENT,
    ("GET", "/api/staff/notices/{id}"): AGENT,
    ("GET", "/api/staff/notices/{id}/preview"): AGENT,
    ("POST", "/api/staff/notices/{id}/send"): AGENT,
    ("POST", "/api/staff/notices/{id}/approve"): AGENT,
    ("POST", "/api/staff/notices/{id}/reject"): AGENT,
    ("POST", "/api/staff/notices/{id}/withdraw"): AGENT,
    ("POST", "/api/staff/notices/{id}/submitted"): AGENT,
    ("POST", "/api/staff/notices/{id}/receipt"): AGENT,
    ("POST", "/api/staff/notices/{id}/recheck"): AGENT,
    ("POST", "/api/staff/notices/{id}/portal-link"): AGENT,
    ("POST", "/api/staff/notices/{id}/escalations"): AGENT,
    ("POST", "/api/staff/notices/{id}/urls/{id}/outcome"): AGENT,
    ("POST", "/api/staff/notices/{id}/escalations/{id}/approve"): AGENT,
    ("POST", "/api/staff/notices/{id}/escalations/{id}/dismiss"): AGENT,
    ("GET", "/api/staff/notices/{id}/portal-links"): AGENT,
    ("POST", "/api/staff/notices/{id}/portal-links/{id}/revoke"): AGENT,
    ("GET", "/api/staff/notices/{id}/replies"): AGENT,
    ("POST", "/api/staff/notices/{id}/replies/{id}/confirm"): AGENT,
    ("GET", "/api/staff/takedown/figures"): SUPERVISOR,
    ("GET", "/api/staff/takedown/charts/{id}.svg"): SUPERVISOR,
    ("GET", "/api/staff/takedown/report/{id}"): SUPERVISOR,
    ("GET", "/api/staff/takedown/report/{id}.csv"): SUPERVISOR,
    ("GET", "/api/staff/takedown/report/{id}.html"): SUPERVISOR,
    # warm handover (docs/api/handover.md)
    ("GET", "/api/staff/partners"): AGENT,
    ("POST", "/api/staff/partners"): ADMIN,
    ("PUT", "/api/staff/partners/{id}"): ADMIN,
    ("POST", "/api/staff/partners/{id}/key"): ADMIN,
    ("POST", "/api/staff/partners/{id}/key/confirm"): ADMIN,
    ("GET", "/api/staff/cases/{id}/handovers"): AGENT,
    ("POST", "/api/staff/cases/{id}/handovers"): AGENT,
    ("GET", "/api/staff/handovers/figures"): SUPERVISOR,
    ("GET", "/api/staff/handovers/awaiting-confirmation"): AGENT,
    ("GET", "/api/staff/handovers/{id}"): AGENT,
    ("POST", "/api/staff/handovers/{id}/consent"): AGENT,
    ("POST", "/api/staff/handovers/{id}/consent/confirm"): AGENT,
    ("POST", "/api/staff/handovers/{id}/approve"): SUPERVISOR,
    ("POST", "/api/staff/handovers/{id}/cancel"): AGENT,
    ("POST", "/api/staff/handovers/{id}/reissue"): SUPERVISOR,
    # retention (docs/api/retention.md)
    ("GET", "/api/staff/retention/upcoming"): AGENT,
    ("GET", "/api/staff/cases/{id}/retention"): AGENT,
    ("POST", "/api/staff/cases/{id}/legal-hold"): SUPERVISOR,
    ("DELETE", "/api/staff/cases/{id}/legal-hold"): SUPERVISOR,
    ("GET", "/api/staff/retention/runs"): ADMIN,
    ("POST", "/api/staff/retention/purge"): ADMIN,
    # anonymous statistics (docs/statistics.md)
    ("GET", "/api/staff/stats"): SUPERVISOR,
    ("GET", "/api/staff/stats.csv"): SUPERVISOR,
    ("GET", "/api/staff/stats.json"): SUPERVISOR,
}

# The login flow (helpline/staff/routes.py): the stages of a staff session that may call each
# endpoint; None is public (the login itself). A session at another stage gets 403.
ANY_STAGE = frozenset({"totp", "enrol", "done"})
LOGIN_FLOW: dict[tuple[str, str], frozenset[str] | None] = {
    ("POST", "/api/staff/login"): None,
    ("POST", "/api/staff/login/totp"): frozenset({"totp"}),
    ("GET", "/api/staff/totp/enrolment"): frozenset({"enrol"}),
    ("GET", "/api/staff/totp/qr.svg"): frozenset({"enrol"}),
    ("POST", "/api/staff/totp/enrol"): frozenset({"enrol"}),
    ("GET", "/api/staff/me"): ANY_STAGE,
    ("POST", "/api/staff/logout"): ANY_STAGE,
}

PARAMETER = re.compile(r"\{[^}]*\}")


def template(path: str) -> str:
    """A route path with every parameter written `{id}`, as in the tables."""
    return PARAMETER.sub("{id}", path)


def is_staff_path(path: str) -> bool:
    return path == "/api/staff" or path.startswith("/api/staff/") or path == "/ws/console"


def staff_routes_of(routes: list[BaseRoute]) -> dict[tuple[str, str], str]:
    """(method, template) -> the route's real path, for every staff route of the app."""
    found: dict[tuple[str, str], str] = {}
    for item in routes:
        path = getattr(item, "path", "")
        if not is_staff_path(path):
            continue
        if isinstance(item, WebSocketRoute):
            found[(WS, template(path))] = path
        elif isinstance(item, Route):
            for method in sorted(item.methods or ()):
                if method != "HEAD":  # Starlette adds HEAD to every GET
                    found[(method, template(path))] = path
        else:  # a mount does not go through route() and its access rule
            raise AssertionError(f"{path}: a staff path must be a route, not {item!r}")
    return found


def made_up(path: str) -> str:
    """The path with a fresh id in each parameter: no such case, item or canned response."""
    return PARAMETER.sub(lambda m: "999999999" if ":int" in m.group() else new_id(), path)


# ---------------------------------------------------------------- the table is complete


def test_the_table_names_every_staff_route(settings_for: Any, sqlite_url: str) -> None:
    app = create_app(settings_for(sqlite_url))
    routes = set(staff_routes_of(app.routes))
    table = set(ACCESS) | set(LOGIN_FLOW)
    assert not set(ACCESS) & set(LOGIN_FLOW)
    missing = sorted(routes - table)
    assert not missing, f"staff routes without a row in the access table: {missing}"
    gone = sorted(table - routes)
    assert not gone, f"rows of the access table without a route: {gone}"


# ---------------------------------------------------------------- callers


@dataclass
class Caller:
    """Someone calling the API: their headers, and for staff the login stage and role."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    cookie: str | None = None  # the value of the staff session cookie they send
    csrf: str = ""
    stage: str | None = None  # the login stage of a real staff session
    role: Role | None = None  # the role of a complete login
    refusals: tuple[int, ...] = (401,)  # what they get where they have no business

    def request_headers(self, base_url: str, method: str) -> dict[str, str]:
        headers = dict(self.headers)
        if self.cookie is not None:
            headers["Cookie"] = f"helpline_staff={self.cookie}"
            if method not in ("GET", "HEAD"):
                headers["X-CSRF-Token"] = self.csrf
                headers["Origin"] = base_url
        return headers

    def socket_headers(self, base_url: str) -> dict[str, str]:
        headers = {**self.headers, "Origin": base_url}
        if self.cookie is not None:
            headers["Cookie"] = f"helpline_staff={self.cookie}"
        return headers


async def staff_caller(member: StaffMember, role: Role) -> Caller:
    me = (await member.http.get("/api/staff/me")).json()
    assert me["stage"] == "done" and me["role"] == role.value, me
    return Caller(
        role.value,
        cookie=member.http.cookies["helpline_staff"],
        csrf=me["csrf_token"],
        stage="done",
        role=role,
    )


async def partial_login(server: LiveServer, username: str, stage: str) -> Caller:
    """A login that got only through the password step: waiting to enrol or for a code."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post(
            "/api/staff/login",
            json={"username": username, "password": PASSWORD},
            headers={"Origin": server.url},
        )
        assert answer.status_code == 200 and answer.json() == {"stage": stage}, answer.text
        me = (await http.get("/api/staff/me")).json()
        assert me["stage"] == stage
        return Caller(
            f"login in stage {stage}",
            cookie=http.cookies["helpline_staff"],
            csrf=me["csrf_token"],
            stage=stage,
        )


@dataclass
class World:
    server: LiveServer
    outsiders: list[Caller]  # no complete staff login: refused by every console endpoint
    staff: list[Caller]  # complete logins: agent, supervisor, admin


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Argon2id code at a tiny cost: the walk is about access, not hashing (the
    defaults take ~0.25 s a hash here, and the world needs ten)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "password_hasher", cheap)
    monkeypatch.setattr(receipts, "passphrase_hasher", cheap)


@pytest.fixture
async def world(settings_for: Any, sqlite_url: str) -> AsyncIterator[World]:
    port = free_port()
    settings: Settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    db = Database(sqlite_url)
    members: list[StaffMember] = []
    try:
        async with live_server(settings, port=port) as server:
            victim = await Victim(server.url).start()
            bearer = {"Authorization": f"Bearer {victim.token}"}
            async with httpx.AsyncClient(base_url=server.url) as http:
                # a valid victim session: the victim's own endpoints take the token
                assert (await http.get("/api/chat/evidence", headers=bearer)).status_code == 200
            staff: list[Caller] = []
            for role in Role:
                member = await StaffMember.create(db, server.url, f"table-{role.value}", role)
                members.append(member)
                staff.append(await staff_caller(member, role))
            async with db.transaction() as session:  # an account that has no TOTP yet
                await create_staff(
                    session, SystemClock(), username="table-new", password=PASSWORD, role=ADMIN
                )
            outsiders = [
                Caller("anonymous"),
                Caller("victim", headers=bearer, refusals=(401, 403)),
                Caller("victim token as staff cookie", cookie=victim.token, refusals=(401, 403)),
                Caller("platform", headers={"Authorization": f"Bearer hlk_{new_token()}"}),
                Caller("made-up staff cookie", cookie=new_token(), csrf=new_token()),
                # an admin's password without the second factor, and an admin not enrolled yet
                await partial_login(server, "table-admin", "totp"),
                await partial_login(server, "table-new", "enrol"),
            ]
            yield World(server, outsiders, staff)
    finally:
        for member in members:
            await member.close()
        await db.dispose()


# ---------------------------------------------------------------- the walk


async def call(
    http: httpx.AsyncClient, base_url: str, caller: Caller, method: str, path: str
) -> tuple[int, str]:
    """(status, error code) of one request; state-changing ones carry an empty JSON body."""
    headers = caller.request_headers(base_url, method)
    content = None
    if method in ("POST", "PUT", "PATCH"):
        headers["Content-Type"] = "application/json"
        content = b"{}"
    answer = await http.request(method, path, headers=headers, content=content)
    code = ""
    if answer.status_code >= 400 and answer.headers.get("content-type") == "application/json":
        code = answer.json().get("error", {}).get("code", "")
    return answer.status_code, code


async def socket_status(server: LiveServer, path: str, caller: Caller) -> int:
    """101 if the websocket handshake is accepted, else the HTTP status of the refusal."""
    try:
        async with connect(
            f"{server.ws_url}{path}",
            additional_headers=caller.socket_headers(server.url),
            open_timeout=10,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def passed(status: int) -> bool:
    """Past access control: any answer but a refusal (and no crash)."""
    return status not in (401, 403) and status < 500


async def test_every_staff_endpoint_admits_only_whom_the_table_says(world: World) -> None:
    server = world.server
    routes = staff_routes_of(server.server.config.app.routes)  # the app being served
    everyone = world.outsiders + world.staff
    problems: list[str] = []

    def check(ok: bool, caller: Caller, method: str, path: str, got: object, want: str) -> None:
        if not ok:
            problems.append(f"{method} {path} as {caller.name}: got {got}, expected {want}")

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for (method, path_template), least in sorted(ACCESS.items()):
            path = routes.get((method, path_template))
            if path is None:
                continue  # test_the_table_names_every_staff_route names it
            concrete = made_up(path)
            for caller in everyone:
                allowed = caller.role is not None and caller.role.includes(least)
                if method == WS:
                    status = await socket_status(server, concrete, caller)
                    want = "accepted (101)" if allowed else "refused at the handshake"
                    check((status == 101) == allowed, caller, method, path, status, want)
                    continue
                status, code = await call(http, server.url, caller, method, concrete)
                if allowed:
                    want = f"past access control for {least.value} (not 401/403/5xx)"
                    check(passed(status), caller, method, path, status, want)
                elif caller.role is not None:
                    # refused for the role, not for a missing CSRF token or origin
                    want = "403 forbidden (a lesser role)"
                    got = f"{status} {code}"
                    check((status, code) == (403, "forbidden"), caller, method, path, got, want)
                else:
                    want = " or ".join(map(str, caller.refusals))
                    check(status in caller.refusals, caller, method, path, status, want)

        # the login flow; logging out comes last, since it ends the session that calls it
        flow = sorted(LOGIN_FLOW.items(), key=lambda row: row[0][1] == "/api/staff/logout")
        for (method, path), stages in flow:
            if (method, path) not in routes:
                continue
            for caller in everyone:
                status, code = await call(http, server.url, caller, method, path)
                if stages is None:  # the public login: an empty body is invalid, nothing more
                    check(status == 422, caller, method, path, status, "422 (no credentials)")
                elif caller.stage in stages:
                    want = "past access control (a session in this stage)"
                    check(passed(status), caller, method, path, status, want)
                elif caller.stage is not None:
                    got = f"{status} {code}"
                    want = "403 wrong_stage"
                    check((status, code) == (403, "wrong_stage"), caller, method, path, got, want)
                else:
                    want = " or ".join(map(str, caller.refusals))
                    check(status in caller.refusals, caller, method, path, status, want)

        # logged out, a session opens nothing
        for caller in everyone:
            if caller.stage is not None:
                status, _ = await call(http, server.url, caller, "GET", "/api/staff/me")
                check(status == 401, caller, "GET", "/api/staff/me", status, "401 after logout")

    assert not problems, "the access table is not what the app does:\n" + "\n".join(problems)
