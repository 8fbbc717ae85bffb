"""The evidence vault: files encrypted in fixed-size AES-256-GCM chunks, streamed in and out.

Blobs live under random names (`secrets.token_hex(16)`, never a content hash, so a name says
nothing about what is inside) in a blob backend (`helpline.evidence.blobstore`): one directory
(mode 0700) by default, or an S3-compatible bucket. Either way the blob is sealed here, in the
process, before a byte of it leaves: a backend only ever sees ciphertext in the format below.
Each file is encrypted under a key the caller passes, normally `FieldCipher.derive("evidence")`
of the case's data key, so shredding the case key makes every blob of the case unreadable.

File format, version 1 (all integers big-endian)::

    header   32 bytes  magic b"HLV1" (4) | version 1 (1) | chunk size (4) | file id (16)
                       | nonce prefix (7)
    chunk i  n+16      AES-256-GCM(plaintext chunk i) with its 16-byte tag;
                       n == chunk size for every chunk but the last, 1 <= n <= chunk size
                       for the last

- nonce of chunk i = nonce prefix (7) | i (4) | final flag (1): 0x01 on the last chunk, else 0x00
  (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár);
- associated data of chunk i = the whole header | i (8) | final flag (1).

The file id and nonce prefix are random per file. So a flipped bit, a wrong key, a changed
header, chunks reordered or copied from another file (even under the same key), a file cut
at a chunk boundary (its new last chunk was not sealed as final) and bytes appended after the
last chunk (it is then no longer last) all fail to decrypt, and `read` raises DecryptionError.

Storing is a pipeline, so that a large upload neither starves other requests nor runs at
the sum of its steps' times. The event loop cuts the incoming pieces into batches of whole
chunks (1 MiB), holding the pieces rather than copying them. Each store has two threads that
take the batches in order: one hashes them (SHA-256, the slowest step), the other encrypts
them into a reused buffer and hands them to the backend's sink, while the loop gathers the
next batch. hashlib and os.write release the GIL, so the steps share out both cores. Memory
stays flat: the loop waits while more than two batches are queued, so a store holds at most
about four batches of plaintext (three queued, one being gathered) plus one incoming piece,
and one batch of ciphertext (and, in a bucket, at most two upload parts). On disk, every 8 MiB
written the kernel is asked to start writing the file out (sync_file_range on Linux), so the
disk works while the rest arrives and the final fsync has little left to do. Figures:
docs/benchmarks.md, "Evidence vault".
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpline.core.crypto import KEY_BYTES, DecryptionError
from helpline.core.errors import Invalid, TooLarge
from helpline.evidence.blobstore import (
    NAME,
    BlobBackend,
    BlobSink,
    BlobSource,
    FileBackend,
    backend_from_settings,
)

if TYPE_CHECKING:
    from helpline.core.config import Settings

MAGIC = b"HLV1"
VERSION = 1
CHUNK_SIZE = 64 * 1024  # plaintext bytes per chunk
HEAD_BYTES = 8 * 1024  # plaintext kept for type sniffing
TAG_BYTES = 16
FILE_ID_BYTES = 16
NONCE_PREFIX_BYTES = 7
_HEADER = struct.Struct(">4sBI16s7s")
HEADER_BYTES = _HEADER.size  # 32
_MAX_CHUNKS = 2**32  # the chunk counter in the nonce is 32 bits
_MIN_CHUNK_SIZE = 1024
_MAX_CHUNK_SIZE = 16 * 1024 * 1024
_BATCH_CHUNKS = 16  # chunks per batch, one thread hop (1 MiB at the default chunk size)
_DEPTH = 2  # batches of one store queued for its threads before the event loop waits

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What `Vault.store` learned while writing a file: its blob name, plaintext size, SHA-256
    (hex) of the plaintext, and the first bytes of plaintext (for `sniff`)."""

    name: str
    size: int
    sha256: str
    head: bytes


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _associated_data(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


async def _in_thread(function: Callable[..., T], *args: object) -> T:
    """Run blocking work in a thread. If the caller is cancelled meanwhile, wait for the thread
    to finish with its file before the cancellation goes on to close or remove that file."""
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


class _Batch:
    """Incoming pieces held as they came (no copy) until a batch of whole chunks is cut off."""

    def __init__(self) -> None:
        self.pieces: collections.deque[memoryview] = collections.deque()
        self.size = 0

    def add(self, piece: bytes) -> None:
        self.pieces.append(memoryview(piece))
        self.size += len(piece)

    def take(self, size: int) -> list[memoryview]:
        """The first `size` bytes (all of them if fewer), as views of the pieces."""
        taken: list[memoryview] = []
        wanted = min(size, self.size)
        self.size -= wanted
        while wanted:
            piece = self.pieces.popleft()
            if len(piece) > wanted:
                self.pieces.appendleft(piece[wanted:])
                piece = piece[:wanted]
            taken.append(piece)
            wanted -= len(piece)
        return taken


def _chunks(pieces: list[memoryview], chunk_size: int) -> Iterator[memoryview]:
    """`pieces` as consecutive chunks of `chunk_size` bytes (the last may be shorter): views
    of a piece where a chunk lies within one, else copied into one buffer that each such
    chunk reuses (so use a chunk before asking for the next)."""
    straddling = memoryview(bytearray(chunk_size))
    filled = 0
    for piece in pieces:
        view = piece
        if filled:
            step = min(chunk_size - filled, len(view))
            straddling[filled : filled + step] = view[:step]
            filled += step
            view = view[step:]
            if filled < chunk_size:
                continue
            yield straddling
            filled = 0
        whole = len(view) - len(view) % chunk_size
        for start in range(0, whole, chunk_size):
            yield view[start : start + chunk_size]
        filled = len(view) - whole
        straddling[:filled] = view[whole:]
    if filled:
        yield straddling[:filled]


class _Writer:
    """The blocking half of `Vault.store`: hashes batches of plaintext (`hash`), and encrypts
    them chunk by chunk and hands them to the sink (`write`). `_Pipeline` runs the two in
    separate threads."""

    def __init__(self, sink: BlobSink, key: bytes, chunk_size: int) -> None:
        self.sink = sink
        self.chunk_size = chunk_size
        self.aead = AESGCM(key)
        self.prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        self.header = _HEADER.pack(
            MAGIC, VERSION, chunk_size, secrets.token_bytes(FILE_ID_BYTES), self.prefix
        )
        self.sha256 = hashlib.sha256()
        self.index = 0
        self.sealed = bytearray()  # ciphertext of one batch, reused

    def hash(self, pieces: list[memoryview]) -> None:
        for piece in pieces:
            self.sha256.update(piece)

    def write(self, pieces: list[memoryview], final: bool) -> None:
        """Encrypt `pieces` chunk by chunk and write them; when `final`, their last chunk ends
        the file, and the sink makes it durable. Only the last chunk of the file may be
        shorter than the chunk size."""
        size = sum(len(piece) for piece in pieces)
        count = -(-size // self.chunk_size)
        start = HEADER_BYTES if self.index == 0 else 0
        end = start + size + count * TAG_BYTES
        if len(self.sealed) < end:
            self.sealed = bytearray(end)
        with memoryview(self.sealed) as sealed:
            if start:
                sealed[:start] = self.header
            position = start
            for number, chunk in enumerate(_chunks(pieces, self.chunk_size), 1):
                if self.index >= _MAX_CHUNKS:
                    raise TooLarge("the file is too large for the evidence vault")
                last = final and number == count
                following = position + len(chunk) + TAG_BYTES
                self._seal(
                    _nonce(self.prefix, self.index, last),
                    chunk,
                    _associated_data(self.header, self.index, last),
                    sealed[position:following],
                )
                self.index += 1
                position = following
            self.sink.write(sealed[:end], final=final)

    def _seal(self, nonce: bytes, chunk: memoryview, associated: bytes, into: memoryview) -> None:
        self.aead.encrypt_into(nonce, chunk, associated, into)  # cryptography >= 47


class _Pipeline:
    """The threads of one `store`: one hashes the batches, one encrypts and writes them, each
    in order, while the event loop gathers the next batch. hashlib, os.write and socket sends
    let go of the GIL, so SHA-256, the slowest step, runs on a core of its own. The loop waits while
    more than `_DEPTH` batches are queued."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.hashing = ThreadPoolExecutor(1, thread_name_prefix="vault-hash")
        self.writing = ThreadPoolExecutor(1, thread_name_prefix="vault-write")
        self.queued: collections.deque[tuple[Future[None], Future[None]]] = collections.deque()

    async def put(self, batch: list[memoryview], final: bool) -> None:
        """Queue `batch`; when `final`, wait until it and all before it are on disk."""
        self.queued.append(
            (
                self.hashing.submit(self.writer.hash, batch),
                self.writing.submit(self.writer.write, batch, final),
            )
        )
        while self.queued and (final or len(self.queued) > _DEPTH):
            for future in self.queued.popleft():
                if not future.done():
                    await asyncio.wrap_future(future)
                future.result()

    def close(self) -> None:
        """Let the threads end; after a failure, drop the batches that wait and wait for
        those in progress (they use the sink)."""
        for executor in (self.hashing, self.writing):
            executor.shutdown(wait=True, cancel_futures=True)


class _Reader:
    """The blocking half of `Vault.read`: reads, checks and decrypts batches of chunks."""

    def __init__(self, name: str, handle: BlobSource, key: bytes) -> None:
        self.name = name
        self.handle = handle
        self.aead = AESGCM(key)
        header = handle.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES:
            raise DecryptionError(f"evidence blob {name}: too short to be a vault file")
        magic, version, chunk_size, _file_id, prefix = _HEADER.unpack(header)
        if magic != MAGIC or version != VERSION:
            raise DecryptionError(f"evidence blob {name}: not a version {VERSION} vault file")
        if not _MIN_CHUNK_SIZE <= chunk_size <= _MAX_CHUNK_SIZE:
            raise DecryptionError(f"evidence blob {name}: implausible chunk size {chunk_size}")
        self.header = header
        self.prefix = prefix
        self.block = chunk_size + TAG_BYTES
        self.index = 0
        self.pending = handle.read(self.block)  # one block of look-ahead tells which is last
        if not self.pending:
            raise DecryptionError(f"evidence blob {name}: has no chunks (truncated)")
        self.done = False

    def read(self) -> list[bytes]:
        """The next batch of plaintext chunks; sets `done` after the final one."""
        plaintexts: list[bytes] = []
        while not self.done and len(plaintexts) < _BATCH_CHUNKS:
            current = self.pending
            following = self.handle.read(self.block) if len(current) == self.block else b""
            last = not following
            if len(current) <= TAG_BYTES or self.index >= _MAX_CHUNKS:
                raise DecryptionError(f"evidence blob {self.name}: truncated chunk {self.index}")
            try:
                plaintexts.append(
                    self.aead.decrypt(
                        _nonce(self.prefix, self.index, last),
                        current,
                        _associated_data(self.header, self.index, last),
                    )
                )
            except InvalidTag:
                raise DecryptionError(
                    f"evidence blob {self.name}: chunk {self.index} does not decrypt "
                    "(wrong key, or the file was changed, cut short or extended)"
                ) from None
            self.index += 1
            self.pending = following
            self.done = last
        return plaintexts


def _checked(name: str) -> str:
    """Only names the vault itself makes (32 hex digits) pass, so a name can never point
    outside the vault's directory or prefix."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise Invalid("not a valid evidence blob name")
    return name


class Vault:
    """Encrypted blob storage in a blob backend: a directory (give its path) or any
    `BlobBackend`, such as an S3 bucket. Create one per process (in the lifespan), or build one
    from the settings with `from_settings`."""

    def __init__(self, where: Path | BlobBackend, *, chunk_size: int = CHUNK_SIZE) -> None:
        if not _MIN_CHUNK_SIZE <= chunk_size <= _MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {_MIN_CHUNK_SIZE}..{_MAX_CHUNK_SIZE} bytes")
        self.backend: BlobBackend = FileBackend(where) if isinstance(where, Path) else where
        self.chunk_size = chunk_size

    @classmethod
    def from_settings(cls, settings: Settings, area: str = "evidence") -> Vault:
        """The vault in the backend `HELPLINE_BLOB_BACKEND` names; `area` as in
        `backend_from_settings` (e.g. "handover" for sealed packets)."""
        return cls(backend_from_settings(settings, area))

    def _files(self) -> FileBackend:
        if not isinstance(self.backend, FileBackend):
            raise TypeError("this vault keeps its blobs in a bucket, not in files")
        return self.backend

    @property
    def root(self) -> Path:
        """The vault's directory (filesystem backend only)."""
        return self._files().root

    def path(self, name: str) -> Path:
        """The file of blob `name` (filesystem backend only); only names the vault itself
        makes (32 hex digits) pass, so a name can never point outside the vault."""
        name = _checked(name)  # before anything else: a bad name is refused as such
        return self._files().path(name)

    @staticmethod
    def _check_key(key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the vault key must be {KEY_BYTES} bytes")

    async def store(
        self, chunks: AsyncIterator[bytes], key: bytes, *, max_bytes: int
    ) -> StoredBlob:
        """Encrypt the stream `chunks` into a new blob and return what was learned on the way.

        `max_bytes` is the most this file may hold (the smaller of the per-file limit and what
        is left of the case's quota); one byte more raises TooLarge. An empty stream raises
        Invalid. On any error, including the source failing or the task being cancelled, the
        partial blob is removed before the exception propagates: nothing is left behind.
        """
        self._check_key(key)
        sink = self.backend.create()  # quick, inline: it cannot be lost to a cancellation
        size = 0
        head = bytearray()
        gathered = _Batch()
        batch_bytes = self.chunk_size * _BATCH_CHUNKS
        pipeline: _Pipeline | None = None
        try:
            pipeline = _Pipeline(_Writer(sink, key, self.chunk_size))
            async for piece in chunks:
                if not piece:
                    continue
                size += len(piece)
                if size > max_bytes:
                    raise TooLarge(
                        f"the file is larger than the limit of {_megabytes(max_bytes)}",
                        max_bytes=max_bytes,
                    )
                if len(head) < HEAD_BYTES:
                    head += piece[: HEAD_BYTES - len(head)]
                # Held, not copied; a mutable buffer is copied, as the source may reuse it.
                gathered.add(piece if isinstance(piece, bytes) else bytes(piece))
                # Keep at least one byte back: the final chunk must be sealed as final, and
                # only the end of the stream says which one that is.
                while gathered.size > batch_bytes:
                    await pipeline.put(gathered.take(batch_bytes), final=False)
            if size == 0:
                raise Invalid("the file is empty")
            await pipeline.put(gathered.take(gathered.size), final=True)
            await _in_thread(_publish, pipeline, sink)
            return StoredBlob(
                name=sink.name,
                size=size,
                sha256=pipeline.writer.sha256.hexdigest(),
                head=bytes(head),
            )
        except BaseException:
            # a cancellation can land just after the publish: the sink removes that too
            await asyncio.shield(asyncio.to_thread(_discard, pipeline, sink))
            raise

    async def read(self, name: str, key: bytes) -> AsyncIterator[bytes]:
        """Yield the plaintext of blob `name` chunk by chunk, each one verified before it is
        yielded. Raises DecryptionError on a wrong key or any change to the blob (after the
        chunks before the damage were yielded: a consumer must not trust a partial read),
        FileNotFoundError when there is no such blob."""
        self._check_key(key)
        handle = await self.backend.open(_checked(name))
        try:
            reader = await _in_thread(_Reader, name, handle, key)
            while not reader.done:
                for plaintext in await _in_thread(reader.read):
                    yield plaintext
        finally:
            handle.close()

    async def read_all(self, name: str, key: bytes, *, max_bytes: int) -> bytes:
        """The whole plaintext of a small blob (an image to hash or preview). Raises TooLarge
        without decrypting when it holds more than `max_bytes`."""
        stored = await self.backend.size(_checked(name))
        chunks = max(1, -(-(stored - HEADER_BYTES) // (self.chunk_size + TAG_BYTES)))
        if stored - HEADER_BYTES - chunks * TAG_BYTES > max_bytes:
            raise TooLarge(
                f"the file is larger than the limit of {_megabytes(max_bytes)}",
                max_bytes=max_bytes,
            )
        parts: list[bytes] = []
        total = 0
        async for plaintext in self.read(name, key):
            total += len(plaintext)
            if total > max_bytes:  # a blob written with another chunk size
                raise TooLarge(
                    f"the file is larger than the limit of {_megabytes(max_bytes)}",
                    max_bytes=max_bytes,
                )
            parts.append(plaintext)
        return b"".join(parts)

    async def destroy(self, name: str) -> bool:
        """Remove blob `name`; returns whether it existed. On disk it is overwritten with
        zeros first; in a bucket it is deleted (there is nothing to overwrite).

        The overwrite is best effort on journaling and copy-on-write file systems and SSDs,
        and a bucket may keep copies the vault cannot see; what makes a destroyed blob
        unreadable for certain is that its key is shredded too.
        """
        return await self.backend.delete(_checked(name))

    async def names_older_than(self, seconds: float, *, now: float | None = None) -> list[str]:
        """Names of the blobs last written more than `seconds` ago (by file mtime, or an
        object's LastModified; `now` is a POSIX timestamp, the current time by default). For
        sweeping blobs that a failed request stored but never recorded."""
        cutoff = (time.time() if now is None else now) - seconds
        return await self.backend.names_before(cutoff)

    async def remove_leftovers(self, *, older_than: float = 24 * 3600) -> int:
        """Remove what crashed processes left behind (temporary files, incomplete multipart
        uploads) that was begun more than `older_than` seconds ago (younger ones may be
        uploads in progress in another instance). Returns how many were removed."""
        return await self.backend.remove_leftovers(older_than)


# ---------------------------------------------------------------- blocking helpers


def _publish(pipeline: _Pipeline, sink: BlobSink) -> None:
    pipeline.close()
    sink.publish()


def _discard(pipeline: _Pipeline | None, sink: BlobSink) -> None:
    if pipeline is not None:
        pipeline.close()  # first: its threads may still write to the sink
    sink.discard()
