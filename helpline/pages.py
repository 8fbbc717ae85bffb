"""The static frontend: victims' pages, the console, and their assets under /static/."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from helpline.core.http import PUBLIC, Endpoint, mount, route


@cache
def frontend_root() -> Path:
    """`frontend/` of a source checkout, else the copy a wheel installs under share/."""
    for candidate in (
        Path(__file__).resolve().parent.parent / "frontend",
        Path(sys.prefix) / "share" / "helpline" / "frontend",
    ):
        if (candidate / "chat" / "index.html").exists():
            return candidate
    raise RuntimeError("the frontend files are missing (frontend/ or share/helpline/frontend)")


def _page(relative: str) -> Endpoint:
    async def page(request: Request) -> Response:
        return FileResponse(frontend_root() / relative, media_type="text/html")

    page.__name__ = "page_" + relative.replace("/", "_").removesuffix(".html")
    return page


def page_routes() -> list[BaseRoute]:
    return [
        route("/", _page("chat/index.html"), access=PUBLIC),
        route("/safe-browsing", _page("chat/safe-browsing.html"), access=PUBLIC),
        route("/console/", _page("console/index.html"), access=PUBLIC),
        mount("/static", StaticFiles(directory=frontend_root()), access=PUBLIC, name="static"),
    ]
