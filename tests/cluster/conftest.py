"""A real cluster for these tests: `helpline serve` processes behind nginx (bench/cluster.py).

Like the other PostgreSQL and Redis tests they are skipped, saying how to run them, when
HELPLINE_TEST_DATABASE_URL or HELPLINE_TEST_REDIS_URL is unset, and fail when a service that
was named cannot be reached. A missing nginx fails them in CI (`CI` set, as in .ci/run) and
skips them elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.cluster import Cluster, ClusterError, find_nginx
from tests.conftest import PG_ENV, REDIS_ENV


def _required(env: str, how: str) -> str:
    value = os.environ.get(env)
    if not value:
        pytest.skip(f"{env} is not set; to run this test: export {env}={how}")
    return value


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Two instances on a fresh PostgreSQL database and a Redis database of their own, behind
    nginx; everything is stopped and removed afterwards."""
    postgres = _required(PG_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    redis = _required(REDIS_ENV, "redis://127.0.0.1:6379/0")
    if find_nginx() is None:
        message = "nginx not found: apt-get install nginx"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    running = Cluster(instances=2, postgres=postgres, redis=redis)
    try:
        running.start()
    except ClusterError as exc:
        pytest.fail(f"the cluster did not start: {exc}")
    try:
        yield running
    finally:
        running.stop()
