"""Capturing evidence: files, URL snapshots, hash-only records, and the minor rule.

Every capture goes the same way, whoever sends it (victim in the chat, staff in the console,
an e-mail attachment): streamed into the vault encrypted under the case's key, hashed at
capture (SHA-256 of the plaintext; PDQ for images), typed from its bytes, recorded with who
captured it and how, and opened with a signed custody entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.clock import as_utc
from helpline.core.config import Settings
from helpline.core.crypto import FieldCipher, case_scope
from helpline.core.errors import Conflict, Invalid, NotFound, TooLarge
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence import custody
from helpline.evidence.imaging import pdq_hash
from helpline.evidence.models import EvidenceItem, ItemKind, ItemStatus
from helpline.evidence.snapshot import fetch_snapshot
from helpline.evidence.sniff import sniff
from helpline.evidence.vault import Vault

TABLE = "evidence_items"
MIB = 1024 * 1024
MAX_IMAGE_FOR_HASHING = 64 * MIB  # larger images are stored and typed, but not PDQ-hashed
HOTLINE_REFERRAL = (
    "Possible minor depicted: do not store, fetch or forward the material. Record the URL only "
    "and refer to the national child-abuse hotline (Offlimits / Meldpunt Kinderporno)."
)


class MinorRule(Conflict):
    code = "possible_minor"


def vault_for(settings: Settings) -> Vault:
    return Vault.from_settings(settings)  # HELPLINE_BLOB_BACKEND: the data directory or S3


@dataclass(frozen=True)
class Captor:
    """Who captured an item, and through which channel."""

    actor: str  # victim, staff:<id>, email
    channel: str  # chat, console, email


async def _cipher(session: AsyncSession, found: Services, case_id: str) -> FieldCipher:
    return await found.keyring.cipher(session, case_scope(case_id))


async def _case(session: AsyncSession, case_id: str) -> Case:
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound("no such case")
    return case


async def _room_left(session: AsyncSession, settings: Settings, case_id: str) -> int:
    used = (
        await session.execute(
            select(func.coalesce(func.sum(col(EvidenceItem.size)), 0)).where(
                col(EvidenceItem.case_id) == case_id,
                col(EvidenceItem.status) == ItemStatus.stored,
            )
        )
    ).scalar_one()
    left = settings.evidence_max_case_mb * MIB - int(used or 0)
    if left <= 0:
        raise TooLarge(
            f"this case holds the most evidence allowed ({settings.evidence_max_case_mb} MiB)"
        )
    return min(left, settings.evidence_max_file_mb * MIB)


def _new_item(
    case_id: str, kind: ItemKind, status: ItemStatus, captor: Captor, now: Any
) -> EvidenceItem:
    return EvidenceItem(
        id=new_id(),
        case_id=case_id,
        kind=kind.value,
        status=status.value,
        captured_at=now,
        captured_by=captor.actor,
        channel=captor.channel,
    )


async def _record(
    session: AsyncSession,
    found: Services,
    item: EvidenceItem,
    captor: Captor,
    details: dict[str, str | int | bool | None],
) -> None:
    """Insert a new item and open its chain of custody with `captured`."""
    session.add(item)
    await session.flush()
    await custody.append(
        session,
        found.signer,
        found.clock,
        item_id=item.id,
        actor=captor.actor,
        event="captured",
        details=details,
    )


async def capture_file(
    session: AsyncSession,
    found: Services,
    *,
    case_id: str,
    chunks: AsyncIterator[bytes],
    filename: Callable[[], str | None],
    captor: Captor,
) -> EvidenceItem:
    """Stream a file into the vault and record it. `filename` is asked for after the stream
    ended (a multipart body names the file in its headers)."""
    case = await _case(session, case_id)
    if case.possible_minor:
        raise MinorRule("files are not stored for this case: " + HOTLINE_REFERRAL)
    max_bytes = await _room_left(session, found.settings, case_id)
    cipher = await _cipher(session, found, case_id)
    key = cipher.derive("evidence")
    vault = vault_for(found.settings)
    blob = await vault.store(chunks, key, max_bytes=max_bytes)
    try:
        media = sniff(blob.head)
        pdq = None
        if media.kind == "image" and blob.size <= MAX_IMAGE_FOR_HASHING:
            pdq = await pdq_hash(await vault.read_all(blob.name, key, max_bytes=blob.size))
        item = _new_item(case_id, ItemKind.file, ItemStatus.stored, captor, found.clock.now())
        item.media_type, item.size, item.sha256, item.blob_name = (
            media.mime,
            blob.size,
            blob.sha256,
            blob.name,
        )
        if pdq is not None:
            item.pdq, item.pdq_quality = pdq.hex, pdq.quality
        name = filename()
        if name:
            item.filename = cipher.encrypt(name, table=TABLE, row_id=item.id, field="filename")
        await _record(
            session,
            found,
            item,
            captor,
            {
                "sha256": blob.sha256,
                "size": blob.size,
                "media_type": media.mime,
                "channel": captor.channel,
            },
        )
    except BaseException:
        await vault.destroy(blob.name)  # nothing partial: no blob without its row
        raise
    return item


async def capture_url(
    session: AsyncSession, found: Services, *, case_id: str, url: str, captor: Captor
) -> EvidenceItem:
    """Record a URL and, unless the case may depict a minor, a snapshot of what it serves."""
    case = await _case(session, case_id)
    cipher = await _cipher(session, found, case_id)
    now = found.clock.now()
    if case.possible_minor:  # the URL only, never fetched
        item = _new_item(case_id, ItemKind.url, ItemStatus.recorded, captor, now)
        item.possible_minor = True
    else:
        settings = found.settings
        max_bytes = min(
            await _room_left(session, settings, case_id), settings.snapshot_max_mb * MIB
        )
        key = cipher.derive("evidence")
        vault = vault_for(settings)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

        async def sink(data: bytes) -> None:
            await queue.put(data)

        async def body() -> AsyncIterator[bytes]:
            while (data := await queue.get()) is not None:
                yield data

        async def fetch() -> Any:
            try:
                return await fetch_snapshot(
                    url,
                    timeout=settings.snapshot_timeout_seconds,
                    max_bytes=max_bytes,
                    max_redirects=settings.snapshot_max_redirects,
                    allow_loopback=settings.snapshot_allow_loopback,
                    sink=sink,
                )
            finally:
                await queue.put(None)

        fetching = asyncio.create_task(fetch())
        try:
            blob = await vault.store(_with_placeholder(body()), key, max_bytes=max_bytes + 1)
        except BaseException:
            fetching.cancel()
            raise
        try:
            snapshot = await fetching
            item = _new_item(case_id, ItemKind.url, ItemStatus.stored, captor, now)
            item.blob_name, item.size, item.sha256 = blob.name, blob.size, blob.sha256
            item.media_type = "application/x-helpline-snapshot"
            snapshot_meta = {
                "final_url": snapshot.final_url,
                "status": snapshot.status,
                "headers": snapshot.headers,
                "fetched_at": as_utc(snapshot.fetched_at).isoformat(),
                "body_sha256": snapshot.sha256,
                "body_size": snapshot.size,
            }
            item.snapshot = cipher.encrypt(
                json.dumps(snapshot_meta), table=TABLE, row_id=item.id, field="snapshot"
            )
        except BaseException:
            await vault.destroy(blob.name)
            raise
    item.source_url = cipher.encrypt(url, table=TABLE, row_id=item.id, field="source_url")
    await _record(
        session,
        found,
        item,
        captor,
        {
            "kind": "url",
            "fetched": item.status == ItemStatus.stored,
            "sha256": item.sha256,
            "channel": captor.channel,
        },
    )
    return item


async def _with_placeholder(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An empty page is still a snapshot: the vault refuses empty files, so store one byte
    marker when the body is empty (the real body size is in the snapshot metadata)."""
    empty = True
    async for chunk in chunks:
        if chunk:
            empty = False
            yield chunk
    if empty:
        yield b"\n"


async def record_hashes(
    session: AsyncSession,
    found: Services,
    *,
    case_id: str,
    sha256: str,
    pdq: str,
    pdq_quality: int,
    captor: Captor,
) -> EvidenceItem:
    """An image known only by its hashes (for hash-sharing with platforms); no image kept."""
    await _case(session, case_id)
    for value, length, what in ((sha256, 64, "sha256"), (pdq, 64, "pdq")):
        if len(value) != length or any(c not in "0123456789abcdef" for c in value.lower()):
            raise Invalid(f"{what} must be {length} hexadecimal characters")
    if not 0 <= pdq_quality <= 100:
        raise Invalid("pdq_quality must be between 0 and 100")
    item = _new_item(case_id, ItemKind.hash_only, ItemStatus.recorded, captor, found.clock.now())
    item.sha256, item.pdq, item.pdq_quality = sha256.lower(), pdq.lower(), pdq_quality
    await _record(session, found, item, captor, {"kind": "hash_only", "sha256": item.sha256})
    return item


async def hash_upload(
    found: Services, chunks: AsyncIterator[bytes]
) -> tuple[str, str | None, int | None]:
    """SHA-256 and PDQ of an uploaded image that is then discarded (hash-only records)."""
    digest = hashlib.sha256()
    data = bytearray()
    limit = MAX_IMAGE_FOR_HASHING
    async for chunk in chunks:
        digest.update(chunk)
        data.extend(chunk)
        if len(data) > limit:
            raise TooLarge(f"an image for hashing may be at most {limit // MIB} MiB")
    if not data:
        raise Invalid("the file is empty")
    media = sniff(bytes(data[:8192]))
    if media.kind != "image":
        raise Invalid("only images can be registered by their hashes")
    pdq = await pdq_hash(bytes(data))
    return digest.hexdigest(), pdq.hex, pdq.quality


async def mark_possible_minor(
    session: AsyncSession, found: Services, *, case_id: str, actor: str
) -> int:
    """Mark a case as possibly depicting a minor: every stored file is destroyed (with a
    custody entry saying so) and nothing more is stored or fetched. Returns items destroyed."""
    case = await _case(session, case_id)
    case.possible_minor = True
    vault = vault_for(found.settings)
    items = (
        (await session.execute(select(EvidenceItem).where(col(EvidenceItem.case_id) == case_id)))
        .scalars()
        .all()
    )
    destroyed = 0
    for item in items:
        item.possible_minor = True
        await custody.append(
            session, found.signer, found.clock, item_id=item.id, actor=actor, event="marked_minor"
        )
        if item.status == ItemStatus.stored and item.blob_name:
            await vault.destroy(item.blob_name)
            item.status, item.blob_name = ItemStatus.destroyed.value, None
            item.destroyed_at = found.clock.now()
            await custody.append(
                session,
                found.signer,
                found.clock,
                item_id=item.id,
                actor=actor,
                event="destroyed",
                details={"reason": "possible minor depicted"},
            )
            destroyed += 1
    await session.flush()
    return destroyed


async def items_of(session: AsyncSession, found: Services, case_id: str) -> list[dict[str, Any]]:
    """What a case holds, for display (names and URLs decrypted)."""
    rows = (
        (
            await session.execute(
                select(EvidenceItem)
                .where(col(EvidenceItem.case_id) == case_id)
                .order_by(col(EvidenceItem.captured_at))
            )
        )
        .scalars()
        .all()
    )
    cipher = await _cipher(session, found, case_id) if rows else None
    listed = []
    for item in rows:
        assert cipher is not None
        name = url = None
        if item.filename:
            name = cipher.decrypt_text(item.filename, table=TABLE, row_id=item.id, field="filename")
        if item.source_url:
            url = cipher.decrypt_text(
                item.source_url, table=TABLE, row_id=item.id, field="source_url"
            )
        listed.append(
            {
                "id": item.id,
                "kind": item.kind,
                "status": item.status,
                "media_type": item.media_type,
                "size": item.size,
                "sha256": item.sha256,
                "pdq": item.pdq,
                "pdq_quality": item.pdq_quality,
                "filename": name,
                "url": url,
                "captured_at": as_utc(item.captured_at).isoformat(),
                "captured_by": item.captured_by.split(":")[0],
                "channel": item.channel,
                "possible_minor": item.possible_minor,
            }
        )
    return listed


ORPHAN_AGE = 3600  # seconds: a blob this old without its row was left by a failed request


def orphan_sweep(found: Services) -> Callable[[Any], Any]:
    """A scheduled job: destroy vault blobs that no item refers to (a request that stored a
    blob and then failed before its transaction committed leaves one behind)."""

    async def sweep(now: Any) -> None:
        vault = vault_for(found.settings)
        async with found.db.transaction() as session:
            known = set(
                (await session.execute(select(col(EvidenceItem.blob_name)))).scalars().all()
            )
        for name in await vault.names_older_than(ORPHAN_AGE):
            if name not in known:
                await vault.destroy(name)

    return sweep
