"""The `helpline` command, run as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpline.cli import main
from helpline.core.crypto import load_signer, read_key_file
from helpline.core.db import Database
from helpline.staff.models import Staff

COMMANDS = [
    [],
    ["serve"],
    ["worker"],
    ["demo"],
    ["migrate"],
    ["keys"],
    ["keys", "init"],
    ["keys", "rotate"],
    ["staff"],
    ["staff", "add"],
    ["audit"],
    ["audit", "verify"],
    ["outbox"],
    ["outbox", "list"],
    ["outbox", "retry"],
]


def helpline(
    args: list[str], data_dir: Path, *, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HELPLINE_") or k.startswith("HELPLINE_TEST_")
    }
    environment.update(HELPLINE_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "helpline.cli", *args],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "helpline")
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout
    description = result.stdout.split("\n\n")[1].strip()
    assert len(description) > 20


def test_keys_init_writes_a_private_key_file_and_never_overwrites(tmp_path: Path) -> None:
    first = helpline(["keys", "init"], tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    assert len(read_key_file(key_file).keys) == 1

    again = helpline(["keys", "init"], tmp_path)
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr
    assert key_file.read_text() == content


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    result = helpline(["demo", "--no-serve"], tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_demo_sets_up_once_and_reuses_what_exists(demo_dir: Path) -> None:
    key = (demo_dir / "master.key").read_text()
    login = (demo_dir / "demo-login.txt").read_text()
    user, password = login.split()
    assert stat.S_IMODE((demo_dir / "demo-login.txt").stat().st_mode) == 0o600

    again = helpline(["demo", "--no-serve"], demo_dir)
    assert again.returncode == 0, again.stderr
    assert f"{user} / {password}" in again.stdout
    assert (demo_dir / "master.key").read_text() == key
    assert (demo_dir / "demo-login.txt").read_text() == login
    assert "up to date" in helpline(["migrate"], demo_dir).stdout


def test_staff_add_prompts_for_the_password_and_stores_only_an_argon2id_hash(
    demo_dir: Path,
) -> None:
    assert "--password" not in helpline(["staff", "add", "--help"], demo_dir).stdout
    password = "correct horse battery staple"
    result = helpline(
        ["staff", "add", "Anouk", "--role", "supervisor"],
        demo_dir,
        stdin=f"{password}\n{password}\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created supervisor anouk" in result.stdout

    async def stored() -> Staff:
        db = Database(f"sqlite+aiosqlite:///{demo_dir / 'helpline.db'}")
        async with db.transaction() as session:
            row = (
                await session.execute(select(Staff).where(Staff.username == "anouk"))
            ).scalar_one()
        await db.dispose()
        return row

    row = asyncio.run(stored())
    assert row.role == "supervisor"
    assert row.password_hash.startswith("$argon2id$")
    assert password not in row.password_hash

    duplicate = helpline(["staff", "add", "anouk"], demo_dir, stdin=f"{password}\n{password}\n")
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
    short = helpline(["staff", "add", "bram"], demo_dir, stdin="short\nshort\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr


def test_keys_rotate_adds_a_new_master_key_then_retires_the_old_one(demo_dir: Path) -> None:
    key_file = demo_dir / "master.key"
    old = read_key_file(key_file)

    rotated = helpline(["keys", "rotate"], demo_dir)
    assert rotated.returncode == 0, rotated.stderr
    assert "rotation complete" in rotated.stdout
    during = read_key_file(key_file)
    assert during.current_id != old.current_id
    assert old.current_id in during.keys  # kept until --retire

    retired = helpline(["keys", "rotate", "--retire"], demo_dir)
    assert retired.returncode == 0, retired.stderr
    after = read_key_file(key_file)
    assert list(after.keys) == [during.current_id]

    async def signer_opens() -> bool:
        db = Database(f"sqlite+aiosqlite:///{demo_dir / 'helpline.db'}")
        async with db.transaction() as session:
            signer = await load_signer(session, after)
        await db.dispose()
        return signer is not None

    assert asyncio.run(signer_opens())


def test_rotating_an_environment_key_needs_the_new_key_first(demo_dir: Path) -> None:
    key = json.loads((demo_dir / "master.key").read_text())
    only_key = key["keys"][key["current"]]
    result = helpline(["keys", "rotate"], demo_dir, HELPLINE_MASTER_KEY=only_key)
    assert result.returncode == 1
    assert "NEW,OLD" in result.stderr


def test_audit_verify_reports_an_intact_log(demo_dir: Path) -> None:
    result = helpline(["audit", "verify"], demo_dir)
    assert result.returncode == 0, result.stderr
    # the default canned responses (at migrate), the demo account's creation, and each of the
    # four demo partners' keys imported and confirmed
    assert "audit log intact: 10 lines" in result.stdout


def test_demo_partners_get_identity_files_only_their_owner_can_read(demo_dir: Path) -> None:
    keys = sorted((demo_dir / "demo-partners").glob("*.key"))
    assert len(keys) == 4
    for key in keys:
        assert key.stat().st_mode & 0o077 == 0
        assert "AGE-SECRET-KEY-1" in key.read_text()


def test_purge_dry_run_reports_without_deleting(demo_dir: Path) -> None:
    result = helpline(["purge", "--dry-run"], demo_dir)
    assert result.returncode == 0, result.stderr
    assert "would remove:" in result.stdout
    verified = helpline(["audit", "verify"], demo_dir)
    assert verified.returncode == 0, verified.stderr


def test_outbox_list_and_retry(demo_dir: Path) -> None:
    listed = helpline(["outbox", "list"], demo_dir)
    assert listed.returncode == 0 and "no dead entries" in listed.stdout
    missing = helpline(["outbox", "retry", "nope"], demo_dir)
    assert missing.returncode == 1 and "no such outbox entry" in missing.stderr


def test_worker_runs_until_told_to_stop(demo_dir: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    environment["HELPLINE_DATA_DIR"] = str(demo_dir)
    with subprocess.Popen(
        [sys.executable, "-m", "helpline.cli", "worker"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert "worker running" in process.stdout.readline()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_a_new_database_gets_the_default_canned_responses_once(demo_dir: Path) -> None:
    database = demo_dir / "helpline.db"

    def canned() -> list[tuple[str, str]]:
        with sqlite3.connect(database) as connection:
            return connection.execute("SELECT language, title FROM canned_responses").fetchall()

    seeded = canned()
    assert {language for language, _ in seeded} == {"nl", "en"}
    # a helpline that removed them all does not get them back from the next `migrate`
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM canned_responses")
    assert helpline(["migrate"], demo_dir).returncode == 0
    assert canned() == []


def test_another_master_key_than_the_datas_is_one_clear_line(demo_dir: Path) -> None:
    (demo_dir / "master.key").rename(demo_dir / "master.key.real")
    helpline(["keys", "init"], demo_dir)  # a different key (it says so already, see below)
    assert (demo_dir / "master.key").read_text() != (demo_dir / "master.key.real").read_text()
    for command in (["migrate"], ["purge", "--dry-run"]):
        result = helpline(command, demo_dir)
        assert result.returncode == 1, (command, result.stderr)
        assert "is not loaded" in result.stderr and "Traceback" not in result.stderr
