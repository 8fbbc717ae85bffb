"""`/metrics` in Prometheus text format: the plumbing (who may scrape, the per-instance
websocket gauge, build info, rendering). The figures that come from the domains' tables are
read by a reader that `helpline.metrics` gives (core imports no domain package).

A scrape reads the database once, in the request's transaction, then renders the figures
through a custom collector in a registry of its own: nothing goes to prometheus-client's
global default registry, so two apps in one process (tests) never share a series.

Every label value comes from a closed vocabulary (priorities, statuses, kinds that are code
names): no case id, no reference, nothing a person wrote.
"""

from __future__ import annotations

import contextlib
import hmac
import platform
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from helpline import __version__
from helpline.core.errors import Unauthorized
from helpline.core.http import Principal, route, services
from helpline.core.services import Services

# the figures a reader returns, read in the scrape's transaction at `now`
Reader = Callable[[AsyncSession, Services, datetime], Awaitable[list[Metric]]]

BUILD_INFO = "helpline_build_info"
WEBSOCKET_CONNECTIONS = "helpline_websocket_connections"
# the series core itself reports; `helpline.metrics.SERIES` lists them all
CORE_SERIES = (BUILD_INFO, WEBSOCKET_CONNECTIONS)

# the kinds of long-lived connection an instance holds
WEBSOCKET_KINDS = ("chat_victim", "chat_staff", "console")
_CONNECTIONS = "websocket_connections"  # Services.extras key

# a scrape must stay cheap even on a large database: PostgreSQL stops a slow query
STATEMENT_TIMEOUT_MS = 5000


# ---------------------------------------------------------------- who may scrape


def _bearer(connection: HTTPConnection) -> str:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class MetricsToken:
    """Prometheus, with `HELPLINE_METRICS_TOKEN` as its bearer token (compared in constant
    time). Without a token configured the route does not exist: 404, as for any unknown path."""

    description = "metrics token"

    async def authorise(self, connection: HTTPConnection) -> Principal:
        configured = services(connection).settings.metrics_token
        expected = configured.get_secret_value() if configured is not None else ""
        if not expected:
            raise HTTPException(status_code=404)
        if not hmac.compare_digest(_bearer(connection).encode(), expected.encode()):
            raise Unauthorized("authentication required")
        return Principal("operator")


METRICS_TOKEN = MetricsToken()


# ---------------------------------------------------------------- websocket connections


def _connections(found: Services) -> dict[str, int]:
    counts: dict[str, int] = found.extras.setdefault(
        _CONNECTIONS, dict.fromkeys(WEBSOCKET_KINDS, 0)
    )
    return counts


@contextlib.contextmanager
def websocket_connected(connection: HTTPConnection, kind: str) -> Iterator[None]:
    """Count an open websocket of `kind` (one of WEBSOCKET_KINDS) in this instance's gauge
    while the block runs."""
    if kind not in WEBSOCKET_KINDS:
        raise ValueError(f"unknown websocket kind {kind!r}")
    counts = _connections(services(connection))
    counts[kind] += 1
    try:
        yield
    finally:
        counts[kind] -= 1


# ---------------------------------------------------------------- rendering


def gauge(
    name: str, documentation: str, values: dict[tuple[str, ...], float], *labels: str
) -> Metric:
    """A gauge family with one sample per label-value tuple in `values`."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def core_figures(found: Services) -> list[Metric]:
    build = gauge(
        BUILD_INFO,
        "The running Helpline version (always 1).",
        {(__version__, platform.python_version()): 1},
        "version",
        "python",
    )
    counts = _connections(found)
    sockets = gauge(
        WEBSOCKET_CONNECTIONS,
        "Open websocket connections of this instance, by kind.",
        {(kind,): counts[kind] for kind in WEBSOCKET_KINDS},
        "kind",
    )
    return [build, sockets]


class Snapshot(Collector):
    """The figures of one scrape, read from the database before rendering (a collector's
    `collect` is synchronous; the database is not)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


async def _limit_cost(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))


def render(families: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(families))
    return generate_latest(registry)


def metrics_routes(reader: Reader) -> list[BaseRoute]:
    """`GET /metrics`, with the domains' figures from `reader`."""

    async def metrics(request: Request) -> Response:
        found = services(request)
        session: AsyncSession = request.state.session
        await _limit_cost(session)
        families = core_figures(found) + await reader(session, found, found.clock.now())
        return Response(render(families), media_type=CONTENT_TYPE_LATEST)

    return [route("/metrics", metrics, access=METRICS_TOKEN)]
