"""Envelope encryption, master keys, key rotation, crypto-shredding and signatures.

Everything that touches a database runs on SQLite and PostgreSQL, on real rows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import text
from sqlalchemy.engine import make_url

from helpline.core.clock import FrozenClock
from helpline.core.config import ConfigError, Settings
from helpline.core.crypto import (
    DecryptionError,
    Keyring,
    KeyShredded,
    MasterKeys,
    b64e,
    canonical_json,
    case_scope,
    ensure_signing_key,
    kek_id_of,
    load_signer,
    published_keys,
    read_key_file,
    replace_key_file,
    rotate_master_key,
    verify_signature,
    write_new_key_file,
)
from helpline.core.db import Database
from helpline.core.ids import new_id
from helpline.core.models import OutboxEntry
from helpline.core.outbox import enqueue

KEY_A = bytes(range(100, 132))
KEY_B = bytes(range(200, 232))


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def open_sealed(key: bytes, blob: bytes, context: bytes) -> bytes:
    """Opens a sealed value by its documented layout (version byte, 12-byte nonce, AES-GCM),
    independently of the code under test: pins the stored format, which old data depends on."""
    assert blob[:1] == b"\x01"
    return AESGCM(key).decrypt(blob[1:13], blob[13:], context)


async def case_payload(db: Database, keyring: Keyring, entry_id: str) -> dict[str, Any]:
    """Decrypt an outbox entry's payload in a fresh transaction, as a reader would."""
    async with db.transaction() as session:
        entry = await session.get(OutboxEntry, entry_id)
        assert entry is not None
        cipher = await keyring.cipher(session, entry.key_scope, create=False)
    result: dict[str, Any] = json.loads(
        cipher.decrypt(entry.payload, table="outbox", row_id=entry_id, field="payload")
    )
    return result


async def raw_payloads(db: Database) -> dict[str, bytes]:
    async with db.transaction() as session:
        rows = (await session.execute(text("SELECT id, payload FROM outbox"))).all()
    return {row[0]: bytes(row[1]) for row in rows}


async def raw_data_keys(db: Database) -> dict[str, tuple[str, bytes]]:
    async with db.transaction() as session:
        rows = (
            await session.execute(text("SELECT scope, kek_id, wrapped_key FROM data_keys"))
        ).all()
    return {row[0]: (row[1], bytes(row[2])) for row in rows}


def postgresql_only(db: Database) -> None:
    if not db.is_postgresql:
        pytest.skip("a race between transactions needs PostgreSQL (SQLite serialises writers)")


# ---------------------------------------------------------------- field encryption


async def test_a_field_round_trips_and_decrypts_only_in_its_own_place(
    db: Database, keyring: Keyring
) -> None:
    case_id = new_id()
    row_id = new_id()
    async with db.transaction() as session:
        cipher = await keyring.case_cipher(session, case_id)
    blob = cipher.encrypt("Ahmed, +44 7700 900123", table="messages", row_id=row_id, field="body")
    again = cipher.encrypt("Ahmed, +44 7700 900123", table="messages", row_id=row_id, field="body")

    assert b"Ahmed" not in blob and b"7700" not in blob
    assert blob != again  # a fresh nonce each time: equal values do not look equal
    assert (
        cipher.decrypt_text(blob, table="messages", row_id=row_id, field="body")
        == "Ahmed, +44 7700 900123"
    )
    place = {"table": "messages", "row_id": row_id, "field": "body"}
    for moved in (
        {**place, "row_id": new_id()},
        {**place, "table": "notes"},
        {**place, "field": "subject"},
    ):
        with pytest.raises(DecryptionError):
            cipher.decrypt(blob, **moved)


async def test_tampered_or_truncated_ciphertexts_do_not_decrypt(
    db: Database, keyring: Keyring
) -> None:
    async with db.transaction() as session:
        cipher = await keyring.case_cipher(session, new_id())
    place = {"table": "messages", "row_id": "r1", "field": "body"}
    blob = cipher.encrypt("a value", **place)
    # flip one bit in the version byte, the nonce, the sealed value and the tag
    for position in (0, 5, 14, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            cipher.decrypt(bytes(tampered), **place)
    for truncated in (b"", blob[:1], blob[:13], blob[:20], blob[:-1]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(truncated, **place)


async def test_a_ciphertext_copied_into_another_row_does_not_decrypt(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    scope = case_scope(new_id())
    async with db.transaction() as session:
        first = await enqueue(
            session, keyring, clock, kind="test.note", payload={"n": 1}, key_scope=scope
        )
        second = await enqueue(
            session, keyring, clock, kind="test.note", payload={"n": 2}, key_scope=scope
        )
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE outbox SET payload = (SELECT payload FROM outbox WHERE id = :a) "
                "WHERE id = :b"
            ),
            {"a": first.id, "b": second.id},
        )
    assert (await raw_payloads(db))[second.id] == (await raw_payloads(db))[first.id]
    assert await case_payload(db, keyring, first.id) == {"n": 1}
    with pytest.raises(DecryptionError):
        await case_payload(db, keyring, second.id)


# ---------------------------------------------------------------- data keys


async def test_one_data_key_per_case_made_on_demand_and_stored_wrapped(
    db: Database, keyring: Keyring, master: MasterKeys
) -> None:
    case_id = new_id()
    scope = case_scope(case_id)
    async with db.transaction() as session:
        with pytest.raises(KeyShredded):  # not made when the caller only wants to read
            await keyring.cipher(session, scope, create=False)
    assert scope not in await raw_data_keys(db)

    async with db.transaction() as session:
        cipher = await keyring.case_cipher(session, case_id)
        assert await keyring.case_cipher(session, case_id) is cipher
    blob = cipher.encrypt("value", table="t", row_id="r", field="f")
    async with db.transaction() as session:  # a later transaction finds the same key
        later = await keyring.case_cipher(session, case_id)
    assert later.decrypt_text(blob, table="t", row_id="r", field="f") == "value"

    stored = await raw_data_keys(db)
    assert list(stored) == [scope]
    kek_id, wrapped = stored[scope]
    assert kek_id == master.current_id == kek_id_of(master.keys[master.current_id])
    data_key = open_sealed(master.keys[kek_id], wrapped, f"helpline/dek/v1|{scope}".encode())
    assert len(data_key) == 32
    assert data_key not in wrapped
    # the unwrapped key really is the one that encrypted the value
    opened = open_sealed(data_key, blob, b"helpline/field/v1|t|r|f")
    assert opened == b"value"


async def test_two_cases_get_different_keys(db: Database, keyring: Keyring) -> None:
    async with db.transaction() as session:
        one = await keyring.case_cipher(session, new_id())
        other = await keyring.case_cipher(session, new_id())
    blob = one.encrypt("value", table="t", row_id="r", field="f")
    with pytest.raises(DecryptionError):
        other.decrypt(blob, table="t", row_id="r", field="f")
    assert one.derive("evidence") != other.derive("evidence")
    wrapped = [w for _, w in (await raw_data_keys(db)).values()]
    assert len(wrapped) == 2 and wrapped[0] != wrapped[1]


async def test_a_wrapped_key_copied_to_another_case_does_not_open(
    db: Database, keyring: Keyring
) -> None:
    one, other = case_scope(new_id()), case_scope(new_id())
    async with db.transaction() as session:
        await keyring.cipher(session, one)
        await keyring.cipher(session, other)
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE data_keys SET wrapped_key = (SELECT wrapped_key FROM data_keys "
                "WHERE scope = :one) WHERE scope = :other"
            ),
            {"one": one, "other": other},
        )
    async with db.transaction() as session:
        await keyring.cipher(session, one)
        with pytest.raises(DecryptionError):
            await keyring.cipher(session, other)


async def test_concurrent_first_use_of_a_case_key_agrees_on_one_key(
    db: Database, keyring: Keyring
) -> None:
    postgresql_only(db)
    scope = case_scope(new_id())
    writers = 6
    barrier = asyncio.Barrier(writers)

    async def first_use(n: int) -> bytes:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))  # each holds its own connection
            await barrier.wait()  # all look for the key before any has stored one
            cipher = await keyring.cipher(session, scope)
            return cipher.encrypt(f"value {n}", table="t", row_id=str(n), field="f")

    blobs = await asyncio.gather(*(first_use(n) for n in range(writers)))
    assert list(await raw_data_keys(db)) == [scope]
    async with db.transaction() as session:
        cipher = await keyring.cipher(session, scope, create=False)
    for n, blob in enumerate(blobs):
        assert cipher.decrypt_text(blob, table="t", row_id=str(n), field="f") == f"value {n}"


# ---------------------------------------------------------------- crypto-shredding


async def test_shredding_a_case_leaves_its_rows_unreadable_and_other_cases_readable(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    shredded_case, kept_case = new_id(), new_id()
    async with db.transaction() as session:
        doomed = [
            await enqueue(
                session,
                keyring,
                clock,
                kind="test.mail",
                payload={"to": f"victim{n}@example.org"},
                key_scope=case_scope(shredded_case),
            )
            for n in range(2)
        ]
        # a field encrypted with the case cipher straight into a row
        cipher = await keyring.case_cipher(session, shredded_case)
        direct_id = new_id()
        session.add(
            OutboxEntry(
                id=direct_id,
                kind="test.direct",
                idempotency_key=f"direct:{direct_id}",
                key_scope=case_scope(shredded_case),
                payload=cipher.encrypt(
                    json.dumps({"to": "direct@example.org"}),
                    table="outbox",
                    row_id=direct_id,
                    field="payload",
                ),
                next_attempt_at=clock.now(),
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
        kept = await enqueue(
            session,
            keyring,
            clock,
            kind="test.mail",
            payload={"to": "other@example.org"},
            key_scope=case_scope(kept_case),
        )
    doomed_ids = [e.id for e in doomed] + [direct_id]
    for entry_id in doomed_ids:  # readable before
        assert "@example.org" in (await case_payload(db, keyring, entry_id))["to"]
    before = await raw_payloads(db)

    async with db.transaction() as session:
        assert await keyring.shred(session, case_scope(shredded_case)) is True
    async with db.transaction() as session:
        assert await keyring.shred(session, case_scope(shredded_case)) is False

    after = await raw_payloads(db)
    assert after == before  # the rows are all still there, untouched
    assert case_scope(shredded_case) not in await raw_data_keys(db)
    for entry_id in doomed_ids:
        with pytest.raises(KeyShredded):
            await case_payload(db, keyring, entry_id)
    assert await case_payload(db, keyring, kept.id) == {"to": "other@example.org"}

    # a new key made for the scope afterwards does not bring the old data back
    async with db.transaction() as session:
        fresh = await keyring.case_cipher(session, shredded_case)
    for entry_id in doomed_ids:
        with pytest.raises(DecryptionError):
            fresh.decrypt(after[entry_id], table="outbox", row_id=entry_id, field="payload")


async def test_a_shredded_key_leaves_no_copy_in_the_sqlite_file(
    sqlite_url: str, keyring: Keyring
) -> None:
    """A wrapped key left on a free page opens again with the master key: SQLite must overwrite
    deleted content (secure_delete), or shredding shreds nothing."""
    db = Database(sqlite_url)
    scopes = [case_scope(f"shred{n:02d}") for n in range(20)]
    async with db.transaction() as session:
        for scope in scopes:
            await keyring.cipher(session, scope)
    wrapped = {scope: blob for scope, (_, blob) in (await raw_data_keys(db)).items()}
    async with db.transaction() as session:
        await keyring.shred(session, scopes[7])
    await db.dispose()
    path = Path(str(make_url(sqlite_url).database))
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))
    assert wrapped[scopes[8]] in raw  # the scan sees keys that are still there
    assert wrapped[scopes[7]] not in raw


async def test_shredding_inside_a_session_forgets_the_cached_key(
    db: Database, keyring: Keyring
) -> None:
    scope = case_scope(new_id())
    async with db.transaction() as session:
        await keyring.cipher(session, scope)
        await keyring.shred(session, scope)
        with pytest.raises(KeyShredded):
            await keyring.cipher(session, scope, create=False)


# ---------------------------------------------------------------- the marker (issue 2, done when)


async def _write_marker_rows(
    db: Database, keyring: Keyring, clock: FrozenClock, marker: str, controls: tuple[str, str]
) -> list[str]:
    """The marker through the real code paths, encrypted; the controls in plain text."""
    case_id = new_id()
    in_text_column, in_binary_column = controls
    async with db.transaction() as session:
        queued = await enqueue(
            session,
            keyring,
            clock,
            kind="test.marker",
            payload={"message": f"please remove {marker}"},
            key_scope=case_scope(case_id),
            idempotency_key=in_text_column,  # stored as it is: found by the scan
        )
        cipher = await keyring.case_cipher(session, case_id)
        direct_id, plain_id = new_id(), new_id()
        for row_id, payload in (
            (direct_id, cipher.encrypt(marker, table="outbox", row_id=direct_id, field="payload")),
            (plain_id, in_binary_column.encode()),  # not encrypted: found by the scan
        ):
            session.add(
                OutboxEntry(
                    id=row_id,
                    kind="test.marker",
                    idempotency_key=f"test:{row_id}",
                    key_scope=case_scope(case_id),
                    payload=payload,
                    next_attempt_at=clock.now(),
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )
    return [queued.id, direct_id]


async def _postgresql_rows_as_text(db: Database) -> tuple[list[str], str]:
    """Every row of every table, as PostgreSQL renders it as text."""
    rows: list[str] = []
    async with db.transaction() as session:
        query = text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = list((await session.execute(query)).scalars().all())
        for table in tables:
            result = await session.execute(text(f'SELECT t::text FROM "{table}" t'))
            rows.extend(result.scalars().all())
    return tables, "\n".join(rows)


async def test_an_encrypted_marker_leaves_no_plaintext_in_the_database(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    marker = f"MARKER-{uuid.uuid4().hex}"
    controls = (f"CONTROL-TEXT-{uuid.uuid4().hex}", f"CONTROL-BLOB-{uuid.uuid4().hex}")
    queued_id, direct_id = await _write_marker_rows(db, keyring, clock, marker, controls)

    # it was really written, and reads back through the keyring
    assert marker in (await case_payload(db, keyring, queued_id))["message"]
    async with db.transaction() as session:
        direct = await session.get(OutboxEntry, direct_id)
        assert direct is not None
        cipher = await keyring.cipher(session, direct.key_scope, create=False)
    assert (
        cipher.decrypt_text(direct.payload, table="outbox", row_id=direct_id, field="payload")
        == marker
    )

    if db.is_postgresql:
        tables, dump = await _postgresql_rows_as_text(db)
        assert {"outbox", "data_keys", "audit_log"} <= set(tables)
        # bytea columns read as hex in text form: look for both spellings
        haystack = dump.encode()
        spellings: list[Callable[[str], bytes]] = [str.encode, lambda v: v.encode().hex().encode()]
    else:
        await db.dispose()  # the last connection checkpoints the WAL into the file
        path = Path(str(make_url(db.url).database))
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert path in files
        haystack = b"".join(p.read_bytes() for p in files)  # with any -wal or -journal
        spellings = [str.encode, lambda v: v.encode("utf-16-le")]

    def found(value: str) -> bool:
        return any(spell(value) in haystack for spell in spellings)

    assert all(found(control) for control in controls), "the scan does not see plain text"
    assert not found(marker)
    assert not found(marker.removeprefix("MARKER-"))


# ---------------------------------------------------------------- master keys from settings


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HELPLINE_MASTER_KEY", "HELPLINE_MASTER_KEY_FILE", "HELPLINE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def settings_with(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, **values)


@pytest.mark.usefixtures("no_key_env")
def test_a_base64_master_key_from_the_environment(tmp_path: Path) -> None:
    master = MasterKeys.from_settings(settings_with(tmp_path, master_key=b64e(KEY_A)))
    assert master.current_id == kek_id_of(KEY_A)
    assert master.keys == {kek_id_of(KEY_A): KEY_A}
    assert b64e(KEY_A) not in repr(master) and repr(KEY_A) not in repr(master)


@pytest.mark.usefixtures("no_key_env")
def test_several_master_keys_the_first_one_current(tmp_path: Path) -> None:
    value = f"{b64e(KEY_B)}, {b64e(KEY_A)},"
    master = MasterKeys.from_settings(settings_with(tmp_path, master_key=value))
    assert master.current_id == kek_id_of(KEY_B)
    assert master.keys == {kek_id_of(KEY_B): KEY_B, kek_id_of(KEY_A): KEY_A}


@pytest.mark.usefixtures("no_key_env")
@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (b64e(bytes(16)), "must be 32 bytes, got 16"),
        (b64e(bytes(33)), "must be 32 bytes, got 33"),
        ("not base64 at all!", "not valid base64"),
        (f"{b64e(KEY_A)},{b64e(KEY_B)[:-4]}", "must be 32 bytes"),
        (" , ", "empty"),
    ],
)
def test_a_bad_master_key_is_one_line_naming_the_variable(
    tmp_path: Path, value: str, complaint: str
) -> None:
    with pytest.raises(ConfigError) as error:
        MasterKeys.from_settings(settings_with(tmp_path, master_key=value))
    message = str(error.value)
    assert message.startswith("HELPLINE_MASTER_KEY:")
    assert complaint in message
    assert "\n" not in message and b64e(KEY_A) not in message


@pytest.mark.usefixtures("no_key_env")
def test_without_a_key_the_message_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        MasterKeys.from_settings(settings_with(tmp_path))
    message = str(error.value)
    assert message.startswith("HELPLINE_MASTER_KEY")
    assert "helpline keys init" in message
    assert str(tmp_path / "master.key") in message


# ---------------------------------------------------------------- the key file


@pytest.mark.usefixtures("no_key_env")
def test_a_new_key_file_is_private_never_overwritten_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    written = write_new_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()

    with pytest.raises(FileExistsError):
        write_new_key_file(path)
    assert path.read_bytes() == content

    read = read_key_file(path)
    assert (read.current_id, read.keys, read.source) == (written.current_id, written.keys, path)
    assert len(read.keys[read.current_id]) == 32
    from_settings = MasterKeys.from_settings(settings_with(tmp_path, master_key_file=path))
    assert from_settings.keys == written.keys
    # the environment key takes precedence over the file
    both = settings_with(tmp_path, master_key_file=path, master_key=b64e(KEY_A))
    assert MasterKeys.from_settings(both).current_id == kek_id_of(KEY_A)


def test_replacing_the_key_file_keeps_it_private_with_the_new_key_current(
    tmp_path: Path,
) -> None:
    path = tmp_path / "master.key"
    old = write_new_key_file(path)
    old_key = old.keys[old.current_id]
    replace_key_file(path, [KEY_B, old_key])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
    read = read_key_file(path)
    assert read.current_id == kek_id_of(KEY_B)
    assert read.keys == {kek_id_of(KEY_B): KEY_B, old.current_id: old_key}


@pytest.mark.parametrize(
    "content",
    ["", "not json", '{"current": "x", "keys": {}}', '{"current": "x", "keys": {"x": "AAAA"}}'],
)
def test_a_broken_key_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        read_key_file(path)
    assert "HELPLINE_MASTER_KEY_FILE" in str(error.value) or "key file" in str(error.value)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- rotation


async def _thirty_cases(db: Database, clock: FrozenClock) -> None:
    """30 case keys, one outbox entry each, and the signing key: all under KEY_A."""
    keyring = Keyring(MasterKeys.from_keys([KEY_A]), clock)
    async with db.transaction() as session:
        for n in range(30):
            await enqueue(
                session,
                keyring,
                clock,
                kind="test.rotate",
                payload={"n": n},
                key_scope=case_scope(f"rotate{n:02d}"),
            )
        await ensure_signing_key(session, keyring.master, clock)


async def _kek_ids(db: Database) -> tuple[list[str], list[str]]:
    async with db.transaction() as session:
        data = (await session.execute(text("SELECT kek_id FROM data_keys"))).scalars().all()
        signing = (await session.execute(text("SELECT kek_id FROM signing_keys"))).scalars().all()
    return list(data), list(signing)


async def _all_readable_with(db: Database, master: MasterKeys, clock: FrozenClock) -> None:
    keyring = Keyring(master, clock)
    payloads = await raw_payloads(db)
    assert len(payloads) == 30
    numbers = [(await case_payload(db, keyring, entry_id))["n"] for entry_id in payloads]
    assert sorted(numbers) == list(range(30))


async def test_rotation_rewraps_every_key_and_leaves_the_data_alone(
    db: Database, clock: FrozenClock
) -> None:
    await _thirty_cases(db, clock)
    async with db.transaction() as session:
        signer = await load_signer(session, MasterKeys.from_keys([KEY_A]))
    assert signer is not None
    document = {"notice": "N-1", "items": [1, 2]}
    signature = signer.sign_document(document)
    payloads_before = await raw_payloads(db)
    keys_before = await raw_data_keys(db)

    calls: list[tuple[int, int]] = []
    rotating = MasterKeys.from_keys([KEY_B, KEY_A])
    count = await rotate_master_key(
        db.sessionmaker, rotating, batch_size=7, progress=lambda d, t: calls.append((d, t))
    )

    assert count == 31  # 30 data keys and the signing key
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == 6
    data, signing = await _kek_ids(db)
    assert set(data) == {kek_id_of(KEY_B)} and len(data) == 30
    assert signing == [kek_id_of(KEY_B)]
    assert await raw_payloads(db) == payloads_before  # not one data byte changed
    keys_after = await raw_data_keys(db)
    assert all(keys_after[s][1] != keys_before[s][1] for s in keys_before)

    only_b = MasterKeys.from_keys([KEY_B])
    await _all_readable_with(db, only_b, clock)
    async with db.transaction() as session:
        rotated_signer = await load_signer(session, only_b)
    assert rotated_signer is not None and rotated_signer.kid == signer.kid
    assert rotated_signer.sign_document(document) == signature
    with pytest.raises(DecryptionError):  # the old key alone no longer opens anything
        await _all_readable_with(db, MasterKeys.from_keys([KEY_A]), clock)
    assert await rotate_master_key(db.sessionmaker, rotating, batch_size=7) == 0


class Interrupted(Exception):
    pass


async def test_an_interrupted_rotation_resumes_where_it_stopped(
    db: Database, clock: FrozenClock
) -> None:
    await _thirty_cases(db, clock)
    payloads_before = await raw_payloads(db)
    rotating = MasterKeys.from_keys([KEY_B, KEY_A])

    def crash_after_first_batch(done: int, total: int) -> None:
        if done:
            raise Interrupted

    with pytest.raises(Interrupted):
        await rotate_master_key(
            db.sessionmaker, rotating, batch_size=7, progress=crash_after_first_batch
        )
    data, signing = await _kek_ids(db)
    assert sorted(data).count(kek_id_of(KEY_B)) == 7 and data.count(kek_id_of(KEY_A)) == 23
    assert signing == [kek_id_of(KEY_A)]
    await _all_readable_with(db, rotating, clock)  # half-way is a consistent state

    assert await rotate_master_key(db.sessionmaker, rotating, batch_size=7) == 24
    data, signing = await _kek_ids(db)
    assert set(data) == {kek_id_of(KEY_B)} and signing == [kek_id_of(KEY_B)]
    assert await raw_payloads(db) == payloads_before
    await _all_readable_with(db, MasterKeys.from_keys([KEY_B]), clock)


# ---------------------------------------------------------------- signatures


async def test_the_signing_key_is_made_once_and_stored_wrapped(
    db: Database, master: MasterKeys, clock: FrozenClock
) -> None:
    async with db.transaction() as session:
        first = await ensure_signing_key(session, master, clock)
    async with db.transaction() as session:
        second = await ensure_signing_key(session, master, clock)
    assert first.kid == second.kid
    async with db.transaction() as session:
        rows = (
            await session.execute(
                text("SELECT kid, public_key, wrapped_private_key, kek_id, slot FROM signing_keys")
            )
        ).all()
    assert len(rows) == 1
    kid, public, wrapped, kek_id, slot = rows[0]
    assert (kid, slot, kek_id) == (first.kid, "current", master.current_id)
    private = open_sealed(
        master.keys[kek_id], bytes(wrapped), f"helpline/signing/v1|{kid}".encode()
    )
    assert private not in bytes(wrapped)
    derived = Ed25519PrivateKey.from_private_bytes(private).public_key()
    assert derived.public_bytes(Encoding.Raw, PublicFormat.Raw) == bytes(public)


async def test_concurrent_instances_make_one_signing_key(
    db: Database, master: MasterKeys, clock: FrozenClock
) -> None:
    postgresql_only(db)
    instances = 8
    barrier = asyncio.Barrier(instances)

    async def start_instance() -> str:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            await barrier.wait()
            return (await ensure_signing_key(session, master, clock)).kid

    kids = await asyncio.gather(*(start_instance() for _ in range(instances)))
    assert len(set(kids)) == 1
    async with db.transaction() as session:
        assert [k["kid"] for k in await published_keys(session)] == [kids[0]]


async def test_a_detached_signature_verifies_with_the_published_key(
    db: Database, master: MasterKeys, clock: FrozenClock
) -> None:
    async with db.transaction() as session:
        signer = await ensure_signing_key(session, master, clock)
        published = await published_keys(session)
    document = {"case": "HL-7Q2", "urls": ["https://example.org/a"], "note": "Zoë"}
    signature = signer.sign_document(document)
    assert (signature["alg"], signature["kid"]) == ("Ed25519", signer.kid)

    [jwk] = published
    assert (jwk["kid"], jwk["crv"], jwk["status"]) == (signer.kid, "Ed25519", "current")
    assert "d" not in jwk  # never the private half
    public = b64url_decode(jwk["x"])
    raw_signature = b64url_decode(signature["signature"])
    # key order does not matter: the canonical form is what is signed
    reordered = dict(reversed(list(document.items())))
    assert verify_signature(public, canonical_json(reordered), raw_signature)

    changed = {**document, "urls": ["https://example.org/b"]}
    assert not verify_signature(public, canonical_json(changed), raw_signature)
    other_key = (
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert not verify_signature(other_key, canonical_json(document), raw_signature)
    # malformed input from outside is simply not a valid signature
    assert not verify_signature(public, canonical_json(document), raw_signature[:-1])
    assert not verify_signature(public[:-1], canonical_json(document), raw_signature)


def test_master_keys_are_256_bit() -> None:
    with pytest.raises(ValueError):
        MasterKeys.from_keys([])
    with pytest.raises(ValueError):
        MasterKeys.from_keys([KEY_A, os.urandom(16)])
