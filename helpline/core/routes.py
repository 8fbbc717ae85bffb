"""The core's own endpoints: liveness, readiness and the published signing keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.core.crypto import published_keys
from helpline.core.http import PUBLIC, route, services


async def healthz(request: Request) -> Response:
    """The process is up and answering."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Can this instance serve? Without the database it cannot (503). Without Redis it still
    can, degraded: chat falls back to catching up from the database, so the instance stays in
    the load balancer and reports `degraded` for monitoring to alert on."""
    found = services(request)
    checks: dict[str, str] = {}
    try:
        await found.db.ping()
        checks["database"] = "ok"
    except Exception:  # any failure to reach the database means not ready
        checks["database"] = "down"
    checks["bus"] = "ok" if found.bus.healthy else "down"
    if checks["database"] != "ok":
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    status = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return JSONResponse({"status": status, "checks": checks})


async def signing_keys(request: Request) -> Response:
    """Public keys that verify Helpline's signatures on notices, custody entries, manifests."""
    keys = await published_keys(request.state.session)
    return JSONResponse({"issuer": services(request).settings.base_url, "keys": keys})


def core_routes() -> list[BaseRoute]:
    return [
        route("/healthz", healthz, access=PUBLIC),
        route("/readyz", readyz, access=PUBLIC),
        route("/.well-known/helpline-keys.json", signing_keys, access=PUBLIC),
    ]
