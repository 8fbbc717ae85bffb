"""Security headers, the JSON error shape, access rules, health and the published keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from helpline.app import create_app
from helpline.core.crypto import canonical_json, verify_signature
from helpline.core.http import (
    PUBLIC,
    Authenticated,
    RouteWithoutAccessRule,
    check_access_rules,
    route,
    services,
)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "bus": "ok"}}


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/no/such/page"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers  # base URL is http


async def test_hsts_when_base_url_is_https(settings_for: Any, sqlite_url: str) -> None:
    app = create_app(settings_for(sqlite_url, base_url="https://help.example"))
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_errors_have_one_json_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong_method = await client.post("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_route_without_access_rule_is_refused_at_start() -> None:
    async def naked(request: Request) -> Response:
        return JSONResponse({})

    with pytest.raises(RouteWithoutAccessRule, match="/naked"):
        check_access_rules([route("/ok", naked, access=PUBLIC), Route("/naked", naked)])


async def test_authenticated_route_refuses_without_credentials(app: Any) -> None:
    rule = Authenticated("staff", allow=lambda p: p.role == "admin")

    async def secret(request: Request) -> Response:
        return JSONResponse({"secret": True})

    async def admin_only(request: Request) -> Response:
        return JSONResponse({"who": request.state.principal.id})

    app.router.routes.append(route("/secret", secret, access=rule))
    state = app.state.lifespan_state

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"] = dict(state)
        await app(scope, receive, send)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://t"
    ) as client:
        # no authenticator registered for "staff": deny by default
        response = await client.get("/secret")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

        from helpline.core.http import Principal

        async def as_agent(connection: Any) -> Principal | None:
            token = connection.headers.get("x-test")
            return Principal("staff", id=token, role=token) if token else None

        app.state.authenticators["staff"] = as_agent
        assert (await client.get("/secret")).status_code == 401
        assert (await client.get("/secret", headers={"x-test": "agent"})).status_code == 403
        assert (await client.get("/secret", headers={"x-test": "admin"})).json() == {"secret": True}


async def test_published_key_verifies_a_signed_document(
    app: Any, client: httpx.AsyncClient
) -> None:
    document = {"notice": "n-1", "urls": ["https://platform.example/p/1"]}
    signature = services_of(app).signer.sign_document(document)
    keys = (await client.get("/.well-known/helpline-keys.json")).json()["keys"]
    [key] = [k for k in keys if k["kid"] == signature["kid"]]
    assert key["status"] == "current" and key["crv"] == "Ed25519"
    public = _b64url_decode(key["x"])
    assert verify_signature(
        public, canonical_json(document), _b64url_decode(signature["signature"])
    )
    tampered = dict(document, urls=["https://platform.example/p/2"])
    assert not verify_signature(
        public, canonical_json(tampered), _b64url_decode(signature["signature"])
    )


def services_of(app: Any) -> Any:
    return app.state.lifespan_state["services"]


def _b64url_decode(value: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


_ = services  # the accessor routes use; imported to keep the public surface exercised
