"""Staff login endpoints (`/api/staff/...`): password, TOTP, who am I, log out."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import segno
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.audit import record
from helpline.core.clock import Clock
from helpline.core.config import Settings
from helpline.core.crypto import Keyring
from helpline.core.errors import HelplineError, Unauthorized
from helpline.core.http import (
    PUBLIC,
    Authenticator,
    Schema,
    error_response,
    parse_body,
    route,
    services,
)
from helpline.staff.auth import (
    COUNTED,
    STAFF,
    STAFF_LOGIN,
    Locked,
    check_origin,
    complete_login,
    cookie_name,
    end_session,
    enrol_totp,
    enrolment_secret,
    password_login,
    provisioning_uri,
    session_of_token,
    staff_authenticator,
    staff_login,
    staff_login_authenticator,
)
from helpline.staff.models import LoginStage, Staff, StaffSession

# Rate limits on top of the per-account lockout: all logins together (a password spray over
# many accounts), each user name, and code attempts per account.
LOGIN_LIMIT = "30/minute"
LOGIN_USER_LIMIT = "10/minute"
CODE_LIMIT = "10/minute"

# complete_login and enrol_totp: (session, clock, settings, keyring, login, code) -> (token, row)
CodeStep = Callable[
    [AsyncSession, Clock, Settings, Keyring, StaffSession, str],
    Awaitable[tuple[str, StaffSession]],
]


class Credentials(Schema):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1024)  # Argon2 hashes any length: bound the work


class TotpCode(Schema):
    code: str = Field(max_length=16)


# ---------------------------------------------------------------- helpers


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    # no Max-Age: the browser forgets the cookie when it closes; the server ends idle sessions
    response.set_cookie(
        cookie_name(settings),
        token,
        path="/",
        secure=settings.is_https,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        cookie_name(settings),
        path="/",
        secure=settings.is_https,
        httponly=True,
        samesite="strict",
    )


def refusal(exc: HelplineError) -> Response:
    """Answer with an error instead of raising it, so the request's transaction commits (a
    failed attempt must stay counted)."""
    response = error_response(exc.status, exc.code, exc.message, **exc.details)
    if isinstance(exc, Locked):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def current_login(request: Request) -> StaffSession:
    """This request's session row, in the request's transaction."""
    token = request.cookies.get(cookie_name(services(request).settings), "")
    row = await session_of_token(request.state.session, token) if token else None
    if row is None:  # ended since the access rule looked (a concurrent logout)
        raise Unauthorized("authentication required")
    return row


async def _staff_of(request: Request, login: StaffSession) -> Staff:
    staff = await request.state.session.get(Staff, login.staff_id, with_for_update=True)
    if staff is None:
        raise Unauthorized("authentication required")
    result: Staff = staff
    return result


# ---------------------------------------------------------------- endpoints


async def login(request: Request) -> Response:
    svc = services(request)
    # no session yet, so no CSRF token: a browser on another site must not log anyone in
    check_origin(request, svc.settings)
    body = await parse_body(request, Credentials)
    await svc.limiter.check("staff-login", LOGIN_LIMIT)
    await svc.limiter.check("staff-login-user", LOGIN_USER_LIMIT, body.username.strip().lower())
    session = request.state.session
    try:
        started = await password_login(
            session, svc.clock, svc.settings, body.username, body.password
        )
    except COUNTED as exc:
        return refusal(exc)
    previous = request.cookies.get(cookie_name(svc.settings))
    if previous:
        await end_session(session, previous)
    response = JSONResponse({"stage": started.stage.value})
    set_session_cookie(response, svc.settings, started.token)
    return response


async def _code_step(request: Request, step: CodeStep) -> Response:
    """A TOTP code that completes the login (`complete_login` or `enrol_totp`)."""
    svc = services(request)
    body = await parse_body(request, TotpCode)
    await svc.limiter.check("staff-code", CODE_LIMIT, request.state.principal.id)
    login = await current_login(request)
    try:
        token, _ = await step(
            request.state.session, svc.clock, svc.settings, svc.keyring, login, body.code
        )
    except COUNTED as exc:
        return refusal(exc)
    response = JSONResponse({"stage": LoginStage.done.value})
    set_session_cookie(response, svc.settings, token)
    return response


async def login_totp(request: Request) -> Response:
    return await _code_step(request, complete_login)


async def totp_enrolment(request: Request) -> Response:
    svc = services(request)
    staff = await _staff_of(request, await current_login(request))
    secret = await enrolment_secret(request.state.session, svc.keyring, staff)
    return JSONResponse({"secret": secret, "uri": provisioning_uri(staff, secret)})


async def totp_qr(request: Request) -> Response:
    """The enrolment URI as a QR code, served from our origin: the CSP allows no data: URLs."""
    svc = services(request)
    staff = await _staff_of(request, await current_login(request))
    secret = await enrolment_secret(request.state.session, svc.keyring, staff)
    image = io.BytesIO()
    segno.make(provisioning_uri(staff, secret), error="m", micro=False).save(
        image, kind="svg", scale=5, border=4, dark="#000", light="#fff", title="QR code"
    )
    return Response(image.getvalue(), media_type="image/svg+xml")


async def totp_enrol(request: Request) -> Response:
    return await _code_step(request, enrol_totp)


async def me(request: Request) -> Response:
    login = await current_login(request)
    staff = await request.state.session.get(Staff, login.staff_id)
    if staff is None:
        raise Unauthorized("authentication required")
    return JSONResponse(
        {
            "id": staff.id,
            "username": staff.username,
            "display_name": staff.display_name,
            "role": staff.role,
            "stage": login.stage,
            "csrf_token": login.csrf_token,
        }
    )


async def logout(request: Request) -> Response:
    svc = services(request)
    login = await current_login(request)
    await request.state.session.delete(login)
    await record(
        request.state.session,
        svc.clock,
        actor=f"staff:{login.staff_id}",
        action="staff.logout",
        target=f"staff:{login.staff_id}",
    )
    response = Response(status_code=204)
    clear_session_cookie(response, svc.settings)
    return response


# ---------------------------------------------------------------- wiring


def staff_routes() -> list[BaseRoute]:
    return [
        route("/api/staff/login", login, access=PUBLIC, methods=["POST"]),
        route(
            "/api/staff/login/totp",
            login_totp,
            access=staff_login(LoginStage.totp),
            methods=["POST"],
        ),
        route("/api/staff/totp/enrolment", totp_enrolment, access=staff_login(LoginStage.enrol)),
        route("/api/staff/totp/qr.svg", totp_qr, access=staff_login(LoginStage.enrol)),
        route(
            "/api/staff/totp/enrol",
            totp_enrol,
            access=staff_login(LoginStage.enrol),
            methods=["POST"],
        ),
        route("/api/staff/me", me, access=staff_login()),
        route("/api/staff/logout", logout, access=staff_login(), methods=["POST"]),
    ]


def register_staff(authenticators: dict[str, Authenticator]) -> None:
    """Register the staff authenticators: `staff` (complete logins, for `staff(role)`) and
    `staff-login` (any stage, for `staff_login(...)`)."""
    authenticators[STAFF] = staff_authenticator
    authenticators[STAFF_LOGIN] = staff_login_authenticator
