"""The `helpline` command."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging.config
import os
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from helpline.app import running_services
from helpline.cases.service import find_case
from helpline.core.audit import Cut, count_lines, newest_cut, record, verify
from helpline.core.clock import SystemClock
from helpline.core.config import ConfigError, Settings, load_settings
from helpline.core.crypto import (
    DecryptionError,
    Keyring,
    MasterKeys,
    ensure_signing_key,
    kek_ids_in_use,
    replace_key_file,
    rotate_master_key,
    write_new_key_file,
)
from helpline.core.db import Database
from helpline.core.errors import HelplineError
from helpline.core.logs import logging_config
from helpline.core.migrate import (
    NotMigrated,
    current_revision,
    head_revision,
    require_current_schema,
    upgrade,
)
from helpline.core.outbox import DEAD, entries_by_status, retry_dead
from helpline.evidence.bundle import export_case, verify_bundle
from helpline.evidence.service import vault_for
from helpline.handover.demo import KEY_DIRECTORY, load_demo_partners
from helpline.staff.accounts import create_staff, find_staff
from helpline.staff.canned_defaults import seed_canned_responses
from helpline.staff.models import Role
from helpline.takedown.platforms import load_demo_platforms

T = TypeVar("T")
DEMO_USER = "demo"


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Configuration and domain errors end the command with one clear line, not a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except HelplineError as exc:
            fail(exc.message)
        except DecryptionError as exc:  # e.g. another master key than the one the data has
            fail(f"{exc} (is HELPLINE_MASTER_KEY / the key file the one this data was made with?)")
        raise AssertionError("unreachable")

    return wrapper


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def _with_db(settings: Settings, work: Callable[[Database], Coroutine[Any, Any, T]]) -> T:
    db = Database(settings.database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


@click.group()
@click.version_option(package_name="helpline")
def main() -> None:
    """Helpline: anonymous help for victims of online abuse.

    Configured by HELPLINE_* environment variables (see the README).
    """


# ---------------------------------------------------------------- serve, demo, migrate


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    # uvicorn's workers are separate processes: each builds the app from the environment
    os.environ.update({"HELPLINE_DATA_DIR": str(settings.data_dir)})
    uvicorn.run(
        "helpline.asgi:build",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ws="websockets-sansio",
        # chat frames are small: compression saves little and costs ~40 KiB per connection
        ws_per_message_deflate=False,
        log_config=logging_config(settings.log_level),
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@handle_errors
def serve(host: str, port: int, workers: int) -> None:
    """Serve the app (the database must be migrated: `helpline migrate`)."""
    settings = load_settings()
    MasterKeys.from_settings(settings)  # fail now, with one line, not in every worker

    async def check(db: Database) -> None:
        await require_current_schema(db)

    try:
        run(_with_db(settings, check))
    except NotMigrated as exc:
        fail(str(exc))
    _serve(settings, host, port, workers)


@main.command()
@handle_errors
def worker() -> None:
    """Run only the outbox worker and the scheduler, without serving HTTP (for deployments
    that keep background work apart; set HELPLINE_RUN_WORKERS=false on the web instances)."""
    settings = load_settings()
    master = MasterKeys.from_settings(settings)
    logging.config.dictConfig(logging_config(settings.log_level))

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running_services(settings, master, SystemClock(), workers=True):
            click.echo("worker running; stop with Ctrl-C")
            await stop.wait()

    try:
        run(work())
    except NotMigrated as exc:
        fail(str(exc))


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: HELPLINE_SMTP_IN_HOST].")
@click.option(
    "--port", type=int, default=None, help="Port to listen on [default: HELPLINE_SMTP_IN_PORT]."
)
@handle_errors
def smtp(host: str | None, port: int | None) -> None:
    """Receive e-mail for the helpline's addresses: the SMTP listener on its own, for a
    separate process (`helpline serve` runs it too when HELPLINE_SMTP_IN_PORT is set)."""
    from helpline.intake.email import register_email, smtp_listener

    settings = load_settings()
    master = MasterKeys.from_settings(settings)
    if not settings.inbound_address_list:
        fail("HELPLINE_INBOUND_ADDRESSES: no addresses to receive mail for", 2)
    port = settings.smtp_in_port if port is None else port
    if not port:
        fail("HELPLINE_SMTP_IN_PORT: set a port (or pass --port)", 2)
    logging.config.dictConfig(logging_config(settings.log_level))

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running_services(settings, master, SystemClock(), workers=False) as services:
            register_email(services)
            async with smtp_listener(services, host=host, port=port) as listener:
                click.echo(f"receiving mail on {listener.host}:{listener.port}; stop with Ctrl-C")
                await stop.wait()

    try:
        run(work())
    except NotMigrated as exc:
        fail(str(exc))
    except OSError as exc:  # the port is taken, or not ours to bind
        fail(f"cannot listen on {host or settings.smtp_in_host}:{port}: {exc.strerror}")


async def _migrate(db: Database, master: MasterKeys | None) -> tuple[str | None, str | None]:
    before = await current_revision(db)
    await upgrade(db)
    if before is None or before < "0004":  # the table came with 0004: a first fill, once
        async with db.transaction() as session:
            await seed_canned_responses(session, SystemClock())
    if master is not None:  # the signing key needs the schema and the master key
        async with db.transaction() as session:
            await ensure_signing_key(session, master, SystemClock())
    return before, await current_revision(db)


def _master_or_none(settings: Settings) -> MasterKeys | None:
    try:
        return MasterKeys.from_settings(settings)
    except ConfigError:
        return None


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what is due; delete nothing.")
@handle_errors
def purge(dry_run: bool) -> None:
    """Crypto-shred and delete everything past its retention period now (the app also does
    this daily); prints progress, then what was removed (counts only)."""
    from helpline.retention.purge import run_purge_cli

    settings = load_settings()
    master = MasterKeys.from_settings(settings)

    async def work() -> None:
        async with running_services(settings, master, SystemClock(), workers=False) as services:
            await run_purge_cli(services, dry_run)

    try:
        run(work())
    except NotMigrated as exc:
        fail(str(exc))


@main.command()
@handle_errors
def migrate() -> None:
    """Bring the database schema up to date (safe to run again)."""
    settings = load_settings()
    master = _master_or_none(settings)
    before, after = run(_with_db(settings, lambda db: _migrate(db, master)))
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database migrated from {before or 'empty'} to {after}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--no-serve", is_flag=True, help="Prepare everything, then exit without serving.")
@handle_errors
def demo(host: str, port: int, no_serve: bool) -> None:
    """Set up a demo in the data directory (key file, database, demo login) and serve it.

    Running it again reuses what exists.
    """
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key_file = settings.master_key_file
    assert key_file is not None
    if settings.master_key is None and not key_file.exists():
        write_new_key_file(key_file)
        click.echo(f"created key file {key_file}")
    master = MasterKeys.from_settings(settings)
    login_file = settings.data_dir / "demo-login.txt"

    async def prepare(db: Database) -> str | None:
        await _migrate(db, master)
        async with db.transaction() as session:
            added = await load_demo_platforms(session, SystemClock(), settings)
        if added:
            click.echo(f"added {added} example platforms (example.org addresses)")
        async with db.transaction() as session:
            partners = await load_demo_partners(session, SystemClock(), settings)
        if new_partners := [partner for partner in partners if partner.added]:
            click.echo(
                f"added {len(new_partners)} example partners; their age identities (to open "
                f"handover packets) are in {settings.data_dir / KEY_DIRECTORY}"
            )
        async with db.transaction() as session:
            if await find_staff(session, DEMO_USER) is not None:
                return None
            password = "-".join(secrets.token_hex(3) for _ in range(4))
            await create_staff(
                session,
                SystemClock(),
                username=DEMO_USER,
                password=password,
                role=Role.admin,
                display_name="Demo admin",
            )
            return password

    password = run(_with_db(settings, prepare))
    if password is not None:
        fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{DEMO_USER}\n{password}\n")
    user, secret = login_file.read_text().split()[:2] if login_file.exists() else ("?", "?")
    base = f"http://{host}:{port}"
    click.echo(
        "\nHelpline demo is ready.\n"
        f"  victims' start page:   {base}/\n"
        f"  staff console:         {base}/console/\n"
        f"  readiness:             {base}/readyz\n"
        f"  signing keys:          {base}/.well-known/helpline-keys.json\n"
        f"  demo login (admin):    {user} / {secret}   (also in {login_file})\n"
        "  the first console login enrols an authenticator app (TOTP) by QR code\n"
    )
    if not no_serve:
        _serve(settings, host, port, 1)


# ---------------------------------------------------------------- keys


@main.group()
def keys() -> None:
    """Master key and signing key management."""


@keys.command("init")
@handle_errors
def keys_init() -> None:
    """Write a new master key file (mode 0600). Refuses to overwrite an existing one.

    Also creates the Ed25519 signing key if the database is already migrated (otherwise
    `helpline migrate` creates it).
    """
    settings = load_settings()
    path = settings.master_key_file
    assert path is not None
    try:
        master = write_new_key_file(path)
    except FileExistsError:
        fail(f"{path} exists already; refusing to overwrite a master key")
        return
    click.echo(f"wrote master key {master.current_id} to {path} (mode 0600)")
    click.echo("keep a copy offline: without it no case data can ever be read again")
    if settings.master_key is not None:
        click.echo("note: HELPLINE_MASTER_KEY is set and takes precedence over the key file")
        return

    async def sign_key(db: Database) -> bool:
        if await current_revision(db) != head_revision():
            return False
        async with db.transaction() as session:
            await ensure_signing_key(session, master, SystemClock())
        return True

    if run(_with_db(settings, sign_key)):
        click.echo("signing key ready")


@keys.command("rotate")
@click.option(
    "--retire", is_flag=True, help="Afterwards drop old master keys no longer in use from the file."
)
@handle_errors
def keys_rotate(retire: bool) -> None:
    """Re-wrap every data key and the signing key under a new master key.

    With a key file, a new key is added to it as the current one (the old one stays until
    `--retire`). With HELPLINE_MASTER_KEY, put the new key first: NEW,OLD. Data is not
    re-encrypted; an interrupted rotation is resumed by running the command again. Restart
    the app instances before `--retire`, so none still wraps new keys with the old master key.
    """
    settings = load_settings()
    master = MasterKeys.from_settings(settings)

    async def work(db: Database) -> None:
        nonlocal master
        async with db.transaction() as session:
            in_use = await kek_ids_in_use(session)
        needs_new_key = in_use <= {master.current_id} and not retire
        if needs_new_key:
            if master.source is None:
                fail("HELPLINE_MASTER_KEY: to rotate, set it to NEW,OLD (new key first)")
            assert master.source is not None
            new = os.urandom(32)
            master = replace_key_file(master.source, [new, *master.keys.values()])
            click.echo(f"new master key {master.current_id} added to {master.source}")

        def progress(done: int, total: int) -> None:
            click.echo(f"\rre-wrapped {done}/{total} data keys", nl=False)

        count = await rotate_master_key(db.sessionmaker, master, progress=progress)
        click.echo(f"\nrotation complete: {count} keys now under {master.current_id}")
        if retire and master.source is not None:
            async with db.transaction() as session:
                in_use = await kek_ids_in_use(session)
            current = master.keys[master.current_id]
            older = [k for kid, k in master.keys.items() if kid != master.current_id]
            kept = [k for kid, k in master.keys.items() if kid in in_use and k is not current]
            replace_key_file(master.source, [current, *kept])
            click.echo(f"retired {len(older) - len(kept)} old master key(s)")
            if kept:
                click.echo(f"kept {len(kept)} still in use: restart every instance and run again")

    run(_with_db(settings, work))


# ---------------------------------------------------------------- staff


@main.group()
def staff() -> None:
    """Staff accounts: agents, supervisors and admins."""


@staff.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.agent.value,
    show_default=True,
    help="What the account may do.",
)
@click.option("--name", "display_name", default=None, help="Name shown to colleagues.")
@handle_errors
def staff_add(username: str, role: str, display_name: str | None) -> None:
    """Create a staff account; the password is asked for (never given as an argument)."""
    settings = load_settings()
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def add(db: Database) -> str:
        async with db.transaction() as session:
            account = await create_staff(
                session,
                SystemClock(),
                username=username,
                password=password,
                role=Role(role),
                display_name=display_name,
            )
            return account.id

    staff_id = run(_with_db(settings, add))
    click.echo(f"created {role} {username.lower()} ({staff_id})")


# ---------------------------------------------------------------- evidence


@main.group()
def evidence() -> None:
    """Evidence bundles: export a case's evidence, verify a bundle offline."""


@evidence.command("export")
@click.argument("case")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The zip file to write.",
)
@handle_errors
def evidence_export(case: str, out: Path) -> None:
    """Write CASE's evidence (by case reference or id) to a signed zip bundle: the decrypted
    files, a manifest with hashes and the custody log, and the public key."""
    settings = load_settings()
    master = MasterKeys.from_settings(settings)

    async def export(db: Database) -> int:
        clock = SystemClock()
        keyring = Keyring(master, clock)
        async with db.transaction() as session:
            found = await find_case(session, case)
            signer = await ensure_signing_key(session, master, clock)

            def progress(done: int, total: int) -> None:
                click.echo(f"\rexported {done}/{total} items", nl=False)

            await export_case(
                session,
                keyring,
                vault_for(settings),
                signer,
                clock,
                case_id=found.id,
                out=out,
                actor="system:cli",
                progress=progress,
            )
            await record(
                session,
                clock,
                actor="system:cli",
                action="evidence.export",
                target=f"case:{found.id}",
            )
        return 0

    run(_with_db(settings, export))
    click.echo(f"\nwrote {out}")


@evidence.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The helpline's published keys (a saved /.well-known/helpline-keys.json), obtained "
    "separately: then a bundle re-signed with another key fails.",
)
def evidence_verify(bundle: Path, keys: Path | None) -> None:
    """Check a bundle offline: signature, every file's hash, every custody entry."""
    trusted = None
    if keys is not None:
        trusted = {
            k["kid"]: base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4))
            for k in json.loads(keys.read_text())["keys"]
        }
    problems = verify_bundle(bundle, trusted_keys=trusted)
    if problems:
        for problem in problems:
            click.echo(f"FAILED {problem}")
        sys.exit(1)
    click.echo(f"{bundle}: intact")


# ---------------------------------------------------------------- audit, outbox


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@handle_errors
def audit_verify() -> None:
    """Check the hash chain; name every line that was changed, inserted or deleted."""
    settings = load_settings()

    async def check(db: Database) -> tuple[int, list[str], Cut | None]:
        async with db.transaction() as session:
            problems = await verify(session)
            lines = await count_lines(session)
            purged = await newest_cut(session)
        return lines, [str(p) for p in problems], purged

    count, problems, purged = run(_with_db(settings, check))
    if problems:
        for problem in problems:
            click.echo(f"TAMPERED {problem}")
        sys.exit(1)
    click.echo(f"audit log intact: {count} lines")
    if purged is not None:
        click.echo(
            f"checked from line {purged.first_seq}: the lines before it were past their "
            f"retention and removed by the purge on {purged.at:%Y-%m-%d} (recorded in line "
            f"{purged.seq})"
        )


@main.group()
def outbox() -> None:
    """Outbound deliveries (e-mails, notices, webhooks)."""


@outbox.command("list")
@click.option(
    "--status",
    default=DEAD,
    show_default=True,
    type=click.Choice(["pending", "delivering", "delivered", "dead"]),
)
@handle_errors
def outbox_list(status: str) -> None:
    """List outbox entries by status (dead-lettered by default)."""
    settings = load_settings()

    async def rows(db: Database) -> list[str]:
        async with db.transaction() as session:
            return [
                f"{e.id}  {e.kind:<24} attempts={e.attempts}  updated={e.updated_at:%Y-%m-%d %H:%M}"
                f"  {e.last_error or ''}"
                for e in await entries_by_status(session, status)
            ]

    lines = run(_with_db(settings, rows))
    click.echo("\n".join(lines) if lines else f"no {status} entries")


@outbox.command("retry")
@click.argument("entry_id")
@handle_errors
def outbox_retry(entry_id: str) -> None:
    """Put a dead-lettered entry back in the queue."""
    settings = load_settings()

    async def retry(db: Database) -> None:
        async with db.transaction() as session:
            await retry_dead(session, SystemClock(), entry_id)

    run(_with_db(settings, retry))
    click.echo(f"{entry_id} queued again")


if __name__ == "__main__":
    main()
