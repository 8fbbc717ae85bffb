"""The real app under uvicorn on an ephemeral loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from helpline.app import create_app
from helpline.core.clock import Clock
from helpline.core.config import Settings


@dataclass
class LiveServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_server(
    settings: Settings, clock: Clock | None = None, *, port: int = 0
) -> LiveServer:
    """Serve on `port` (0: any free one). Staff logins check the Origin against the base URL,
    so tests that log staff in pass the port their settings' base URL names."""
    return await serve_asgi(create_app(settings, clock=clock), port=port, lifespan="on")


async def serve_asgi(
    app: ASGIApp, *, port: int = 0, lifespan: Literal["on", "off"] = "off"
) -> LiveServer:
    """Any ASGI app (the helpline, or a test's stand-in for a platform or a partner) under
    uvicorn on loopback, in the test's event loop; `stop()` ends it."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.025)
    else:
        raise TimeoutError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(server, task, port)


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings, clock: Clock | None = None, *, port: int = 0
) -> AsyncIterator[LiveServer]:
    running = await start_server(settings, clock, port=port)
    try:
        yield running
    finally:
        await running.stop()
