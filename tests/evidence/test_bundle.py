"""Evidence bundles: a case exported to a signed zip, checked offline; every tampering is named.

Bundles are tampered with as someone holding the zip would: by rewriting it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.service import start_chat
from helpline.core.clock import FrozenClock
from helpline.core.crypto import (
    Keyring,
    MasterKeys,
    Signer,
    b64url,
    case_scope,
    ensure_signing_key,
    public_jwk,
)
from helpline.core.db import Database
from helpline.core.ids import new_id
from helpline.evidence import custody
from helpline.evidence.bundle import ExportError, export_case, verify_bundle
from helpline.evidence.models import CustodyEntry, EvidenceItem, ItemKind, ItemStatus
from helpline.evidence.vault import Vault
from tests.evidence.conftest import Blobs

TABLE = "evidence_items"


@dataclass
class Exported:
    case_id: str
    reference: str
    signer: Signer
    contents: dict[str, bytes]  # item id -> original bytes, for the stored items
    items: dict[str, str] = field(default_factory=dict)  # label -> item id


async def _chunks(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def make_case(
    db: Database, keyring: Keyring, vault: Vault, master: MasterKeys, clock: FrozenClock
) -> Exported:
    """A case with a photo and a text file in the vault, a URL recorded without a snapshot and a
    destroyed item; each with its custody entries."""
    photo = b"\xff\xd8\xff\xe0" + os.urandom(300_000)
    note = "Bericht van de dader, één keer bewaard op 1 januari.\n".encode() * 50
    async with db.transaction() as session:
        signer = await ensure_signing_key(session, master, clock)
        receipt = await start_chat(session, clock, language="nl", topic=None)
        case_id = receipt.case.id
        cipher = await keyring.cipher(session, case_scope(case_id))
        exported = Exported(case_id, receipt.case.reference, signer, {})
        specs: list[tuple[str, str, str, bytes | None, str | None, str | None]] = [
            ("photo", "image/jpeg", ItemStatus.stored, photo, "scherm afbeelding 1.jpg", None),
            ("note", "text/plain", ItemStatus.stored, note, "chat.txt", "https://example.org/p/1"),
            ("url", "", ItemStatus.recorded, None, None, "https://example.org/p/2?x=ä"),
            ("gone", "image/png", ItemStatus.destroyed, None, "kind.png", None),
        ]
        for label, media_type, status, data, filename, source_url in specs:
            clock.advance(minutes=1)
            item = EvidenceItem(
                id=new_id(),
                case_id=case_id,
                kind=ItemKind.url if label == "url" else ItemKind.file,
                status=status,
                media_type=media_type or None,
                captured_at=clock.now(),
                captured_by="victim" if label != "note" else "staff:" + "7" * 32,
                channel="chat",
            )
            if data is not None:
                blob = await vault.store(
                    _chunks(data), cipher.derive("evidence"), max_bytes=10_000_000
                )
                item.blob_name, item.size, item.sha256 = blob.name, blob.size, blob.sha256
                exported.contents[item.id] = data
            if label == "photo":
                item.pdq, item.pdq_quality = "f" * 64, 87
            for name, value in (("filename", filename), ("source_url", source_url)):
                if value is not None:
                    setattr(
                        item, name, cipher.encrypt(value, table=TABLE, row_id=item.id, field=name)
                    )
            session.add(item)
            await session.flush()
            exported.items[label] = item.id
            await custody.append(
                session, signer, clock, item_id=item.id, actor=item.captured_by,
                event="captured", details={"sha256": item.sha256, "channel": "chat"},
            )  # fmt: skip
            if label == "photo":
                await custody.append(
                    session, signer, clock, item_id=item.id, actor="staff:" + "7" * 32,
                    event="previewed",
                )  # fmt: skip
            if label == "gone":
                for event in ("marked_minor", "destroyed"):
                    await custody.append(
                        session, signer, clock, item_id=item.id, actor="staff:" + "7" * 32,
                        event=event,
                    )  # fmt: skip
    return exported


@pytest.fixture
def vault(paired_blobs: Blobs) -> Vault:
    """The data directory with SQLite, a bucket with PostgreSQL (tests/evidence/conftest.py)."""
    return Vault(paired_blobs.backend)


@pytest.fixture
async def bundle(
    db: Database,
    keyring: Keyring,
    vault: Vault,
    master: MasterKeys,
    clock: FrozenClock,
    tmp_path: Path,
) -> tuple[Path, Exported]:
    exported = await make_case(db, keyring, vault, master, clock)
    clock.advance(hours=2)
    out = tmp_path / "out" / "bundle.zip"
    out.parent.mkdir()
    async with db.transaction() as session:
        await export_case(
            session, keyring, vault, exported.signer, clock,
            case_id=exported.case_id, out=out, actor="staff:" + "9" * 32,
        )  # fmt: skip
    return out, exported


def manifest_of(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        result: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return result


def rewrite(
    source: Path,
    target: Path,
    change: Callable[[str, bytes], bytes | None] = lambda _name, data: data,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A copy of a zip with each entry passed through `change` (None drops it), plus `extra`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info))
            if data is not None:
                new.writestr(info, data)
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return target


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def sign(manifest: dict[str, Any], signer: Signer) -> tuple[bytes, bytes]:
    """Manifest bytes and a manifest.sig for them, as a forger would make them."""
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    signature = {"alg": "Ed25519", "kid": signer.kid, "signature": b64url(signer.sign(data))}
    return data, json.dumps(signature).encode()


# ---------------------------------------------------------------- an intact bundle


async def test_an_exported_bundle_is_complete_and_verifies(
    db: Database, bundle: tuple[Path, Exported]
) -> None:
    path, exported = bundle
    assert verify_bundle(path) == []
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(path.parent) == ["bundle.zip"]  # no temporary left over
    photo, note, url, gone = (exported.items[k] for k in ("photo", "note", "url", "gone"))

    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert names == {
            f"files/{photo}.jpg",
            f"files/{note}.txt",
            "manifest.json",
            "manifest.sig",
            "public-key.json",
        }
        assert archive.read(f"files/{photo}.jpg") == exported.contents[photo]
        assert archive.read(f"files/{note}.txt") == exported.contents[note]
        signature = json.loads(archive.read("manifest.sig"))
        keys = json.loads(archive.read("public-key.json"))["keys"]
    assert signature["kid"] == exported.signer.kid
    assert keys == [
        public_jwk(exported.signer.kid, exported.signer.public_key.public_bytes_raw(), "current")
    ]

    manifest = manifest_of(path)
    assert manifest["case"]["reference"] == exported.reference
    assert manifest["exported_by"] == "staff:" + "9" * 32
    assert manifest["exported_at"] == "2026-01-01T11:04:00+00:00"
    by_id = {item["id"]: item for item in manifest["items"]}
    assert list(by_id) == [photo, note, url, gone]  # in order of capture
    assert by_id[photo] | {"custody": None} == {
        "id": photo,
        "kind": "file",
        "status": "stored",
        "media_type": "image/jpeg",
        "size": len(exported.contents[photo]),
        "sha256": hashlib.sha256(exported.contents[photo]).hexdigest(),
        "pdq": "f" * 64,
        "pdq_quality": 87,
        "possible_minor": False,
        "captured_at": "2026-01-01T09:01:00+00:00",
        "captured_by": "victim",
        "channel": "chat",
        "destroyed_at": None,
        "filename": "scherm afbeelding 1.jpg",
        "source_url": None,
        "snapshot": None,
        "path": f"files/{photo}.jpg",
        "custody": None,
    }
    assert by_id[note]["source_url"] == "https://example.org/p/1"
    assert by_id[url]["source_url"] == "https://example.org/p/2?x=ä"
    assert by_id[url]["path"] is None and by_id[gone]["path"] is None
    assert by_id[gone]["filename"] == "kind.png"
    assert [e["event"] for e in by_id[photo]["custody"]] == ["captured", "previewed", "exported"]
    assert [e["event"] for e in by_id[gone]["custody"]] == [
        "captured",
        "marked_minor",
        "destroyed",
        "exported",
    ]
    last = by_id[photo]["custody"][-1]
    assert last["details"] == {"export": manifest["export"], "file": True}
    assert by_id[url]["custody"][-1]["details"] == {"export": manifest["export"], "file": False}

    # the export is in the custody log in the database too, and the chain there is intact
    async with db.transaction() as session:
        rows = (await session.execute(select(CustodyEntry))).scalars().all()
    keys_by_kid = {exported.signer.kid: exported.signer.public_key.public_bytes_raw()}
    assert custody.check_chain(rows, keys_by_kid) == []
    assert sum(row.event == "exported" for row in rows) == 4


async def test_progress_counts_items(
    db: Database,
    keyring: Keyring,
    vault: Vault,
    master: MasterKeys,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    exported = await make_case(db, keyring, vault, master, clock)
    calls: list[tuple[int, int]] = []
    async with db.transaction() as session:
        await export_case(
            session, keyring, vault, exported.signer, clock, case_id=exported.case_id,
            out=tmp_path / "b.zip", actor="system:cli",
            progress=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert verify_bundle(tmp_path / "b.zip") == []


# ---------------------------------------------------------------- tampering


async def test_a_changed_byte_in_a_file_is_named(
    bundle: tuple[Path, Exported], tmp_path: Path
) -> None:
    path, exported = bundle
    photo = f"files/{exported.items['photo']}.jpg"
    changed = rewrite(path, tmp_path / "t.zip", lambda n, d: flip(d, 1000) if n == photo else d)
    assert verify_bundle(changed) == [f"{photo}: sha256 does not match the manifest"]

    longer = rewrite(path, tmp_path / "u.zip", lambda n, d: d + b"\0" if n == photo else d)
    size = len(exported.contents[exported.items["photo"]])
    assert verify_bundle(longer) == [
        f"{photo}: size more than {size} does not match the manifest ({size})"
    ]


async def test_a_byte_flipped_inside_the_zip_itself_is_named(
    bundle: tuple[Path, Exported], tmp_path: Path
) -> None:
    path, exported = bundle
    note = f"files/{exported.items['note']}.txt"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(note)
    raw = bytearray(path.read_bytes())
    # the local header is 30 bytes plus the name and extra field; then the stored content
    with path.open("rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = (int.from_bytes(handle.read(2), "little") for _ in range(2))
    raw[info.header_offset + 30 + name_length + extra_length + 100] ^= 0x20
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    found = verify_bundle(damaged)
    assert len(found) == 1 and found[0].startswith(f"{note}: "), found


async def test_a_changed_byte_in_the_manifest_is_named(
    bundle: tuple[Path, Exported], tmp_path: Path
) -> None:
    path, exported = bundle

    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        at = data.index(exported.reference.encode()) + 2
        return flip(data, at)

    assert verify_bundle(rewrite(path, tmp_path / "t.zip", change)) == [
        "manifest.json: signature does not verify (changed after export)"
    ]


async def test_a_removed_file_is_named(bundle: tuple[Path, Exported], tmp_path: Path) -> None:
    path, exported = bundle
    note = f"files/{exported.items['note']}.txt"
    removed = rewrite(path, tmp_path / "t.zip", lambda n, d: None if n == note else d)
    assert verify_bundle(removed) == [f"{note}: listed in the manifest but missing"]

    no_key = rewrite(path, tmp_path / "u.zip", lambda n, d: None if n == "public-key.json" else d)
    assert "public-key.json: missing from the bundle" in verify_bundle(no_key)


async def test_an_unlisted_file_is_named(bundle: tuple[Path, Exported], tmp_path: Path) -> None:
    path, _ = bundle
    added = rewrite(path, tmp_path / "t.zip", extra={"files/extra.jpg": b"\xff\xd8\xff\xe0"})
    assert verify_bundle(added) == ["files/extra.jpg: not listed in the manifest"]


async def test_unsafe_paths_are_refused(bundle: tuple[Path, Exported], tmp_path: Path) -> None:
    path, _ = bundle
    extra = {"../evil.sh": b"x", "/etc/cron.d/x": b"x", "files/../../x": b"x", "C:/x": b"x"}
    with pytest.warns(UserWarning, match="Duplicate name"):
        unsafe = rewrite(path, tmp_path / "t.zip", extra=extra | {"manifest.sig": b"{}"})
    assert verify_bundle(unsafe) == [
        "'../evil.sh': unsafe path in the zip (refused)",
        "'/etc/cron.d/x': unsafe path in the zip (refused)",
        "'C:/x': unsafe path in the zip (refused)",
        "'files/../../x': unsafe path in the zip (refused)",
        "manifest.sig: appears 2 times in the zip",
        "manifest.sig: cannot be read ('kid')",
    ]


async def test_a_custody_entry_altered_and_the_manifest_re_signed_is_named(
    bundle: tuple[Path, Exported], tmp_path: Path
) -> None:
    path, exported = bundle
    photo = exported.items["photo"]
    forger = Signer("forger0000000000", Ed25519PrivateKey.generate())
    forger_jwk = public_jwk(forger.kid, forger.public_key.public_bytes_raw(), "current")
    real = {exported.signer.kid: exported.signer.public_key.public_bytes_raw()}

    def forge(*, rehash: bool, add_key: bool) -> Path:
        manifest = manifest_of(path)
        item = next(item for item in manifest["items"] if item["id"] == photo)
        entry = item["custody"][0]
        entry["details"]["channel"] = "console"
        if rehash:
            entry["hash"] = custody.entry_hash(
                photo, 1, entry["at"], entry["actor"], entry["event"], entry["details"],
                entry["prev_hash"],
            )  # fmt: skip
            entry["kid"] = forger.kid
            entry["signature"] = b64url(forger.sign(entry["hash"].encode()))
        manifest_bytes, signature = sign(manifest, forger)
        replaced = {"manifest.json": manifest_bytes, "manifest.sig": signature}
        if add_key:
            keys = json.loads(zipfile.ZipFile(path).read("public-key.json"))
            replaced["public-key.json"] = json.dumps({"keys": [*keys["keys"], forger_jwk]}).encode()
        return rewrite(
            path, tmp_path / f"forged-{rehash}-{add_key}.zip", lambda n, d: replaced.get(n, d)
        )

    # the forger's key is not in the bundle: the manifest's signature fails, and the entry
    assert verify_bundle(forge(rehash=False, add_key=False)) == [
        "manifest.sig: signed with key 'forger0000000000', which is not a known key",
        f"item {photo} entry 1: hash does not match its content",
    ]
    # with the forger's key slipped into public-key.json, the entry is still named
    assert verify_bundle(forge(rehash=False, add_key=True)) == [
        f"item {photo} entry 1: hash does not match its content",
    ]
    # rehashed and re-signed as well: the chain breaks right after it
    forged = forge(rehash=True, add_key=True)
    assert verify_bundle(forged) == [f"item {photo} entry 2: does not follow entry 1"]
    # and against the helpline's published key, both signatures are refused
    assert verify_bundle(forged, trusted_keys=real) == [
        "manifest.sig: signed with key 'forger0000000000', which is not a known key",
        f"item {photo} entry 1: signed with key 'forger0000000000', which is not a known key",
    ]


async def test_a_log_cut_short_is_named(bundle: tuple[Path, Exported], tmp_path: Path) -> None:
    path, exported = bundle
    photo = exported.items["photo"]
    forger = Signer(exported.signer.kid, Ed25519PrivateKey.generate())
    manifest = manifest_of(path)
    item = next(item for item in manifest["items"] if item["id"] == photo)
    del item["custody"][-1]
    manifest_bytes, signature = sign(manifest, forger)
    cut = rewrite(
        path,
        tmp_path / "cut.zip",
        lambda n, d: {"manifest.json": manifest_bytes, "manifest.sig": signature}.get(n, d),
    )
    assert verify_bundle(cut) == [
        "manifest.json: signature does not verify (changed after export)",
        f"item {photo}: custody log does not end with this export",
    ]


async def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    found = verify_bundle(path)
    assert len(found) == 1 and "not a readable zip file" in found[0]


# ---------------------------------------------------------------- failure


class FailingVault:
    """The real vault, failing after the first chunk of the second file."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.files = 0

    async def read(self, name: str, key: bytes) -> AsyncIterator[bytes]:
        self.files += 1
        count = 0
        async for chunk in self.vault.read(name, key):
            yield chunk
            count += 1
            if self.files == 2 and count == 1:
                raise OSError("disk gone")


async def test_nothing_partial_is_left_when_the_vault_fails(
    db: Database,
    keyring: Keyring,
    vault: Vault,
    master: MasterKeys,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    exported = await make_case(db, keyring, vault, master, clock)
    folder = tmp_path / "out"
    folder.mkdir()
    failing = FailingVault(vault)
    with pytest.raises(OSError, match="disk gone"):
        async with db.transaction() as session:
            await export_case(
                session, keyring, failing, exported.signer, clock,
                case_id=exported.case_id, out=folder / "bundle.zip", actor="system:cli",
            )  # fmt: skip
    assert failing.files == 2
    assert os.listdir(folder) == []
    async with db.transaction() as session:
        events = (await session.execute(select(col(CustodyEntry.event)))).scalars().all()
    assert "exported" not in events


async def test_a_blob_that_does_not_match_its_hash_is_not_exported(
    db: Database,
    keyring: Keyring,
    vault: Vault,
    master: MasterKeys,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    exported = await make_case(db, keyring, vault, master, clock)
    async with db.transaction() as session:
        item = await session.get(EvidenceItem, exported.items["note"])
        assert item is not None
        item.sha256 = "0" * 64
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ExportError, match="another hash than at capture"):
        async with db.transaction() as session:
            await export_case(
                session, keyring, vault, exported.signer, clock,
                case_id=exported.case_id, out=folder / "b.zip", actor="system:cli",
            )  # fmt: skip
    assert os.listdir(folder) == []


async def test_exports_of_two_cases_at_once(
    db: Database,
    keyring: Keyring,
    vault: Vault,
    master: MasterKeys,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    cases = [await make_case(db, keyring, vault, master, clock) for _ in range(2)]

    async def export(n: int) -> list[str]:
        out = tmp_path / f"case-{n}.zip"
        async with db.transaction() as session:
            await export_case(
                session, keyring, vault, cases[n].signer, clock,
                case_id=cases[n].case_id, out=out, actor="system:cli",
            )  # fmt: skip
        return verify_bundle(out)

    assert list(await asyncio.gather(export(0), export(1))) == [[], []]
