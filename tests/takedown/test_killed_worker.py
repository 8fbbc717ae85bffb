"""A notice is delivered exactly once even when the worker process is killed mid-delivery:
the platform got the POST (and acted on it), the worker died before it could record that;
another worker delivers again with the same Idempotency-Key, the platform recognises it, and
the notice is sent once, with one `sent` in its history. Real processes, real time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from helpline.core.crypto import b64e
from helpline.core.models import OutboxEntry
from helpline.staff.models import Role
from tests.conftest import TEST_MASTER_KEY
from tests.takedown.kit import Office, PlatformSite

REPO = Path(__file__).resolve().parents[2]


def start_worker(database_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        HELPLINE_DATABASE_URL=database_url,
        HELPLINE_MASTER_KEY=b64e(TEST_MASTER_KEY),
        HELPLINE_DATA_DIR=str(data_dir),
        HELPLINE_NOTICE_API_ALLOW_HTTP="true",
        HELPLINE_OUTBOX_LEASE_SECONDS="2",
        HELPLINE_WORKER_POLL_SECONDS="0.05",
    )
    env.pop("HELPLINE_REDIS_URL", None)
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.takedown.notice_worker_process"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker output:\n{log.read_text()}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_worker_killed_mid_delivery_delivers_the_notice_once(
    office: Office, site: PlatformSite, database_url: str, tmp_path: Path
) -> None:
    office.clock.set(datetime.now(UTC))  # the workers run on real time
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(
        admin, delivery="api", endpoint_url=f"{site.url}/dsa/notices", slug="clipstream"
    )
    notice = await office.notice(agent, await office.case(agent), platform["id"])
    await office.do(agent, notice["id"], "send")
    key = f"notice:{notice['id']}"
    hold = site.hold = asyncio.Event()
    log = tmp_path / "workers.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = start_worker(database_url, tmp_path / "var", log)
        processes.append(first)
        await asyncio.wait_for(site.held.wait(), 60)  # the platform has acted on it
        first.send_signal(signal.SIGKILL)  # before the worker could record the delivery
        assert first.wait(timeout=10) == -signal.SIGKILL
        site.hold = None
        hold.set()
        assert (await office.row(notice["id"])).status == "queued"

        processes.append(start_worker(database_url, tmp_path / "var", log))

        async def sent() -> bool:
            # the handler marks the notice sent; the worker then records the outbox entry
            # delivered in a step of its own: wait for both
            if (await office.row(notice["id"])).status != "sent":
                return False
            async with office.services.db.transaction() as session:
                status = (
                    await session.execute(
                        select(col(OutboxEntry.status)).where(
                            col(OutboxEntry.idempotency_key) == key
                        )
                    )
                ).scalar_one()
            return bool(status == "delivered")

        await wait_until(sent, "the delivery after the restart", log)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    assert [p.idempotency_key for p in site.posts] == [key, key]
    assert list(site.effects) == [key]  # acted on once
    assert site.posts[0].body == site.posts[1].body
    history = await office.history(notice["id"])
    assert [(h.from_status, h.to_status) for h in history if h.url_id is None].count(
        ("queued", "sent")
    ) == 1
    async with office.services.db.transaction() as session:
        entry = (
            await session.execute(
                select(OutboxEntry).where(col(OutboxEntry.idempotency_key) == key)
            )
        ).scalar_one()
    assert (entry.status, entry.attempts) == ("delivered", 2)
