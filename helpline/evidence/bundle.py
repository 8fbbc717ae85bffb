"""Evidence bundles: one zip per case that holds up without us.

A bundle holds `files/<item id><ext>` (the decrypted originals, bit-exact), `manifest.json`
(the case, every item with its hashes, times, source URL and full custody log),
`manifest.sig` (a detached Ed25519 signature over the exact bytes of manifest.json) and
`public-key.json` (the service's public keys as a JWK set). `verify_bundle` checks one
offline — no database, no app — and names each file or custody entry that fails.

The key in public-key.json travels with the bundle, so on its own it only proves that the
bundle is intact as signed; pass `trusted_keys` (the helpline's published keys, obtained
separately) to prove who signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.clock import Clock, as_utc
from helpline.core.crypto import (
    FieldCipher,
    Keyring,
    Signer,
    b64url,
    case_scope,
    published_keys,
    verify_signature,
)
from helpline.core.errors import HelplineError, NotFound
from helpline.core.ids import new_id, new_token
from helpline.evidence import custody
from helpline.evidence.models import CustodyEntry, EvidenceItem, ItemStatus

FORMAT = "helpline-evidence-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public-key.json"
FILES = "files/"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SMALL_FILE_BYTES = 1024 * 1024  # manifest.sig, public-key.json
READ_CHUNK = 1024 * 1024
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/html": ".html",
    "application/json": ".json",
    "application/warc": ".warc",
}
ITEMS_TABLE = "evidence_items"


class BlobReader(Protocol):
    """What export needs of the vault: the decrypted chunks of one blob."""

    def read(self, name: str, key: bytes, /) -> AsyncIterator[bytes]: ...


# passes on what was written to a streamed bundle so far (see `export_case_to`)
Drain = Callable[[], Awaitable[None]]


class ExportError(HelplineError):
    status = 500
    code = "export_failed"


def extension_for(media_type: str | None) -> str:
    if media_type is None:
        return ".bin"
    return EXTENSIONS.get(media_type.split(";", 1)[0].strip().lower(), ".bin")


def _zip_info(name: str, moment: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=moment)
    info.compress_type = zipfile.ZIP_STORED  # media is compressed already; keeps bytes exact
    info.external_attr = 0o100644 << 16
    return info


def _decrypted(cipher: FieldCipher, item: EvidenceItem, field: str) -> str | None:
    value: bytes | None = getattr(item, field)
    if value is None:
        return None
    plain = cipher.decrypt(value, table=ITEMS_TABLE, row_id=item.id, field=field)
    return plain.decode("utf-8", errors="replace")


def _has_file(item: EvidenceItem) -> bool:
    return item.status == ItemStatus.stored.value


async def _write_file(
    archive: zipfile.ZipFile,
    vault: BlobReader,
    key: bytes,
    item: EvidenceItem,
    moment: tuple[int, int, int, int, int, int],
    drain: Drain | None = None,
) -> str:
    """Stream one item's plaintext into the zip; returns its path there."""
    if item.blob_name is None:
        raise ExportError(f"item {item.id} is stored but has no blob")
    path = f"{FILES}{item.id}{extension_for(item.media_type)}"
    digest, size = hashlib.sha256(), 0
    with archive.open(_zip_info(path, moment), "w", force_zip64=True) as target:
        async for chunk in vault.read(item.blob_name, key):
            target.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if drain is not None:
                await drain()
    # The vault authenticates every chunk, so this is a bug or a changed row, never noise: a
    # bundle whose files contradict its own manifest must not be made.
    if size != item.size:
        raise ExportError(f"item {item.id}: the vault holds {size} bytes, not {item.size}")
    if digest.hexdigest() != item.sha256:
        raise ExportError(f"item {item.id}: its content has another hash than at capture")
    return path


def _item_document(
    item: EvidenceItem, cipher: FieldCipher, path: str | None, log: list[CustodyEntry]
) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "media_type": item.media_type,
        "size": item.size,
        "sha256": item.sha256,
        "pdq": item.pdq,
        "pdq_quality": item.pdq_quality,
        "possible_minor": item.possible_minor,
        "captured_at": as_utc(item.captured_at).isoformat(),
        "captured_by": item.captured_by,
        "channel": item.channel,
        "destroyed_at": as_utc(item.destroyed_at).isoformat() if item.destroyed_at else None,
        "filename": _decrypted(cipher, item, "filename"),
        "source_url": _decrypted(cipher, item, "source_url"),
        "snapshot": json.loads(snapshot)
        if (snapshot := _decrypted(cipher, item, "snapshot"))
        else None,
        "path": path,
        "custody": [custody.entry_document(entry) for entry in log],
    }


async def _case_items(
    session: AsyncSession, case_id: str, item_ids: Collection[str] | None
) -> tuple[Case, list[EvidenceItem]]:
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    query = (
        select(EvidenceItem)
        .where(col(EvidenceItem.case_id) == case_id)
        .order_by(col(EvidenceItem.captured_at), col(EvidenceItem.id))
    )
    if item_ids is not None:
        query = query.where(col(EvidenceItem.id).in_(list(item_ids)))
    items = list((await session.execute(query)).scalars().all())
    if item_ids is not None and {item.id for item in items} != set(item_ids):
        raise ExportError("an evidence item to export is not one of this case's")
    return case, items


async def _write_bundle(
    archive: zipfile.ZipFile,
    session: AsyncSession,
    keyring: Keyring,
    vault: BlobReader,
    signer: Signer,
    clock: Clock,
    *,
    case: Case,
    items: list[EvidenceItem],
    actor: str,
    progress: Callable[[int, int], None] | None,
    drain: Drain | None = None,
    case_document: dict[str, Any] | None = None,
) -> None:
    cipher = await keyring.cipher(session, case_scope(case.id))
    now = as_utc(clock.now())
    moment = (max(now.year, 1980), now.month, now.day, now.hour, now.minute, now.second)
    export_id = new_id()
    if progress:
        progress(0, len(items))
    paths: dict[str, str] = {}
    for done, item in enumerate(items, start=1):
        if _has_file(item):
            key = cipher.derive("evidence")
            paths[item.id] = await _write_file(archive, vault, key, item, moment, drain)
        if progress:
            progress(done, len(items))
    documents = []
    for item in items:
        await custody.append(
            session,
            signer,
            clock,
            item_id=item.id,
            actor=actor,
            event="exported",
            details={"export": export_id, "file": item.id in paths},
        )
        log = await custody.entries(session, item.id)
        documents.append(_item_document(item, cipher, paths.get(item.id), log))
    manifest = {
        "format": FORMAT,
        "export": export_id,
        "case": case_document or {"id": case.id, "reference": case.reference},
        "exported_at": now.isoformat(),
        "exported_by": actor,
        "items": documents,
    }
    manifest_bytes = _json_bytes(manifest)
    signature = {
        "alg": "Ed25519",
        "kid": signer.kid,
        "signature": b64url(signer.sign(manifest_bytes)),
    }
    keys = {"keys": await published_keys(session)}
    archive.writestr(_zip_info(MANIFEST, moment), manifest_bytes)
    archive.writestr(_zip_info(SIGNATURE, moment), _json_bytes(signature))
    archive.writestr(_zip_info(PUBLIC_KEY, moment), _json_bytes(keys))


async def export_case(
    session: AsyncSession,
    keyring: Keyring,
    vault: BlobReader,
    signer: Signer,
    clock: Clock,
    *,
    case_id: str,
    out: Path,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
    item_ids: Collection[str] | None = None,
) -> Path:
    """Write a case's evidence bundle to `out` (a zip, mode 0600) and return its path.

    Each item gets an "exported" custody entry (in the caller's transaction) before the
    manifest is written, so the bundle's logs include this export. File contents are streamed
    chunk by chunk; memory stays flat. The zip is written beside `out` under a temporary name
    and renamed at the end: on any failure nothing is left at `out` (the caller's rollback
    removes the custody entries). `progress(done, total)` counts items. `item_ids` limits
    the bundle to those items of the case (all of them by default).
    """
    case, items = await _case_items(session, case_id, item_ids)
    out = Path(out)
    temporary = out.with_name(f".{out.name}.{new_token(6)}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
                await _write_bundle(
                    archive,
                    session,
                    keyring,
                    vault,
                    signer,
                    clock,
                    case=case,
                    items=items,
                    actor=actor,
                    progress=progress,
                )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return out


class _Spool:
    """A write-only, unseekable file for zipfile: it keeps what was written until taken."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces.clear()
        return data


async def export_case_to(
    session: AsyncSession,
    keyring: Keyring,
    vault: BlobReader,
    signer: Signer,
    clock: Clock,
    *,
    case_id: str,
    write: Callable[[bytes], Awaitable[None]],
    actor: str,
    item_ids: Collection[str] | None = None,
    case_document: dict[str, Any] | None = None,
) -> None:
    """`export_case`, streamed: the zip's bytes are passed to `write` as they are made,
    never to a file (a handover packet spools them into the vault, encrypted). Memory stays
    flat: what zipfile wrote is passed on after every chunk of every file. `case_document`
    replaces the manifest's `case` (a handover names itself, never the victim's reference)."""
    case, items = await _case_items(session, case_id, item_ids)
    spool = _Spool()

    async def drain() -> None:
        data = spool.take()
        if data:
            await write(data)

    with zipfile.ZipFile(spool, "w", allowZip64=True) as archive:
        await _write_bundle(
            archive,
            session,
            keyring,
            vault,
            signer,
            clock,
            case=case,
            items=items,
            actor=actor,
            progress=None,
            drain=drain,
            case_document=case_document,
        )
    await drain()  # the central directory, written when the archive closed


def _json_bytes(document: Any) -> bytes:
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


# ---------------------------------------------------------------- verifying, offline


_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe(name: str) -> bool:
    """An entry name that could escape a directory it is extracted into."""
    if not name or name.startswith("/") or "\\" in name or _DRIVE.match(name) or "\x00" in name:
        return True
    return any(part == ".." for part in PurePosixPath(name).parts)


def _b64url_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _read_small(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    with archive.open(name) as source:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _bundle_keys(archive: zipfile.ZipFile, problems: list[str]) -> dict[str, bytes]:
    try:
        document = json.loads(_read_small(archive, PUBLIC_KEY, MAX_SMALL_FILE_BYTES))
        jwks = document["keys"]
        if not isinstance(jwks, list):
            raise TypeError("keys is not a list")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        problems.append(f"{PUBLIC_KEY}: cannot be read ({exc})")
        return {}
    keys: dict[str, bytes] = {}
    for jwk in jwks:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        raw = _b64url_decode(x) if isinstance(x, str) else None
        if isinstance(kid, str) and raw is not None and len(raw) == 32:
            keys[kid] = raw
    if not keys:
        problems.append(f"{PUBLIC_KEY}: holds no Ed25519 public key")
    return keys


def _check_signature(
    archive: zipfile.ZipFile, manifest_bytes: bytes, keys: Mapping[str, bytes]
) -> list[str]:
    try:
        document = json.loads(_read_small(archive, SIGNATURE, MAX_SMALL_FILE_BYTES))
        kid, text = document["kid"], document["signature"]
        if not isinstance(kid, str) or not isinstance(text, str):
            raise TypeError("kid and signature must be text")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        return [f"{SIGNATURE}: cannot be read ({exc})"]
    public_key = keys.get(kid)
    if public_key is None:
        return [f"{SIGNATURE}: signed with key {kid!r}, which is not a known key"]
    signature = _b64url_decode(text)
    if signature is None or not verify_signature(public_key, manifest_bytes, signature):
        return [f"{MANIFEST}: signature does not verify (changed after export)"]
    return []


def _check_file(archive: zipfile.ZipFile, path: str, item: Mapping[str, Any]) -> list[str]:
    expected_size, expected_sha = item.get("size"), item.get("sha256")
    limit = expected_size if isinstance(expected_size, int) else 0
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(path) as source:
            # read no more than one byte past the size in the manifest: a zip bomb costs nothing
            while chunk := source.read(min(READ_CHUNK, limit + 1 - size)):
                digest.update(chunk)
                size += len(chunk)
                if size > limit:
                    break
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        return [f"{path}: damaged in the zip ({exc})"]
    if size != expected_size:
        shown = f"more than {limit}" if size > limit else str(size)
        return [f"{path}: size {shown} does not match the manifest ({expected_size})"]
    if digest.hexdigest() != expected_sha:
        return [f"{path}: sha256 does not match the manifest"]
    return []


def _check_custody(
    item_id: str, item: Mapping[str, Any], export_id: Any, keys: Mapping[str, bytes]
) -> list[str]:
    log = item.get("custody")
    if not isinstance(log, list) or not log:
        return [f"item {item_id}: has no custody log"]
    problems: list[str] = []
    entries: list[Mapping[str, Any]] = []
    for position, entry in enumerate(log, start=1):
        if not isinstance(entry, dict):
            problems.append(f"item {item_id}: custody entry #{position} is not an object")
        elif entry.get("item_id") != item_id:
            problems.append(
                f"item {item_id} entry {entry.get('seq')}: belongs to item {entry.get('item_id')}"
            )
        else:
            entries.append(entry)
    problems.extend(custody.check_chain(entries, keys))
    last = entries[-1] if entries else None
    details = last.get("details") if last is not None else None
    if (
        last is None
        or last.get("event") != "exported"
        or not isinstance(details, dict)
        or details.get("export") != export_id
    ):
        problems.append(f"item {item_id}: custody log does not end with this export")
    return problems


def verify_bundle(path: Path, *, trusted_keys: Mapping[str, bytes] | None = None) -> list[str]:
    """Check a bundle offline; `[]` if it is intact. Each problem names the file or custody
    entry that fails.

    Signatures are checked against the keys in the bundle's public-key.json; with
    `trusted_keys` (kid -> raw Ed25519 public key), only keys that are also trusted count.
    Entry names that could escape a directory (absolute, "..", drive letters) are refused and
    never opened.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"{path}: not a readable zip file ({exc})"]
    with archive:
        return _verify(archive, trusted_keys)


def _verify(archive: zipfile.ZipFile, trusted_keys: Mapping[str, bytes] | None) -> list[str]:
    problems: list[str] = []
    names: dict[str, int] = {}
    for info in archive.infolist():
        names[info.filename] = names.get(info.filename, 0) + 1
    unsafe = {name for name in names if _unsafe(name)}
    for name in sorted(unsafe):
        problems.append(f"{name!r}: unsafe path in the zip (refused)")
    for name, count in sorted(names.items()):
        if count > 1 and name not in unsafe:
            problems.append(f"{name}: appears {count} times in the zip")
    for required in (MANIFEST, SIGNATURE, PUBLIC_KEY):
        if required not in names:
            problems.append(f"{required}: missing from the bundle")
    if MANIFEST not in names:
        return problems

    keys = _bundle_keys(archive, problems) if PUBLIC_KEY in names else {}
    if trusted_keys is not None:
        keys = {kid: key for kid, key in keys.items() if trusted_keys.get(kid) == key}
    try:
        manifest_bytes = _read_small(archive, MANIFEST, MAX_MANIFEST_BYTES)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return [*problems, f"{MANIFEST}: cannot be read ({exc})"]
    if SIGNATURE in names:
        problems.extend(_check_signature(archive, manifest_bytes, keys))
    try:
        manifest = json.loads(manifest_bytes)
        items = manifest["items"]
        if not isinstance(items, list):
            raise TypeError("items is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        return [*problems, f"{MANIFEST}: not a readable manifest ({exc})"]

    listed: set[str] = set()
    for position, item in enumerate(items, start=1):
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item_id, str):
            problems.append(f"{MANIFEST}: item #{position} has no id")
            continue
        file_path = item.get("path")
        if file_path is None:
            if item.get("status") == ItemStatus.stored.value:
                problems.append(f"item {item_id}: stored, but the bundle holds no file for it")
        elif (
            not isinstance(file_path, str) or _unsafe(file_path) or not file_path.startswith(FILES)
        ):
            problems.append(f"item {item_id}: unsafe file path {file_path!r} in the manifest")
        else:
            listed.add(file_path)
            if file_path not in names:
                problems.append(f"{file_path}: listed in the manifest but missing")
            elif file_path not in unsafe:
                problems.extend(_check_file(archive, file_path, item))
        problems.extend(_check_custody(item_id, item, manifest.get("export"), keys))

    for name in sorted(names):
        if name in unsafe or name in listed or name in (MANIFEST, SIGNATURE, PUBLIC_KEY):
            continue
        problems.append(f"{name}: not listed in the manifest")
    return problems
