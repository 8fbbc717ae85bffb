"""`Vault.store` as a pipeline: batches hashed, encrypted and written in the store's own
threads while the event loop gathers the next. The file format must not change with it, nor
with the backend: every test but the writeback one runs on the directory and on a bucket."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpline.core.errors import TooLarge
from helpline.evidence import blobstore
from helpline.evidence import vault as vault_module
from helpline.evidence.vault import CHUNK_SIZE, HEADER_BYTES, TAG_BYTES, Vault
from tests.evidence.conftest import Blobs

KEY = bytes(range(32))
MiB = 1024 * 1024


@pytest.fixture
def vault(blobs: Blobs) -> Vault:
    return Vault(blobs.backend)


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("vault-")]


def decrypt_by_the_documented_format(blob: bytes, key: bytes) -> bytes:
    """The plaintext of a vault file, read as the module docstring describes the format and
    without the vault's own reader."""
    header = blob[:HEADER_BYTES]
    assert header[:4] == b"HLV1" and header[4] == 1
    chunk_size = int.from_bytes(header[5:9], "big")
    prefix = header[25:32]
    body = blob[HEADER_BYTES:]
    blocks = [body[i : i + chunk_size + TAG_BYTES] for i in range(0, len(body), chunk_size + 16)]
    aead = AESGCM(key)
    plaintext = []
    for index, block in enumerate(blocks):
        final = b"\x01" if index == len(blocks) - 1 else b"\x00"
        nonce = prefix + index.to_bytes(4, "big") + final
        plaintext.append(aead.decrypt(nonce, block, header + index.to_bytes(8, "big") + final))
    return b"".join(plaintext)


async def odd_pieces(data: bytes, seed: int = 0) -> AsyncIterator[bytes]:
    sizes = random.Random(seed)
    start = 0
    while start < len(data):
        step = sizes.choice([1, 17, 4096, CHUNK_SIZE - 1, CHUNK_SIZE + 1, 300_000, MiB + 3])
        yield data[start : start + step]
        start += step


@pytest.mark.parametrize("size", [1, CHUNK_SIZE, MiB, MiB + 1, 5 * MiB + 12_345])
async def test_the_file_format_is_the_documented_one(vault: Vault, blobs: Blobs, size: int) -> None:
    data = os.urandom(size)
    blob = await vault.store(odd_pieces(data, seed=size), KEY, max_bytes=size)
    on_disk = blobs.raw(blob.name)
    chunks = -(-size // CHUNK_SIZE)
    assert len(on_disk) == HEADER_BYTES + size + chunks * TAG_BYTES
    assert decrypt_by_the_documented_format(on_disk, KEY) == data
    assert blob.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_source_that_reuses_its_buffer_is_stored_as_it_was_yielded(vault: Vault) -> None:
    expected = hashlib.sha256()
    sent = []

    async def reusing() -> AsyncIterator[bytes]:
        buffer = bytearray(100_000)
        for seed in range(40):  # 4 MB: several batches in the threads at once
            buffer[:] = hashlib.sha256(bytes([seed])).digest() * 3125
            expected.update(buffer)
            sent.append(bytes(buffer))
            yield buffer  # type: ignore[misc]  # a bytearray where bytes are promised
            yield memoryview(buffer)[:10]  # type: ignore[misc]

    blob = await vault.store(reusing(), KEY, max_bytes=10 * MiB)
    stored = b"".join([chunk async for chunk in vault.read(blob.name, KEY)])
    assert stored == b"".join(piece + piece[:10] for piece in sent)
    assert blob.size == len(stored)


async def test_the_threads_end_with_the_store(vault: Vault) -> None:
    data = os.urandom(3 * MiB + 5)
    blob = await vault.store(odd_pieces(data), KEY, max_bytes=4 * MiB)
    assert blob.size == len(data)
    assert pipeline_threads() == []


async def test_a_source_failing_with_batches_in_flight_leaves_nothing(
    vault: Vault, blobs: Blobs
) -> None:
    async def disconnecting() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield os.urandom(MiB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await vault.store(disconnecting(), KEY, max_bytes=100 * MiB)
    assert blobs.contents() == []
    assert pipeline_threads() == []


async def test_cancelled_with_batches_in_flight_leaves_nothing(vault: Vault, blobs: Blobs) -> None:
    started = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield os.urandom(MiB)
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(vault.store(stalling(), KEY, max_bytes=100 * MiB))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blobs.contents() == []
    assert pipeline_threads() == []


async def test_a_failure_in_the_writing_thread_leaves_nothing(
    vault: Vault, blobs: Blobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chunk counter's limit (2**32 chunks, 256 TiB) lowered, so that the writing thread
    # refuses a file mid-stream while the loop goes on feeding batches.
    monkeypatch.setattr(vault_module, "_MAX_CHUNKS", 40)
    fed = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal fed
        for _ in range(64):
            fed += 1
            yield os.urandom(MiB)

    with pytest.raises(TooLarge, match="too large for the evidence vault"):
        await vault.store(source(), KEY, max_bytes=100 * MiB)
    assert blobs.contents() == []
    assert pipeline_threads() == []
    assert fed < 64  # stopped once the thread failed, not at the end of the stream


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_early_writeback_is_available_on_linux(tmp_path: Path) -> None:
    # Without it, stores still work but end in a long fsync (see docs/benchmarks.md).
    assert blobstore._sync_file_range() is not None
    path = tmp_path / "file"
    with open(path, "wb") as handle:
        handle.write(os.urandom(MiB))
        handle.flush()
        blobstore._start_writeback(handle.fileno(), 0, MiB)
    assert path.stat().st_size == MiB


async def test_stores_at_the_same_time_keep_to_their_own_files(vault: Vault, blobs: Blobs) -> None:
    # more than one part each in a bucket (5 MiB parts in the tests): concurrent multipart
    contents = [os.urandom(6 * MiB + seed) for seed in range(4)]
    stored = await asyncio.gather(
        *(
            vault.store(odd_pieces(data, seed=n), KEY, max_bytes=8 * MiB)
            for n, data in enumerate(contents)
        )
    )
    for blob, data in zip(stored, contents, strict=True):
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        assert decrypt_by_the_documented_format(blobs.raw(blob.name), KEY) == data
    assert pipeline_threads() == []
