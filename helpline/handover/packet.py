"""The handover packet: built from exactly what the victim consented to, sealed to the partner.

`build_and_seal(services, authorised, session=...)` takes the `gate.Authorised` that only
`gate.authorise` makes, so nothing can be built without a valid consent. It writes the folder
of docs/api/handover.md ("The packet") as a tar archive, streamed: the tar is made piece by
piece in the event loop, sealed with age (pyrage, in a thread) to the partner's X25519
recipient, and age's output goes straight into the vault, encrypted again under a key of the
handover's own scope. Nothing is written to disk in the clear and memory stays flat, however
large the evidence: each file is read from the vault chunk by chunk while it is sealed.

The police evidence bundle (a zip) must be complete before its tar header can name its size,
so it is spooled first into a temporary vault blob under a random key of its own, and
destroyed once it is in the packet (or the build failed).

Only ids and codes from the consent's scope choose what goes in; the timeline is case events
as kind and time in words (never staff notes, messages or staff names), and the chat
conversation, the victim's case reference and passphrase are never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import queue
import re
import secrets
import tarfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pyrage
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case, CaseEvent
from helpline.core.clock import as_utc
from helpline.core.config import Settings
from helpline.core.crypto import FieldCipher, b64url, case_scope
from helpline.core.errors import Conflict
from helpline.core.services import Services
from helpline.evidence import bundle, custody
from helpline.evidence.models import EvidenceItem, ItemStatus
from helpline.evidence.service import vault_for as evidence_vault_for
from helpline.evidence.vault import StoredBlob, Vault
from helpline.handover import packet_texts as texts
from helpline.handover import state
from helpline.handover.gate import Authorised
from helpline.handover.models import Handover, handover_scope
from helpline.handover.states import HandoverStatus, Part, PartnerKind
from helpline.takedown.builder import keys_url
from helpline.takedown.models import Notice, Platform
from helpline.triage.vocabulary import parse_flags

FORMAT = "helpline-handover-packet/1"
TABLE = "handovers"  # the encrypted columns of a handover (summary, contact_details)
MIB = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240
_DEPTH = 8  # pieces queued between the tar, age and the vault
_POLL = 0.1  # seconds a blocked pipe end waits before it looks whether the build was stopped
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PacketError(Conflict):
    """The packet cannot be built as consented (an item gone, a status changed)."""

    code = "packet_failed"


def vault_for(settings: Settings) -> Vault:
    """Sealed packets live in a vault area of their own (`<data dir>/handover`, or the
    bucket's `<prefix>handover/`): the evidence vault's orphan sweep would take them for
    blobs without an item."""
    return Vault.from_settings(settings, "handover")


def packet_key(cipher: FieldCipher) -> bytes:
    """The vault key of a handover's sealed packet (`cipher` is the handover scope's)."""
    return cipher.derive("handover-packet")


def fingerprint_of(recipient: str) -> str:
    return hashlib.sha256(recipient.encode()).hexdigest()


# ---------------------------------------------------------------- helpers


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def safe_name(name: str | None, fallback: str) -> str:
    """A file name that is safe in any archive and file system: no directories, no controls,
    letters, digits and `._-` only, at most 80 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE.sub("_", base).strip("._")[:80]
    return cleaned or fallback


# ---------------------------------------------------------------- the contents


@dataclass
class _File:
    """One file of the packet: its path inside the folder, exact size and bytes (streamed)."""

    path: str
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]
    sha256: str | None = None  # checked while streaming, when known beforehand


def _bytes_file(path: str, data: bytes) -> _File:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return _File(path, len(data), chunks, hashlib.sha256(data).hexdigest())


@dataclass
class _Evidence:
    number: int
    item: EvidenceItem
    filename: str | None
    url: str | None
    path: str | None  # in the packet; None when there is no file (hashes only, URL only)


@dataclass
class _Contents:
    document: dict[str, Any]
    evidence: list[_Evidence] = field(default_factory=list)


async def _timeline(
    session: AsyncSession, case: Case, evidence: list[EvidenceItem], language: str
) -> list[dict[str, str]]:
    """What happened on the case and when: event kinds and times only. Never staff notes (a
    separate table, not read here), messages, event texts or actors."""
    rows = await session.execute(
        select(col(CaseEvent.at), col(CaseEvent.kind), col(CaseEvent.details))
        .where(col(CaseEvent.case_id) == case.id)
        .order_by(col(CaseEvent.at), col(CaseEvent.id))
    )
    entries: list[tuple[datetime, str, str]] = [
        (as_utc(case.created_at), "opened", texts.opened_line(language, case.channel))
    ]
    for at, kind, details in rows.all():
        words = texts.words(texts.EVENT_WORDS, language, kind)
        if words is None:
            continue
        if kind == "notice":
            try:
                status = json.loads(details).get("to")
            except (ValueError, AttributeError):
                status = None
            outcome = texts.words(texts.NOTICE_WORDS, language, status)
            if outcome is None:
                continue
            words = f"{words}: {outcome}"
        entries.append((as_utc(at), kind, words))
    for item in evidence:
        entries.append(
            (as_utc(item.captured_at), "evidence", texts.evidence_added_line(language, item.kind))
        )
    entries.sort(key=lambda entry: entry[0])
    return [
        {"at": at.isoformat(), "when": texts.when(at, language), "kind": kind, "what": words}
        for at, kind, words in entries
    ]


async def _notices(session: AsyncSession, case_id: str, language: str) -> list[dict[str, Any]]:
    """Removal requests sent for the case: platform, when, outcome (no URLs, no texts)."""
    rows = await session.execute(
        select(Notice, Platform)
        .join(Platform, col(Platform.id) == col(Notice.platform_id))
        .where(col(Notice.case_id) == case_id, col(Notice.sent_at).is_not(None))
        .order_by(col(Notice.sent_at))
    )
    return [
        {
            "platform": platform.name,
            "sent_at": _iso(notice.sent_at),
            "status": notice.status,
            "outcome": texts.words(texts.NOTICE_WORDS, language, notice.status) or notice.status,
        }
        for notice, platform in rows.all()
    ]


async def _contents(
    session: AsyncSession, found: Services, authorised: Authorised, case: Case
) -> _Contents:
    handover, partner = authorised.handover, authorised.partner
    parts = authorised.parts
    language = texts.language_of(handover.language)
    case_cipher = await found.keyring.cipher(session, case_scope(case.id))
    own = await found.keyring.cipher(session, handover_scope(handover.id))
    document: dict[str, Any] = {
        "format": FORMAT,
        "reference": handover.reference,
        "language": language,
        "partner": {"id": partner.id, "name": partner.name, "kind": partner.kind},
        "parts": [part.value for part in parts],
        "helpline": found.settings.base_url,
    }
    items: list[EvidenceItem] = []
    if Part.evidence in parts:
        wanted = authorised.evidence_ids
        rows = await session.execute(
            select(EvidenceItem)
            .where(col(EvidenceItem.id).in_(wanted), col(EvidenceItem.case_id) == case.id)
            .order_by(col(EvidenceItem.captured_at), col(EvidenceItem.id))
        )
        items = list(rows.scalars().all())
        if {item.id for item in items} != set(wanted):
            raise PacketError("an evidence item of the consent is no longer in the case")
    contents = _Contents(document)
    if Part.summary in parts:
        if handover.summary is None:
            raise PacketError("the handover has no summary")
        document["summary"] = own.decrypt_text(
            handover.summary, table=TABLE, row_id=handover.id, field="summary"
        )
    if Part.categories in parts:
        flags = parse_flags(case.risk_flags)
        document["categories"] = {
            "category": case.category,
            "category_words": texts.words(texts.CATEGORY_WORDS, language, case.category),
            "risk_flags": [
                {"code": flag, "words": texts.words(texts.FLAG_WORDS, language, flag) or flag}
                for flag in flags
            ],
        }
    if Part.timeline in parts:
        document["timeline"] = await _timeline(session, case, items, language)
        document["notices"] = await _notices(session, case.id, language)
    if Part.contact in parts:
        details = None
        if handover.contact_details is not None:
            details = own.decrypt_text(
                handover.contact_details, table=TABLE, row_id=handover.id, field="contact_details"
            )
        document["contact"] = {
            "method": handover.contact_method,
            "words": texts.words(texts.CONTACT_WORDS, language, handover.contact_method),
            "details": details,
        }
    if Part.evidence in parts:
        listed = []
        for number, item in enumerate(items, start=1):
            filename = url = None
            if item.filename is not None:
                filename = case_cipher.decrypt_text(
                    item.filename, table=bundle.ITEMS_TABLE, row_id=item.id, field="filename"
                )
            if item.source_url is not None:
                url = case_cipher.decrypt_text(
                    item.source_url, table=bundle.ITEMS_TABLE, row_id=item.id, field="source_url"
                )
            path = None
            if item.status == ItemStatus.stored.value and item.blob_name:
                fallback = f"item{bundle.extension_for(item.media_type)}"
                if item.kind == "url":
                    fallback = "snapshot.bin"
                path = f"evidence/{number:02d}-{safe_name(filename, fallback)}"
            contents.evidence.append(_Evidence(number, item, filename, url, path))
            listed.append(
                {
                    "number": number,
                    "id": item.id,
                    "kind": item.kind,
                    "status": item.status,
                    "file": path,
                    "filename": filename,
                    "url": url,
                    "platform": urlsplit(url).hostname if url else None,
                    "media_type": item.media_type,
                    "size": item.size,
                    "sha256": item.sha256,
                    "pdq": item.pdq,
                    "pdq_quality": item.pdq_quality,
                    "captured_at": _iso(item.captured_at),
                }
            )
        document["evidence"] = listed
    return contents


# ---------------------------------------------------------------- tar, age, vault


def _header(name: str, size: int, mtime: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


Finisher = Callable[[list[dict[str, Any]]], list[tuple[str, bytes]]]


async def _tar(root: str, files: list[_File], finish: Finisher, mtime: int) -> AsyncIterator[bytes]:
    """The packet as a tar stream. `finish` gets every file's path, size and SHA-256 and
    returns the last files (the manifest and its signature)."""
    written = 0
    directories = sorted(
        {f"{root}/"} | {f"{root}/{f.path.rsplit('/', 1)[0]}/" for f in files if "/" in f.path}
    )
    for directory in directories:
        piece = _header(directory, 0, mtime, directory=True)
        written += len(piece)
        yield piece
    listed: list[dict[str, Any]] = []
    for each in files:
        piece = _header(f"{root}/{each.path}", each.size, mtime)
        written += len(piece)
        yield piece
        digest, size = hashlib.sha256(), 0
        async for chunk in each.chunks():
            size += len(chunk)
            if size > each.size:
                raise PacketError(f"{each.path}: longer than expected")
            digest.update(chunk)
            yield chunk
        if size != each.size:
            raise PacketError(f"{each.path}: shorter than expected")
        if each.sha256 is not None and digest.hexdigest() != each.sha256:
            raise PacketError(f"{each.path}: its content has another hash than recorded")
        written += size + len(_padding(size))
        yield _padding(size)
        listed.append({"path": each.path, "size": size, "sha256": digest.hexdigest()})
    for path, data in finish(listed):
        piece = _header(f"{root}/{path}", len(data), mtime) + data + _padding(len(data))
        written += len(piece)
        yield piece
    end = b"\0" * (2 * BLOCK)
    written += len(end)
    yield end + b"\0" * (-written % RECORD)


class _Stopped(Exception):
    """The build was stopped: the age thread's pipe ends give up."""


class _Inlet:
    """The tar stream, from the event loop to the age thread (bounded)."""

    def __init__(self, stopped: threading.Event) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_DEPTH)
        self.stopped = stopped
        self.rest = memoryview(b"")
        self.ended = False

    def put(self, piece: bytes | None) -> None:  # in a worker thread
        while not self.stopped.is_set():
            try:
                self.queue.put(piece, timeout=_POLL)
                return
            except queue.Full:
                continue
        raise _Stopped

    def read(self, size: int = -1) -> bytes:  # in the age thread
        while not self.rest and not self.ended:
            if self.stopped.is_set():
                raise _Stopped
            try:
                piece = self.queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            if piece is None:
                self.ended = True
            else:
                self.rest = memoryview(piece)  # read in small steps: views, not copies
        if size is None or size < 0:
            size = len(self.rest)
        data, self.rest = bytes(self.rest[:size]), self.rest[size:]
        return data


class _Outlet:
    """age's output, from the age thread to the event loop (bounded)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pieces: asyncio.Queue[bytes | None],
        stopped: threading.Event,
    ) -> None:
        self.loop = loop
        self.pieces = pieces
        self.stopped = stopped

    def _put(self, piece: bytes | None) -> None:
        future = asyncio.run_coroutine_threadsafe(self.pieces.put(piece), self.loop)
        while True:
            if self.stopped.is_set():
                future.cancel()
                raise _Stopped
            try:
                future.result(timeout=_POLL)
                return
            except TimeoutError:
                continue

    def write(self, data: bytes) -> int:
        self._put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._put(None)


async def seal_into_vault(
    stream: AsyncIterator[bytes], recipient: str, vault: Vault, key: bytes, *, max_bytes: int
) -> StoredBlob:
    """Seal `stream` with age to `recipient` and store age's output in `vault` under `key`:
    three steps at once (the stream in the loop, age in a thread, the vault's store), each
    waiting for the next when it is ahead, so memory stays flat. Any failure stops all three
    and the vault keeps nothing."""
    age_recipient = pyrage.x25519.Recipient.from_str(recipient)
    loop = asyncio.get_running_loop()
    stopped = threading.Event()
    inlet = _Inlet(stopped)
    sealed: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_DEPTH)
    outlet = _Outlet(loop, sealed, stopped)

    def encrypt() -> None:
        pyrage.encrypt_io(inlet, outlet, [age_recipient])
        outlet.close()

    async def feed() -> None:
        async for piece in stream:
            if piece:
                await asyncio.to_thread(inlet.put, piece)
        await asyncio.to_thread(inlet.put, None)

    async def output() -> AsyncIterator[bytes]:
        while (piece := await sealed.get()) is not None:
            yield piece

    feeding = asyncio.create_task(feed())
    sealing = asyncio.ensure_future(asyncio.to_thread(encrypt))
    storing = asyncio.create_task(vault.store(output(), key, max_bytes=max_bytes))
    tasks = (feeding, sealing, storing)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            failure = task.exception()
            if failure is not None:
                raise failure
        return storing.result()
    except BaseException:
        # the age thread ends once its pipe ends see `stopped`; the store removes its file
        stopped.set()
        feeding.cancel()
        storing.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(results[2], StoredBlob):  # stored just before another step failed
            await vault.destroy(results[2].name)
        raise


# ---------------------------------------------------------------- the builder


async def _spool_police_bundle(
    session: AsyncSession,
    found: Services,
    vault: Vault,
    authorised: Authorised,
    case: Case,
    actor: str,
) -> tuple[StoredBlob, bytes]:
    """The evidence bundle of the selected items, spooled into a temporary vault blob under
    a random key (the tar header needs its size first). The caller destroys it."""
    key = secrets.token_bytes(32)
    pieces: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_DEPTH)

    async def write(data: bytes) -> None:
        await pieces.put(data)

    async def export() -> None:
        try:
            await bundle.export_case_to(
                session,
                found.keyring,
                evidence_vault_for(found.settings),
                found.signer,
                found.clock,
                case_id=case.id,
                write=write,
                actor=actor,
                item_ids=authorised.evidence_ids,
                case_document={"handover": authorised.handover.reference},
            )
        finally:
            await pieces.put(None)

    async def spooled() -> AsyncIterator[bytes]:
        while (piece := await pieces.get()) is not None:
            yield piece

    exporting = asyncio.create_task(export())
    try:
        blob = await vault.store(spooled(), key, max_bytes=1 << 62)
    except BaseException:
        exporting.cancel()
        with contextlib.suppress(BaseException):
            await exporting
        raise
    try:
        await exporting
    except BaseException:
        await vault.destroy(blob.name)
        raise
    return blob, key


def _vault_file(vault: Vault, path: str, blob: str, key: bytes, size: int, sha: str) -> _File:
    def chunks() -> AsyncIterator[bytes]:
        return vault.read(blob, key)

    return _File(path, size, chunks, sha)


async def build_and_seal(
    found: Services, authorised: Authorised, *, session: AsyncSession, actor: str = "system"
) -> Handover:
    """Build the packet of `authorised.handover`, seal it to the partner, store it and move
    the handover to `sealed`, in the caller's transaction (which should hold the handover's
    row lock). Only what the consent's scope names goes in."""
    handover, partner = authorised.handover, authorised.partner
    if HandoverStatus(handover.status) not in (HandoverStatus.consented, HandoverStatus.approved):
        raise PacketError(f"a handover that is {handover.status} is not sealed again")
    if handover.blob_name is not None:
        raise PacketError("this handover has a sealed packet already")
    assert partner.age_recipient is not None and handover.case_id is not None
    case = await session.get(Case, handover.case_id)
    if case is None:
        raise PacketError("the case of this handover no longer exists")
    police = partner.kind == PartnerKind.police.value
    language = texts.language_of(handover.language)
    contents = await _contents(session, found, authorised, case)
    document = contents.document
    root = handover.reference
    keys = keys_url(found)
    now = found.clock.now()
    vault = vault_for(found.settings)
    evidence_vault = evidence_vault_for(found.settings)
    case_cipher = await found.keyring.cipher(session, case_scope(case.id))
    consent = authorised.consent
    consent_info = {
        "id": consent.id,
        "given": texts.when(consent.recorded_at, language),
        "at": _iso(consent.recorded_at),
        "method": consent.method,
    }

    spool: StoredBlob | None = None
    try:
        files: list[_File] = [
            _bytes_file("README.txt", texts.readme(root, keys, police, language).encode()),
            _bytes_file("handover.json", _json_bytes(document)),
        ]
        text = texts.summary_text(document, consent_info)
        files.append(_bytes_file("summary.txt", text.encode()))
        files.append(_bytes_file("summary.html", texts.summary_html(document).encode()))
        if police and contents.evidence:
            spool, spool_key = await _spool_police_bundle(
                session, found, vault, authorised, case, actor
            )
        custody_items = []
        for each in contents.evidence:
            item = each.item
            await custody.append(
                session,
                found.signer,
                found.clock,
                item_id=item.id,
                actor=actor,
                event="packaged",
                details={"handover": handover.reference, "file": each.path is not None},
            )
            log = await custody.entries(session, item.id)
            custody_items.append(
                {
                    "number": each.number,
                    "id": item.id,
                    "kind": item.kind,
                    "file": each.path,
                    "media_type": item.media_type,
                    "size": item.size,
                    "sha256": item.sha256,
                    "pdq": item.pdq,
                    "pdq_quality": item.pdq_quality,
                    "captured_at": _iso(item.captured_at),
                    "custody": [custody.entry_document(entry) for entry in log],
                }
            )
            if each.path is not None:
                assert item.blob_name is not None and item.size is not None
                files.append(
                    _vault_file(
                        evidence_vault,
                        each.path,
                        item.blob_name,
                        case_cipher.derive("evidence"),
                        item.size,
                        item.sha256 or "",
                    )
                )
        if contents.evidence:
            custody_document = {
                "format": "helpline-handover-custody/1",
                "keys": keys,
                "how": "each entry's hash is SHA-256 over the canonical JSON of [item_id, seq, "
                "at, actor, event, details, prev_hash]; signature: Ed25519 over the hex hash",
                "items": custody_items,
            }
            files.append(_bytes_file("evidence/custody.json", _json_bytes(custody_document)))
        if police:
            if spool is not None:
                files.append(
                    _vault_file(
                        vault,
                        "police/evidence-bundle.zip",
                        spool.name,
                        spool_key,
                        spool.size,
                        spool.sha256,
                    )
                )
                files.append(
                    _bytes_file(
                        "police/VERIFY.txt", texts.verify_text(root, keys, language).encode()
                    )
                )
            files.append(_bytes_file("police/intake.txt", texts.intake_text(document).encode()))

        signed: dict[str, str] = {}

        def finish(listed: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
            manifest = {
                "format": FORMAT,
                "reference": handover.reference,
                "partner": document["partner"],
                "parts": document["parts"],
                "evidence": authorised.evidence_ids,
                "consent": {"id": consent.id, "at": consent_info["at"], "method": consent.method},
                "scope_sha256": handover.scope_sha256,
                "recipient_fingerprint": partner.key_fingerprint,
                "sealed_at": as_utc(now).isoformat(),
                "kid": found.signer.kid,
                "keys": keys,
                "files": listed,
            }
            manifest_bytes = _json_bytes(manifest)
            signed["manifest_sha256"] = hashlib.sha256(manifest_bytes).hexdigest()
            signature = {
                "kid": found.signer.kid,
                "alg": "Ed25519",
                "signature": b64url(found.signer.sign(manifest_bytes)),
            }
            return [
                ("manifest.json", manifest_bytes),
                ("manifest.sig.json", _json_bytes(signature)),
            ]

        planned = sum(each.size for each in files) + BLOCK * (len(files) + 8)
        own = await found.keyring.cipher(session, handover_scope(handover.id))
        blob = await seal_into_vault(
            _tar(root, files, finish, int(as_utc(now).timestamp())),
            partner.age_recipient,
            vault,
            packet_key(own),
            max_bytes=planned + planned // 512 + 16 * MIB,
        )
    finally:
        if spool is not None:
            await vault.destroy(spool.name)
    handover.blob_name = blob.name
    handover.packet_size = blob.size
    handover.packet_sha256 = blob.sha256  # of the .age bytes, as stored
    handover.manifest_sha256 = signed["manifest_sha256"]
    handover.kid = found.signer.kid
    handover.recipient_fingerprint = partner.key_fingerprint
    await state.move(
        session,
        found.clock,
        handover,
        HandoverStatus.sealed,
        actor=actor,
        details={
            "packet_sha256": blob.sha256,
            "manifest_sha256": signed["manifest_sha256"],
            "size": blob.size,
        },
    )
    return handover
