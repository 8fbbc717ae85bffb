"""HTTP plumbing: access rules, the transaction per request, security headers, errors, logs.

Deny by default: every route is made with `route()` / `websocket_route()` / `mount()` and names
its access rule; `check_access_rules()` refuses to build an app with a route that has none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from helpline.core.errors import (
    Forbidden,
    HelplineError,
    Invalid,
    TooManyRequests,
    Unauthorized,
)
from helpline.core.logs import new_request_id, request_id
from helpline.core.services import Services

log = logging.getLogger("helpline.http")
access_log = logging.getLogger("helpline.access")

# ---------------------------------------------------------------- who may call a route


@dataclass(frozen=True)
class Principal:
    """Who is calling: `anonymous`, or an authenticated `staff`, `victim`, `platform`,
    `partner`, with an id (and a role, for staff)."""

    kind: str
    id: str | None = None
    role: str | None = None


ANONYMOUS = Principal("anonymous")

# An authenticator turns a request into a principal of its kind, or None if the request does
# not carry valid credentials of that kind. Domain packages register theirs at app creation.
Authenticator = Callable[[HTTPConnection], Awaitable[Principal | None]]


class AccessRule(Protocol):
    description: str

    async def authorise(self, connection: HTTPConnection) -> Principal: ...


class Public:
    """Anyone, without credentials (victims' start page, health checks, public keys)."""

    description = "public"

    async def authorise(self, connection: HTTPConnection) -> Principal:
        return ANONYMOUS


class Authenticated:
    """A principal of one kind, checked by that kind's registered authenticator; optionally a
    predicate on it (a staff role, say). No authenticator registered: nobody gets in."""

    def __init__(
        self,
        kind: str,
        *,
        allow: Callable[[Principal], bool] | None = None,
        description: str | None = None,
    ) -> None:
        self.kind = kind
        self.allow = allow
        self.description = description or kind

    async def authorise(self, connection: HTTPConnection) -> Principal:
        authenticators: dict[str, Authenticator] = connection.app.state.authenticators
        authenticator = authenticators.get(self.kind)
        principal = await authenticator(connection) if authenticator else None
        if principal is None:
            raise Unauthorized("authentication required")
        if self.allow is not None and not self.allow(principal):
            raise Forbidden("not allowed for your role")
        return principal


PUBLIC = Public()

Endpoint = Callable[[Request], Awaitable[Response]]


def services(connection: HTTPConnection) -> Services:
    result: Services = connection.state.services
    return result


def route(
    path: str,
    endpoint: Endpoint,
    *,
    access: AccessRule,
    methods: Sequence[str] = ("GET",),
    name: str | None = None,
) -> Route:
    """A route whose handler runs after its access rule, inside one database transaction that
    commits when it returns a response and rolls back when it raises."""

    async def handle(request: Request) -> Response:
        request.state.principal = await access.authorise(request)
        request.state.after_commit = []
        async with services(request).db.transaction() as session:
            request.state.session = session
            response = await endpoint(request)
        for action in request.state.after_commit:
            await action()
        return response

    result = Route(path, handle, methods=list(methods), name=name or endpoint.__name__)
    result.access = access  # type: ignore[attr-defined]
    return result


def after_commit(request: Request, action: Callable[[], Awaitable[object]]) -> None:
    """Run `action` once the request's transaction has committed (and not at all if it rolls
    back): bus notifications must not tell listeners about rows they cannot read yet."""
    request.state.after_commit.append(action)


def publish_after_commit(request: Request, channel: str, message: dict[str, Any]) -> None:
    after_commit(request, lambda: services(request).bus.publish(channel, message))


def websocket_route(
    path: str, endpoint: Callable[[WebSocket], Awaitable[None]], *, access: AccessRule
) -> WebSocketRoute:
    """A websocket route; a refused connection is closed with code 4401/4403 (no transaction:
    a long-lived socket opens its own for each unit of work)."""

    async def handle(websocket: WebSocket) -> None:
        try:
            websocket.state.principal = await access.authorise(websocket)
        except HelplineError as exc:
            await websocket.close(code=4000 + exc.status, reason=exc.code)
            return
        await endpoint(websocket)

    result = WebSocketRoute(path, handle, name=endpoint.__name__)
    result.access = access  # type: ignore[attr-defined]
    return result


def mount(path: str, app: ASGIApp, *, access: AccessRule, name: str | None = None) -> Mount:
    """A mounted app (static files); only public mounts are possible, since the mounted app
    does not pass through `route()`."""
    if not isinstance(access, Public):
        raise ValueError("only public mounts are supported")
    result = Mount(path, app=app, name=name)
    result.access = access  # type: ignore[attr-defined]
    return result


class CheckedInHandshake:
    """For websockets whose credentials arrive in their first frame (a victim's token never
    travels in a URL, where proxies log it): the handler must authenticate that frame before
    it does anything else, and close the socket otherwise."""

    def __init__(self, description: str) -> None:
        self.description = description

    async def authorise(self, connection: HTTPConnection) -> Principal:
        return ANONYMOUS


class RouteWithoutAccessRule(RuntimeError):
    pass


def check_access_rules(routes: Sequence[BaseRoute]) -> None:
    for item in routes:
        if getattr(item, "access", None) is None:
            where = getattr(item, "path", repr(item))
            raise RouteWithoutAccessRule(f"route {where} declares no access rule")


# ---------------------------------------------------------------- allow-listed input


class Schema(BaseModel):
    """A request body: unknown fields are refused, strings are bounded."""

    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


SchemaT = TypeVar("SchemaT", bound=Schema)


async def parse_body(request: Request, schema: type[SchemaT]) -> SchemaT:
    """The JSON body as `schema`, or `Invalid` naming the first field that is wrong."""
    try:
        return schema.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Invalid(f"{where}: {first['msg']}") from None


# ---------------------------------------------------------------- errors in one shape


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status)


async def on_helpline_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HelplineError)
    response = error_response(exc.status, exc.code, exc.message, **exc.details)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), exc.detail)
    for header, value in (exc.headers or {}).items():
        response.headers[header] = value
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "something went wrong on our side")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HelplineError: on_helpline_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


# ---------------------------------------------------------------- every response


def security_headers(https: bool) -> list[tuple[bytes, bytes]]:
    headers = {
        # no inline script, no third-party origin, never framed
        "content-security-policy": "default-src 'self'; base-uri 'none'; object-src 'none'; "
        "form-action 'self'; frame-ancestors 'none'",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        # nothing a victim saw may stay in the browser's cache: no-store on every response
        "cache-control": "no-store",
    }
    if https:
        headers["strict-transport-security"] = "max-age=63072000; includeSubDomains"
    return [(k.encode(), v.encode()) for k, v in headers.items()]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = security_headers(https)
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                # a page may set its own Content-Security-Policy (the platform portal: img-src
                # blob:); every other security header is always ours
                own_csp = any(k.lower() == b"content-security-policy" for k, _ in own)
                kept = [
                    (k, v)
                    for k, v in own
                    if k.lower() not in self.names
                    or (own_csp and k.lower() == b"content-security-policy")
                ]
                ours = [
                    (k, v)
                    for k, v in self.headers
                    if not (own_csp and k == b"content-security-policy")
                ]
                message["headers"] = kept + ours
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLogMiddleware:
    """One log line per request: method, route template, status, duration. Never the client
    address, user agent, query string or the raw path (which can carry a reference).

    Each request and websocket connection gets a random request id (`helpline.core.logs`):
    on every log line written while it is handled, and as the `X-Request-Id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        current = new_request_id()
        header = (b"x-request-id", current.encode())
        handling = request_id.set(current)

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "websocket.close" and not status:
                status = 403  # refused before it was accepted
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            matched = scope.get("route")
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method", "WS"),
                    "route": getattr(matched, "path", "(unmatched)"),
                    "status": status or 500,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id.reset(handling)
