"""The evidence vault: files encrypted in fixed-size AES-256-GCM chunks, streamed in and out.

Blobs live in one directory (mode 0700) under random names (`secrets.token_hex(16)`, never a
content hash, so a name says nothing about what is inside). Each file is encrypted under a key
the caller passes, normally `FieldCipher.derive("evidence-vault")` of the case's data key, so
shredding the case key makes every blob of the case unreadable.

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
them into a reused buffer and writes them, while the loop gathers the next batch. hashlib
and os.write release the GIL, so the steps share out both cores. Memory stays flat: the loop
waits while more than two batches are queued, so a store holds at most about four batches of
plaintext (three queued, one being gathered) plus one incoming piece, and one batch of
ciphertext. Every 8 MiB written, the kernel is asked to start writing the file out
(sync_file_range on Linux), so the disk works while the rest arrives and the final fsync has
little left to do. Figures: docs/benchmarks.md, "Evidence vault".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import hashlib
import os
import re
import secrets
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpline.core.crypto import KEY_BYTES, DecryptionError
from helpline.core.errors import Invalid, TooLarge

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
_WRITEBACK_BYTES = 8 * 1024 * 1024  # start writeback after this much more was written
_SYNC_FILE_RANGE_WRITE = 2
_WIPE_BYTES = 1024 * 1024
_NAME = re.compile(r"[0-9a-f]{32}")
_TEMPORARY_PREFIX = ".tmp-"

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


@functools.cache
def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2), which Python does not wrap, with SYNC_FILE_RANGE_WRITE:
    start writing a range of a file back to the disk without waiting for it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """A hint only, so failures are ignored: the fsync at the end is what makes a blob
    durable, and it reports any write error."""
    start = _sync_file_range()
    if start is not None:
        start(fd, offset, length)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


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
    and writes them chunk by chunk (`write`). `_Pipeline` runs the two in separate threads."""

    def __init__(self, fd: int, key: bytes, chunk_size: int) -> None:
        self.fd = fd
        self.chunk_size = chunk_size
        self.aead = AESGCM(key)
        self.prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        self.header = _HEADER.pack(
            MAGIC, VERSION, chunk_size, secrets.token_bytes(FILE_ID_BYTES), self.prefix
        )
        self.sha256 = hashlib.sha256()
        self.index = 0
        self.sealed = bytearray()  # ciphertext of one batch, reused
        self.written = 0
        self.flushed = 0

    def hash(self, pieces: list[memoryview]) -> None:
        for piece in pieces:
            self.sha256.update(piece)

    def write(self, pieces: list[memoryview], final: bool) -> None:
        """Encrypt `pieces` chunk by chunk and write them; when `final`, their last chunk ends
        the file, and the file is flushed to disk. Only the last chunk of the file may be
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
            _write_all(self.fd, sealed[:end])
        self.written += end
        if final:
            os.fsync(self.fd)
        elif self.written - self.flushed >= _WRITEBACK_BYTES:
            # Hand what was written so far to the disk now rather than all of it at the
            # final fsync: the disk works while the rest arrives, and the fsync is short.
            _start_writeback(self.fd, self.flushed, self.written - self.flushed)
            self.flushed = self.written

    def _seal(self, nonce: bytes, chunk: memoryview, associated: bytes, into: memoryview) -> None:
        self.aead.encrypt_into(nonce, chunk, associated, into)  # cryptography >= 47


class _Pipeline:
    """The threads of one `store`: one hashes the batches, one encrypts and writes them, each
    in order, while the event loop gathers the next batch. hashlib and os.write let go of
    the GIL, so SHA-256, the slowest step, runs on a core of its own. The loop waits while
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
        those in progress (they use the file)."""
        for executor in (self.hashing, self.writing):
            executor.shutdown(wait=True, cancel_futures=True)


class _Reader:
    """The blocking half of `Vault.read`: reads, checks and decrypts batches of chunks."""

    def __init__(self, name: str, handle: BinaryIO, key: bytes) -> None:
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


class Vault:
    """Encrypted blob storage in one directory. Create one per process (in the lifespan)."""

    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE) -> None:
        if not _MIN_CHUNK_SIZE <= chunk_size <= _MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {_MIN_CHUNK_SIZE}..{_MAX_CHUNK_SIZE} bytes")
        self.root = root
        self.chunk_size = chunk_size
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # mkdir's mode is filtered by the umask

    def path(self, name: str) -> Path:
        """The file of blob `name`; only names the vault itself makes (32 hex digits) pass, so
        a name can never point outside the vault."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Invalid("not a valid evidence blob name")
        return self.root / name

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
        partial file is removed before the exception propagates: nothing is left behind.
        """
        self._check_key(key)
        temporary = self.root / f"{_TEMPORARY_PREFIX}{secrets.token_hex(16)}"
        # Creating an empty file is quick; done inline, it cannot be lost to a cancellation.
        handle = _create_exclusive(temporary)
        size = 0
        head = bytearray()
        gathered = _Batch()
        batch_bytes = self.chunk_size * _BATCH_CHUNKS
        pipeline: _Pipeline | None = None
        final: Path | None = None
        try:
            pipeline = _Pipeline(_Writer(handle.fileno(), key, self.chunk_size))
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
            name = secrets.token_hex(16)
            final = self.root / name
            await _in_thread(_publish, pipeline, handle, temporary, final)
            return StoredBlob(
                name=name, size=size, sha256=pipeline.writer.sha256.hexdigest(), head=bytes(head)
            )
        except BaseException:
            # `final` too: a cancellation can land just after the rename
            await asyncio.shield(asyncio.to_thread(_discard, pipeline, handle, temporary, final))
            raise

    async def read(self, name: str, key: bytes) -> AsyncIterator[bytes]:
        """Yield the plaintext of blob `name` chunk by chunk, each one verified before it is
        yielded. Raises DecryptionError on a wrong key or any change to the file (after the
        chunks before the damage were yielded: a consumer must not trust a partial read),
        FileNotFoundError when there is no such blob."""
        self._check_key(key)
        path = self.path(name)
        handle = _open_for_reading(path)  # quick, and inline it cannot leak on cancellation
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
        path = self.path(name)
        stored = (await asyncio.to_thread(os.stat, path)).st_size
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
        """Overwrite blob `name` with zeros, then remove it. Returns whether it existed.

        The overwrite is best effort on journaling and copy-on-write file systems and SSDs;
        what makes a destroyed blob unreadable for certain is that its key is shredded too.
        """
        path = self.path(name)
        return await asyncio.to_thread(_wipe, path)

    async def names_older_than(self, seconds: float, *, now: float | None = None) -> list[str]:
        """Names of the blobs last written more than `seconds` ago (by file mtime; `now` is a
        POSIX timestamp, the current time by default). For sweeping blobs that a failed
        request stored but never recorded."""
        cutoff = (time.time() if now is None else now) - seconds
        return await asyncio.to_thread(_names_before, self.root, cutoff)

    async def remove_leftovers(self, *, older_than: float = 24 * 3600) -> int:
        """Remove temporary files that a crashed process left behind and that were last
        written more than `older_than` seconds ago (younger ones may be uploads in progress in
        another instance). Returns how many were removed."""
        return await asyncio.to_thread(_remove_temporaries, self.root, older_than)


# ---------------------------------------------------------------- blocking helpers


def _create_exclusive(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _open_for_reading(path: Path) -> BinaryIO:
    return open(path, "rb")  # closed by the generator that owns it


def _publish(pipeline: _Pipeline, handle: BinaryIO, temporary: Path, final: Path) -> None:
    pipeline.close()
    handle.close()
    os.replace(temporary, final)
    _fsync_directory(final.parent)


def _discard(
    pipeline: _Pipeline | None, handle: BinaryIO, temporary: Path, final: Path | None
) -> None:
    if pipeline is not None:
        pipeline.close()  # first: its threads may still write to the file
    with contextlib.suppress(OSError):
        handle.close()
    for path in (temporary, final):
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wipe(path: Path) -> bool:
    try:
        handle = open(path, "r+b")
    except FileNotFoundError:
        return False
    with handle:
        remaining = os.fstat(handle.fileno()).st_size
        zeros = bytes(min(remaining, _WIPE_BYTES))
        while remaining > 0:
            step = min(remaining, _WIPE_BYTES)
            handle.write(zeros[:step])
            remaining -= step
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    _fsync_directory(path.parent)
    return True


def _remove_temporaries(root: Path, older_than: float) -> int:
    cutoff = time.time() - older_than
    count = 0
    for entry in root.glob(f"{_TEMPORARY_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime <= cutoff:
                entry.unlink()
                count += 1
    return count


def _names_before(root: Path, cutoff: float) -> list[str]:
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if _NAME.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime <= cutoff:
                        names.append(entry.name)
    return sorted(names)
