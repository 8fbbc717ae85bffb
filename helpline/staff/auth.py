"""Staff login: password, TOTP second factor, cookie sessions, CSRF, and the access rules.

A login moves through stages (`LoginStage`): the right password opens a session in stage `totp`
(or `enrol` for an account without TOTP yet); a valid code moves it to `done` under a new token.
Only `done` sessions pass `staff(role)`; the partial-login endpoints use `staff_login(stage)`.

Failed passwords and codes are counted per account; after `staff_max_failed_logins` in a row the
account is locked. The functions here flush the count and then raise `WrongCredentials`,
`WrongCode` or `Locked` (together `COUNTED`): the caller must answer with that error and let the
transaction commit, or the count is rolled back with the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import CursorResult, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import HTTPConnection

from helpline.core.audit import record
from helpline.core.clock import Clock, as_utc
from helpline.core.config import Settings
from helpline.core.crypto import Keyring
from helpline.core.db import Database
from helpline.core.errors import Conflict, Forbidden, HelplineError, Unauthorized
from helpline.core.http import Authenticated, Principal, services
from helpline.core.ids import new_token
from helpline.core.scheduler import JobFunction
from helpline.staff.accounts import find_staff, rehash_if_needed, verify_password
from helpline.staff.models import LoginStage, Role, Staff, StaffSession

STAFF = "staff"  # the access kind of a complete login
STAFF_LOGIN = "staff-login"  # the access kind of a login at any stage (partial-login endpoints)
COOKIE_HTTPS = "__Host-helpline_staff"  # the prefix makes browsers insist on Secure, Path=/
COOKIE_PLAIN = "helpline_staff"  # plain-http demo on localhost: __Host- would need Secure
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SEEN_EVERY = timedelta(minutes=1)  # how stale last_seen_at may get, to spare a write per request
TOTP_ISSUER = "Helpline"
TOTP_WINDOW = 1  # steps accepted either side of the current one (clock drift of the phone)
TOTP_CODE = re.compile(r"^[0-9]{6}$")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# ---------------------------------------------------------------- refusals


class WrongCredentials(Unauthorized):
    code = "wrong_credentials"


class WrongCode(Unauthorized):
    code = "wrong_code"


class Locked(HelplineError):
    status = 423
    code = "locked"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed attempts: this account is locked for a while",
            retry_after=retry_after,
        )
        self.retry_after = retry_after


class CsrfRefused(Forbidden):
    code = "csrf"


class CrossOrigin(Forbidden):
    code = "cross_origin"


class WrongStage(Forbidden):
    code = "wrong_stage"


class AlreadyEnrolled(Conflict):
    code = "already_enrolled"


COUNTED: tuple[type[HelplineError], ...] = (WrongCredentials, WrongCode, Locked)


# ---------------------------------------------------------------- cookies and origins


def cookie_name(settings: Settings) -> str:
    return COOKIE_HTTPS if settings.is_https else COOKIE_PLAIN


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL or Origin header, lower case, default port left out;
    None for anything else (such as the Origin `null`)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if not scheme or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def is_same_origin(settings: Settings, origin: str) -> bool:
    theirs = origin_of(origin)
    return theirs is not None and theirs == origin_of(settings.base_url)


def check_origin(connection: HTTPConnection, settings: Settings) -> None:
    """Refuse a request that a browser says came from another site. Browsers send `Origin` on
    every cross-origin POST; a request without one (curl, the test client) is let through."""
    origin = connection.headers.get("origin")
    if origin is not None and not is_same_origin(settings, origin):
        raise CrossOrigin("this request came from another site")


# ---------------------------------------------------------------- sessions


async def open_session(
    session: AsyncSession, clock: Clock, staff: Staff, stage: LoginStage
) -> tuple[str, StaffSession]:
    """A new session; returns the token for the cookie (only its hash is stored) and the row."""
    token = new_token()
    now = clock.now()
    row = StaffSession(
        token_hash=token_hash(token),
        staff_id=staff.id,
        stage=stage.value,
        csrf_token=new_token(),
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    await session.flush()
    return token, row


async def session_of_token(session: AsyncSession, token: str) -> StaffSession | None:
    return await session.get(StaffSession, token_hash(token), populate_existing=True)


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(
        delete(StaffSession).where(col(StaffSession.token_hash) == token_hash(token))
    )


async def end_sessions(session: AsyncSession, staff_id: str, *, partial_only: bool = False) -> int:
    """End every session of a staff member (e.g. when the account is disabled), or only the
    logins still waiting for their second factor."""
    query = delete(StaffSession).where(col(StaffSession.staff_id) == staff_id)
    if partial_only:
        query = query.where(col(StaffSession.stage) != LoginStage.done.value)
    result = await session.execute(query)
    return int(cast(CursorResult[Any], result).rowcount)


def is_idle(row: StaffSession, now: datetime, settings: Settings) -> bool:
    return now - as_utc(row.last_seen_at) >= timedelta(minutes=settings.staff_idle_minutes)


async def purge_idle_sessions(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Delete sessions unused for the idle time (those nobody comes back to are otherwise only
    deleted when their cookie is presented again). Meant for a periodic job."""
    cutoff = now - timedelta(minutes=settings.staff_idle_minutes)
    result = await session.execute(
        delete(StaffSession).where(col(StaffSession.last_seen_at) <= cutoff)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def idle_session_purge(db: Database, settings: Settings) -> JobFunction:
    """The periodic job that runs `purge_idle_sessions` (for `Scheduler.register`)."""

    async def purge(now: datetime) -> None:
        async with db.transaction() as session:
            await purge_idle_sessions(session, now, settings)

    return purge


# ---------------------------------------------------------------- failures and lockout


def _refuse_if_locked(staff: Staff, now: datetime) -> None:
    if staff.locked_until is not None and as_utc(staff.locked_until) > now:
        raise Locked(math.ceil((as_utc(staff.locked_until) - now).total_seconds()))


async def _count_failure(
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    staff: Staff,
    *,
    reason: str,
    refusal: HelplineError,
) -> HelplineError:
    """Count a wrong password or code; lock the account after too many. Returns the error to
    answer with (`refusal`, or `Locked` if this failure locked the account)."""
    now = clock.now()
    staff.failed_logins += 1
    target = f"staff:{staff.id}"
    await record(
        session,
        clock,
        actor="anonymous",
        action="staff.login_failed",
        target=target,
        details={"reason": reason, "failures": staff.failed_logins},
    )
    if staff.failed_logins < settings.staff_max_failed_logins:
        await session.flush()
        return refusal
    staff.locked_until = now + timedelta(minutes=settings.staff_lockout_minutes)
    staff.failed_logins = 0  # a fresh count once the lock expires
    # whoever was guessing codes must start again from the password once the lock is over
    await end_sessions(session, staff.id, partial_only=True)
    await record(
        session,
        clock,
        actor="system",
        action="staff.locked",
        target=target,
        details={"minutes": settings.staff_lockout_minutes},
    )
    await session.flush()
    return Locked(settings.staff_lockout_minutes * 60)


# ---------------------------------------------------------------- the password step


@dataclass(frozen=True)
class LoginStarted:
    staff: Staff
    token: str
    stage: LoginStage


async def password_login(
    session: AsyncSession, clock: Clock, settings: Settings, username: str, password: str
) -> LoginStarted:
    """Check user name and password and open a session in stage `totp` (or `enrol`). Unknown,
    disabled and wrong all get `WrongCredentials`, after the same Argon2 work."""
    now = clock.now()
    staff = await find_staff(session, username, for_update=True)
    if staff is not None and not staff.disabled:
        _refuse_if_locked(staff, now)
    # Argon2 takes tens of milliseconds of CPU: off the event loop
    matches = await asyncio.to_thread(verify_password, staff, password)
    if staff is None or staff.disabled:
        await record(
            session,
            clock,
            actor="anonymous",
            action="staff.login_failed",
            target=f"staff:{staff.id}" if staff else None,
            details={"reason": "unknown" if staff is None else "disabled"},
        )
        raise WrongCredentials("wrong user name or password")
    if not matches:
        raise await _count_failure(
            session,
            clock,
            settings,
            staff,
            reason="password",
            refusal=WrongCredentials("wrong user name or password"),
        )
    # The failure count is reset only by a complete login: the password alone must not buy an
    # attacker a fresh series of code guesses.
    rehash_if_needed(staff, password)
    stage = LoginStage.totp if staff.totp_enabled_at is not None else LoginStage.enrol
    if stage is LoginStage.enrol:
        staff.totp_secret = None  # each enrolment attempt gets a secret of its own
    token, _ = await open_session(session, clock, staff, stage)
    await record(
        session,
        clock,
        actor=f"staff:{staff.id}",
        action="staff.login",
        target=f"staff:{staff.id}",
        details={"stage": stage.value},
    )
    return LoginStarted(staff, token, stage)


# ---------------------------------------------------------------- TOTP


def totp_scope(staff_id: str) -> str:
    return f"staff:{staff_id}"


async def read_totp_secret(session: AsyncSession, keyring: Keyring, staff: Staff) -> str | None:
    if staff.totp_secret is None:
        return None
    cipher = await keyring.cipher(session, totp_scope(staff.id))
    return cipher.decrypt_text(
        staff.totp_secret, table="staff", row_id=staff.id, field="totp_secret"
    )


async def enrolment_secret(session: AsyncSession, keyring: Keyring, staff: Staff) -> str:
    """The TOTP secret of the enrolment in progress; made, and stored encrypted under the staff
    member's own data key, the first time it is asked for."""
    if staff.totp_enabled_at is not None:
        raise AlreadyEnrolled("two-factor login is set up already")
    secret = await read_totp_secret(session, keyring, staff)
    if secret is None:
        secret = pyotp.random_base32()  # 160 bits
        cipher = await keyring.cipher(session, totp_scope(staff.id))
        staff.totp_secret = cipher.encrypt(
            secret, table="staff", row_id=staff.id, field="totp_secret"
        )
        await session.flush()
    return secret


def provisioning_uri(staff: Staff, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=staff.username, issuer_name=TOTP_ISSUER)


def matching_step(secret: str, code: str, now: datetime, after_step: int) -> int | None:
    """The time step (within `TOTP_WINDOW` of now) whose code this is, if it is later than
    `after_step`: a code that was used once, or any older one, never works again."""
    code = re.sub(r"\s", "", code)
    if not TOTP_CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if step > after_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def _staff_for_update(session: AsyncSession, staff_id: str) -> Staff:
    # the row lock makes two requests with the same code take turns: only the first gets in
    staff = await session.get(Staff, staff_id, with_for_update=True, populate_existing=True)
    if staff is None or staff.disabled:
        raise Unauthorized("authentication required")
    return staff


async def _check_code(
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    keyring: Keyring,
    staff: Staff,
    code: str,
) -> None:
    now = clock.now()
    _refuse_if_locked(staff, now)
    secret = await read_totp_secret(session, keyring, staff)
    step = matching_step(secret, code, now, staff.totp_last_step) if secret else None
    if step is None:
        raise await _count_failure(
            session,
            clock,
            settings,
            staff,
            reason="code",
            refusal=WrongCode("wrong or already used code"),
        )
    staff.totp_last_step = step


async def _finish(
    session: AsyncSession, clock: Clock, staff: Staff, login: StaffSession
) -> tuple[str, StaffSession]:
    # the complete login gets a new token (and CSRF token): nothing known about the partial
    # session carries over to the one that can open cases
    staff.failed_logins = 0
    staff.locked_until = None
    staff.last_login_at = clock.now()
    await session.delete(login)
    token, row = await open_session(session, clock, staff, LoginStage.done)
    await record(
        session,
        clock,
        actor=f"staff:{staff.id}",
        action="staff.login",
        target=f"staff:{staff.id}",
        details={"stage": LoginStage.done.value},
    )
    return token, row


async def complete_login(
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    keyring: Keyring,
    login: StaffSession,
    code: str,
) -> tuple[str, StaffSession]:
    """Stage `totp` to `done` with a valid, unused code. Returns the new session's token."""
    if login.stage != LoginStage.totp.value:
        raise WrongStage("this login is not waiting for a code")
    staff = await _staff_for_update(session, login.staff_id)
    await _check_code(session, clock, settings, keyring, staff, code)
    return await _finish(session, clock, staff, login)


async def enrol_totp(
    session: AsyncSession,
    clock: Clock,
    settings: Settings,
    keyring: Keyring,
    login: StaffSession,
    code: str,
) -> tuple[str, StaffSession]:
    """Stage `enrol` to `done`: the first code from the new authenticator turns TOTP on."""
    if login.stage != LoginStage.enrol.value:
        raise WrongStage("this login is not enrolling a second factor")
    staff = await _staff_for_update(session, login.staff_id)
    if staff.totp_enabled_at is not None:
        raise AlreadyEnrolled("two-factor login is set up already")
    if staff.totp_secret is None:
        raise Conflict("ask for the enrolment (secret and QR code) first")
    await _check_code(session, clock, settings, keyring, staff, code)
    staff.totp_enabled_at = clock.now()
    await record(
        session,
        clock,
        actor=f"staff:{staff.id}",
        action="staff.totp_enrolled",
        target=f"staff:{staff.id}",
    )
    return await _finish(session, clock, staff, login)


# ---------------------------------------------------------------- authenticators and rules


@dataclass(frozen=True)
class _Found:
    staff_id: str
    role: str
    stage: str
    csrf_token: str


async def _authenticate(connection: HTTPConnection, stages: Iterable[str]) -> _Found | None:
    svc = services(connection)
    settings = svc.settings
    token = connection.cookies.get(cookie_name(settings))
    if not token:
        return None
    websocket = connection.scope["type"] == "websocket"
    if websocket:
        # a websocket carries no CSRF header, and browsers let any site open one with our
        # cookie (SameSite aside): the origin must be ours
        origin = connection.headers.get("origin")
        if origin is None or not is_same_origin(settings, origin):
            return None
    now = svc.clock.now()
    async with svc.db.transaction() as session:
        row = await session.get(StaffSession, token_hash(token))
        if row is None:
            return None
        if is_idle(row, now, settings):
            await session.delete(row)
            return None
        staff = await session.get(Staff, row.staff_id)
        if staff is None or staff.disabled:
            await session.delete(row)
            return None
        if row.stage not in stages:
            return None
        if now - as_utc(row.last_seen_at) >= SEEN_EVERY:
            row.last_seen_at = now
        found = _Found(staff.id, staff.role, row.stage, row.csrf_token)
    if not websocket and connection.scope.get("method", "GET") not in SAFE_METHODS:
        check_origin(connection, settings)
        sent = connection.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), found.csrf_token.encode()):
            raise CsrfRefused("missing or wrong X-CSRF-Token header")
    connection.state.staff_stage = found.stage
    return found


async def staff_authenticator(connection: HTTPConnection) -> Principal | None:
    """A complete staff login (stage `done`) from the session cookie, or None. Idle sessions
    and sessions of disabled accounts are deleted and refused. HTTP requests with an unsafe
    method must carry the session's CSRF token (else `CsrfRefused`, 403 `csrf`); websockets
    must come from our own origin (else None)."""
    found = await _authenticate(connection, (LoginStage.done.value,))
    if found is None:
        return None
    return Principal(STAFF, id=found.staff_id, role=found.role)


async def staff_login_authenticator(connection: HTTPConnection) -> Principal | None:
    """Like `staff_authenticator`, but for a session at any stage (the stage is checked by the
    `staff_login(...)` rule)."""
    found = await _authenticate(connection, tuple(stage.value for stage in LoginStage))
    if found is None:
        return None
    return Principal(STAFF_LOGIN, id=found.staff_id, role=found.role)


def _includes(role: Role) -> Callable[[Principal], bool]:
    def allow(principal: Principal) -> bool:
        try:
            return Role(principal.role or "").includes(role)
        except ValueError:
            return False

    return allow


def staff(role: Role = Role.agent) -> Authenticated:
    """A complete staff login with `role` or a role that includes it (admin > supervisor >
    agent): 401 without one, 403 for a lesser role."""
    return Authenticated(STAFF, allow=_includes(role), description=f"staff: {role.value}")


class StaffLoginRule(Authenticated):
    """A staff session at one of some login stages; 403 `wrong_stage` at another."""

    def __init__(self, stages: Iterable[LoginStage]) -> None:
        self.stages = frozenset(stage.value for stage in stages)
        super().__init__(
            STAFF_LOGIN, description=f"staff login in stage {'/'.join(sorted(self.stages))}"
        )

    async def authorise(self, connection: HTTPConnection) -> Principal:
        principal = await super().authorise(connection)
        if connection.state.staff_stage not in self.stages:
            raise WrongStage("not possible at this stage of the login")
        return principal


def staff_login(*stages: LoginStage) -> Authenticated:
    """A staff session in one of `stages`; all stages if none are named (who am I, log out)."""
    return StaffLoginRule(stages or tuple(LoginStage))
