"""Where the vault's blobs live: a directory (the default) or an S3-compatible bucket.

The vault encrypts and authenticates; a backend only keeps ciphertext. It makes new blobs
(`create`, a `BlobSink` that the vault's writing thread feeds batch by batch), opens them for
reading, and deletes and lists them. `HELPLINE_BLOB_BACKEND` chooses one
(`backend_from_settings`); docs/decisions/0008-s3-blob-backend.md says why the bucket is an
option and what it changes.

`FileBackend` is the vault as it always was: one directory (mode 0700), a blob written to a
temporary file and renamed when complete, writeback started every 8 MiB (sync_file_range on
Linux) so the final fsync has little left to do, and zeros written over a blob before it is
unlinked. `S3Backend` lives in `helpline.evidence.s3blobs`, so that boto3 is imported only
where a bucket is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from helpline.core.config import Settings

NAME = re.compile(r"[0-9a-f]{32}")  # secrets.token_hex(16): says nothing about the content
NAME_PART = re.compile(r"[a-z]+")
TEMPORARY_PREFIX = ".tmp-"
_WRITEBACK_BYTES = 8 * 1024 * 1024  # start writeback after this much more was written
_SYNC_FILE_RANGE_WRITE = 2
_WIPE_BYTES = 1024 * 1024


def new_name() -> str:
    return secrets.token_hex(16)


class BlobSink(Protocol):
    """One blob being written. The vault calls `write` from its writing thread, batch after
    batch in order, then `publish` (the blob appears under `name`) or, on any failure or
    cancellation, `discard` (nothing is left, not even a published blob), both from a worker
    thread once the writing thread has ended. All three block."""

    name: str

    def write(self, data: memoryview, *, final: bool) -> None:
        """Keep `data` (a view the caller reuses after this returns); `final`: it ends the
        blob, and once this returns the blob must be durable."""

    def publish(self) -> None: ...

    def discard(self) -> None:
        """Never raises: it runs while another exception propagates."""


class BlobSource(Protocol):
    """A blob open for reading, front to back. `read(size)` returns fewer than `size` bytes
    only at the end."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class BlobBackend(Protocol):
    """Storage for ciphertext blobs under names that `new_name` makes. The vault checks every
    name (`NAME`) before it reaches a backend."""

    def create(self) -> BlobSink:
        """A sink for a new blob. Called on the event loop, so it must be quick; whatever it
        allocates, `discard` frees."""

    async def open(self, name: str) -> BlobSource:
        """Raises FileNotFoundError when there is no such blob."""

    async def size(self, name: str) -> int:
        """The stored (ciphertext) size; FileNotFoundError when there is no such blob."""

    async def delete(self, name: str) -> bool:
        """Remove the blob as thoroughly as the storage allows; whether it existed."""

    async def names_before(self, cutoff: float) -> list[str]:
        """Names of the blobs last written at or before `cutoff` (a POSIX time), sorted."""

    async def remove_leftovers(self, older_than: float) -> int:
        """Remove what crashed stores left (partial writes begun more than `older_than`
        seconds ago); how many."""


def backend_from_settings(settings: Settings, area: str = "evidence") -> BlobBackend:
    """The backend `HELPLINE_BLOB_BACKEND` names, configured from the settings. `area` keeps
    apart blobs with their own life cycle (the evidence orphan sweep must not see handover
    packets): the directory `<data dir>/<area>`, or in a bucket the prefix
    `HELPLINE_S3_PREFIX` for evidence and `HELPLINE_S3_PREFIX<area>/` for any other area."""
    if not NAME_PART.fullmatch(area):
        raise ValueError("an area is a lower-case word")
    if settings.blob_backend == "s3":
        from helpline.evidence.s3blobs import S3Backend, s3_client

        secret = settings.s3_secret_access_key
        client = s3_client(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id or "",
            secret_access_key=secret.get_secret_value() if secret is not None else "",
        )
        prefix = settings.s3_prefix if area == "evidence" else f"{settings.s3_prefix}{area}/"
        return S3Backend(client, settings.s3_bucket, prefix=prefix)
    return FileBackend(settings.data_dir / area)


# ---------------------------------------------------------------- a directory


class FileBackend:
    """Blobs as files in one directory (mode 0700), named by their blob names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # mkdir's mode is filtered by the umask

    def path(self, name: str) -> Path:
        return self.root / name

    def create(self) -> FileSink:
        # Creating an empty file is quick; done inline, it cannot be lost to a cancellation.
        return FileSink(self.root)

    async def open(self, name: str) -> BlobSource:
        # quick, and inline (no await) it cannot leak on cancellation; closed by the reader
        return open(self.path(name), "rb")

    async def size(self, name: str) -> int:
        return (await asyncio.to_thread(os.stat, self.path(name))).st_size

    async def delete(self, name: str) -> bool:
        return await asyncio.to_thread(_wipe, self.path(name))

    async def names_before(self, cutoff: float) -> list[str]:
        return await asyncio.to_thread(_names_before, self.root, cutoff)

    async def remove_leftovers(self, older_than: float) -> int:
        return await asyncio.to_thread(_remove_temporaries, self.root, older_than)


class FileSink:
    """A temporary file in the vault directory, renamed to the blob's name when complete."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = new_name()
        self.temporary = root / f"{TEMPORARY_PREFIX}{secrets.token_hex(16)}"
        self.final = root / self.name
        self.handle = _create_exclusive(self.temporary)
        self.fd = self.handle.fileno()
        self.written = 0
        self.flushed = 0
        self.publishing = False

    def write(self, data: memoryview, *, final: bool) -> None:
        _write_all(self.fd, data)
        self.written += len(data)
        if final:
            os.fsync(self.fd)
        elif self.written - self.flushed >= _WRITEBACK_BYTES:
            # Hand what was written so far to the disk now rather than all of it at the
            # final fsync: the disk works while the rest arrives, and the fsync is short.
            _start_writeback(self.fd, self.flushed, self.written - self.flushed)
            self.flushed = self.written

    def publish(self) -> None:
        self.publishing = True  # from here on, `discard` removes the final name too
        self.handle.close()
        os.replace(self.temporary, self.final)
        _fsync_directory(self.root)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        for path in (self.temporary, self.final) if self.publishing else (self.temporary,):
            with contextlib.suppress(OSError):
                path.unlink()


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


def _create_exclusive(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wipe(path: Path) -> bool:
    """Overwrite with zeros, then unlink. The overwrite is best effort on journaling and
    copy-on-write file systems and SSDs; what makes a destroyed blob unreadable for certain is
    that its key is shredded too."""
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
    for entry in root.glob(f"{TEMPORARY_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime <= cutoff:
                entry.unlink()
                count += 1
    return count


def _names_before(root: Path, cutoff: float) -> list[str]:
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if NAME.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime <= cutoff:
                        names.append(entry.name)
    return sorted(names)
