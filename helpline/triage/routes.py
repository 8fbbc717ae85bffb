"""The console's triage endpoints: categories, risk flags, priority, status, the queue."""

from __future__ import annotations

from starlette.routing import BaseRoute


def triage_routes() -> list[BaseRoute]:
    return []
