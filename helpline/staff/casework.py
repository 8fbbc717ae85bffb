"""Working a case in the console: private notes, the timeline, canned responses."""

from __future__ import annotations

from starlette.routing import BaseRoute


def casework_routes() -> list[BaseRoute]:
    return []
