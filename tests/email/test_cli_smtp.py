"""`helpline smtp`: the listener as a process of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpline.cases.models import Case
from helpline.cli import main
from helpline.core.db import Database
from tests.email.conftest import HELPLINE, victim_mail
from tests.live import free_port


def environment(data_dir: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env.update(HELPLINE_DATA_DIR=str(data_dir), **more)
    return env


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with a key file and a migrated database (`helpline demo`)."""
    path = tmp_path_factory.mktemp("smtp-demo")
    demo = subprocess.run(
        [sys.executable, "-m", "helpline.cli", "demo", "--no-serve"],
        env=environment(path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    return path


def test_smtp_explains_itself_and_needs_addresses_and_a_port(demo_dir: Path) -> None:
    result = CliRunner().invoke(main, ["smtp", "--help"])
    assert result.exit_code == 0 and "Receive e-mail" in result.stdout
    for env, expected in (
        ({}, "HELPLINE_INBOUND_ADDRESSES"),
        ({"HELPLINE_INBOUND_ADDRESSES": HELPLINE}, "HELPLINE_SMTP_IN_PORT"),
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "helpline.cli", "smtp"],
            env=environment(demo_dir, **env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and expected in refused.stderr


def test_smtp_receives_mail_into_a_case_until_told_to_stop(demo_dir: Path) -> None:
    port = free_port()
    env = environment(demo_dir, HELPLINE_INBOUND_ADDRESSES=HELPLINE, HELPLINE_LOG_LEVEL="DEBUG")
    with subprocess.Popen(
        [sys.executable, "-m", "helpline.cli", "smtp", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert f"receiving mail on 127.0.0.1:{port}" in process.stdout.readline()
            with smtplib.SMTP("127.0.0.1", port, local_hostname="helo-marker.example") as client:
                client.sendmail("victim@example.org", [HELPLINE], victim_mail().as_string())
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
            assert process.stderr is not None
            logs = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
    assert '"msg": "e-mail received"' in logs
    # aiosmtpd names the client in its log lines: none of that may reach the logs
    for marker in ("127.0.0.1:", "helo-marker", "victim@example.org", "Peer"):
        assert marker not in logs, marker

    async def cases() -> list[Case]:
        db = Database(f"sqlite+aiosqlite:///{demo_dir / 'helpline.db'}")
        try:
            async with db.transaction() as session:
                return list((await session.execute(select(Case))).scalars().all())
        finally:
            await db.dispose()

    [case] = asyncio.run(cases())
    assert case.channel == "email"
