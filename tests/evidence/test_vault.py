"""The vault on both blob backends (`blobs`: the data directory and an S3 bucket), and a few
tests of the filesystem backend alone: the directory's mode, the zero overwrite on destroy,
leftovers by file mtime, and memory measured with tracemalloc (moto's server shares this
process, so for the bucket tests/evidence/test_vault_s3.py checks the part buffers instead)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from helpline.core.crypto import DecryptionError
from helpline.core.errors import Invalid, TooLarge
from helpline.evidence.vault import CHUNK_SIZE, HEAD_BYTES, HEADER_BYTES, TAG_BYTES, Vault
from tests.evidence.conftest import Blobs

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MiB = 1024 * 1024


async def stream(data: bytes, piece: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def pieces(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_back(vault: Vault, name: str, key: bytes = KEY) -> bytes:
    return b"".join([chunk async for chunk in vault.read(name, key)])


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def vault(blobs: Blobs) -> Vault:
    return Vault(blobs.backend)


@pytest.fixture
def file_vault(tmp_path: Path) -> Vault:
    return Vault(tmp_path / "evidence")


def test_vault_directory_is_private(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "data" / "evidence")
    assert stat.S_IMODE(vault.root.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "size", [1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 5 * MiB + 7]
)
async def test_round_trip(vault: Vault, size: int, blobs: Blobs) -> None:
    data = os.urandom(size)
    blob = await vault.store(stream(data), KEY, max_bytes=10 * MiB)

    assert blob.size == size
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.head == data[:HEAD_BYTES]
    assert len(blob.name) == 32 and int(blob.name, 16) >= 0
    assert blob.name != blob.sha256[:32]
    assert blobs.contents() == [blob.name]
    assert await read_back(vault, blob.name) == data
    assert await vault.read_all(blob.name, KEY, max_bytes=size) == data
    chunks = -(-size // CHUNK_SIZE)
    assert len(blobs.raw(blob.name)) == HEADER_BYTES + size + chunks * TAG_BYTES


async def test_chunks_are_fixed_size_whatever_the_source_sends(vault: Vault) -> None:
    data = pattern(3 * CHUNK_SIZE + 5)
    odd = [data[:1], data[1 : CHUNK_SIZE + 3], b"", data[CHUNK_SIZE + 3 : 3 * MiB]]
    blob = await vault.store(pieces(odd), KEY, max_bytes=MiB)
    yielded = [len(chunk) async for chunk in vault.read(blob.name, KEY)]
    assert yielded == [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 5]


async def test_one_large_piece_is_fine(vault: Vault) -> None:
    data = pattern(3 * MiB + 1)
    blob = await vault.store(pieces([data]), KEY, max_bytes=4 * MiB)
    assert await read_back(vault, blob.name) == data


async def test_empty_file_is_refused_and_leaves_nothing(vault: Vault, blobs: Blobs) -> None:
    with pytest.raises(Invalid, match="the file is empty"):
        await vault.store(pieces([]), KEY, max_bytes=MiB)
    with pytest.raises(Invalid, match="the file is empty"):
        await vault.store(pieces([b"", b""]), KEY, max_bytes=MiB)
    assert blobs.contents() == []


async def test_ciphertext_does_not_contain_the_plaintext(vault: Vault, blobs: Blobs) -> None:
    secret = b"the address is Keizersgracht 123, Amsterdam. " * 2000
    blob = await vault.store(stream(secret), KEY, max_bytes=MiB)
    on_disk = blobs.raw(blob.name)
    assert on_disk.startswith(b"HLV1")
    assert b"Keizersgracht" not in on_disk
    assert secret[:32] not in on_disk


async def test_same_content_twice_gives_different_names_and_ciphertexts(
    vault: Vault, blobs: Blobs
) -> None:
    data = pattern(100_000)
    first = await vault.store(stream(data), KEY, max_bytes=MiB)
    second = await vault.store(stream(data), KEY, max_bytes=MiB)
    assert first.name != second.name
    assert first.sha256 == second.sha256
    assert blobs.raw(first.name) != blobs.raw(second.name)


async def test_wrong_key_fails(vault: Vault) -> None:
    blob = await vault.store(stream(b"evidence"), KEY, max_bytes=MiB)
    with pytest.raises(DecryptionError):
        await read_back(vault, blob.name, OTHER_KEY)


@pytest.mark.parametrize("offset", [0, 4, 5, 9, 20, HEADER_BYTES - 1, HEADER_BYTES, -1, -17])
async def test_flipping_one_byte_fails(vault: Vault, offset: int, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(2 * CHUNK_SIZE + 10)), KEY, max_bytes=MiB)
    damaged = bytearray(blobs.raw(blob.name))
    damaged[offset] ^= 0x01
    blobs.replace(blob.name, bytes(damaged))
    with pytest.raises(DecryptionError):
        await read_back(vault, blob.name)


async def test_truncating_the_last_chunk_fails(vault: Vault, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(2 * CHUNK_SIZE + 10)), KEY, max_bytes=MiB)
    whole = blobs.raw(blob.name)
    last_chunk = 10 + TAG_BYTES
    for cut in (whole[:-last_chunk], whole[:-1], whole[:HEADER_BYTES], whole[:10]):
        blobs.replace(blob.name, cut)
        with pytest.raises(DecryptionError):
            await read_back(vault, blob.name)


async def test_cutting_at_a_chunk_boundary_fails(vault: Vault, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(2 * CHUNK_SIZE)), KEY, max_bytes=MiB)
    blobs.replace(blob.name, blobs.raw(blob.name)[: HEADER_BYTES + CHUNK_SIZE + TAG_BYTES])
    with pytest.raises(DecryptionError):
        await read_back(vault, blob.name)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * (CHUNK_SIZE + TAG_BYTES)])
async def test_appending_bytes_fails(vault: Vault, extra: bytes, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(CHUNK_SIZE + 10)), KEY, max_bytes=MiB)
    blobs.replace(blob.name, blobs.raw(blob.name) + extra)
    with pytest.raises(DecryptionError):
        await read_back(vault, blob.name)


async def test_appending_a_copy_of_the_last_chunk_fails(vault: Vault, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(2 * CHUNK_SIZE)), KEY, max_bytes=MiB)
    whole = blobs.raw(blob.name)
    blobs.replace(blob.name, whole + whole[-(CHUNK_SIZE + TAG_BYTES) :])
    with pytest.raises(DecryptionError):
        await read_back(vault, blob.name)


async def test_swapping_two_chunks_fails(vault: Vault, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(3 * CHUNK_SIZE, seed=1)), KEY, max_bytes=MiB)
    whole = blobs.raw(blob.name)
    block = CHUNK_SIZE + TAG_BYTES
    header, first, second, third = (
        whole[:HEADER_BYTES],
        whole[HEADER_BYTES : HEADER_BYTES + block],
        whole[HEADER_BYTES + block : HEADER_BYTES + 2 * block],
        whole[HEADER_BYTES + 2 * block :],
    )
    blobs.replace(blob.name, header + second + first + third)
    with pytest.raises(DecryptionError, match="chunk 0"):
        await read_back(vault, blob.name)


async def test_a_chunk_from_another_file_under_the_same_key_fails(
    vault: Vault, blobs: Blobs
) -> None:
    data = pattern(2 * CHUNK_SIZE + 100, seed=2)
    one = await vault.store(stream(data), KEY, max_bytes=MiB)
    other = await vault.store(stream(data), KEY, max_bytes=MiB)
    block = CHUNK_SIZE + TAG_BYTES
    mine, theirs = blobs.raw(one.name), blobs.raw(other.name)
    spliced = mine[: HEADER_BYTES + block] + theirs[HEADER_BYTES + block : HEADER_BYTES + 2 * block]
    blobs.replace(one.name, spliced + mine[HEADER_BYTES + 2 * block :])
    with pytest.raises(DecryptionError, match="chunk 1"):
        await read_back(vault, one.name)
    # and the other file's header on this file's chunks
    blobs.replace(one.name, theirs[:HEADER_BYTES] + mine[HEADER_BYTES:])
    with pytest.raises(DecryptionError, match="chunk 0"):
        await read_back(vault, one.name)


async def test_not_a_vault_file(vault: Vault, blobs: Blobs) -> None:
    name = "ab" * 16
    blobs.replace(name, b"GIF89a" + bytes(100))
    with pytest.raises(DecryptionError, match="not a version 1 vault file"):
        await read_back(vault, name)


@pytest.mark.parametrize("limit", [0, 1, CHUNK_SIZE, 2 * MiB])
async def test_over_the_limit_is_refused_and_leaves_nothing(
    vault: Vault, limit: int, blobs: Blobs
) -> None:
    consumed = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal consumed
        for _ in range(100):
            consumed += 1
            yield pattern(100_000)

    with pytest.raises(TooLarge, match="larger than the limit") as refused:
        await vault.store(source(), KEY, max_bytes=limit)
    assert refused.value.status == 413
    assert blobs.contents() == []
    assert consumed <= limit // 100_000 + 1  # refused while streaming, not at the end


async def test_exactly_the_limit_is_accepted(vault: Vault) -> None:
    blob = await vault.store(stream(pattern(300_000)), KEY, max_bytes=300_000)
    assert blob.size == 300_000


async def test_a_failing_source_leaves_nothing(vault: Vault, blobs: Blobs) -> None:
    async def disconnecting() -> AsyncIterator[bytes]:
        yield pattern(3 * MiB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError, match="client went away"):
        await vault.store(disconnecting(), KEY, max_bytes=10 * MiB)
    assert blobs.contents() == []


async def test_a_cancelled_upload_leaves_nothing(vault: Vault, blobs: Blobs) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield pattern(2 * MiB)
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(vault.store(slow(), KEY, max_bytes=10 * MiB))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blobs.contents() == []


async def test_read_all_refuses_above_max_bytes(vault: Vault) -> None:
    blob = await vault.store(stream(pattern(200_000)), KEY, max_bytes=MiB)
    with pytest.raises(TooLarge):
        await vault.read_all(blob.name, KEY, max_bytes=199_999)
    assert len(await vault.read_all(blob.name, KEY, max_bytes=200_000)) == 200_000


async def test_read_stops_early_without_leaking(vault: Vault) -> None:
    blob = await vault.store(stream(pattern(5 * CHUNK_SIZE)), KEY, max_bytes=MiB)
    reader = vault.read(blob.name, KEY)
    async for _chunk in reader:
        break
    await reader.aclose()  # type: ignore[attr-defined]
    assert await vault.destroy(blob.name)


async def test_destroy_removes(vault: Vault, blobs: Blobs) -> None:
    blob = await vault.store(stream(pattern(CHUNK_SIZE * 2)), KEY, max_bytes=MiB)
    other = await vault.store(stream(b"another file"), KEY, max_bytes=MiB)
    assert await vault.destroy(blob.name) is True
    assert blobs.contents() == [other.name]
    assert await vault.destroy(blob.name) is False
    with pytest.raises(FileNotFoundError):
        await read_back(vault, blob.name)
    with pytest.raises(FileNotFoundError):
        await vault.read_all(blob.name, KEY, max_bytes=MiB)
    assert await read_back(vault, other.name) == b"another file"


async def test_destroy_overwrites_a_file_before_removing_it(file_vault: Vault) -> None:
    vault = file_vault
    blob = await vault.store(stream(pattern(CHUNK_SIZE * 2)), KEY, max_bytes=MiB)
    path = vault.path(blob.name)
    survivor = os.open(path, os.O_RDONLY)  # sees the inode after the unlink
    try:
        assert await vault.destroy(blob.name) is True
        assert not path.exists()
        assert os.listdir(vault.root) == []
        left = os.pread(survivor, 1 << 20, 0)
        assert left == bytes(len(left)) and len(left) > 2 * CHUNK_SIZE
    finally:
        os.close(survivor)
    assert await vault.destroy(blob.name) is False
    with pytest.raises(FileNotFoundError):
        await read_back(vault, blob.name)


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        "",
        "/etc/passwd",
        "A" * 32,
        "ab" * 15,
        "ab" * 17,
        "../" + "a" * 29,
        "ab" * 15 + "\n",
    ],
)
async def test_bad_names_are_refused(vault: Vault, blobs: Blobs, name: str) -> None:
    if blobs.kind == "filesystem":
        with pytest.raises(Invalid):
            vault.path(name)
    with pytest.raises(Invalid):
        await vault.read_all(name, KEY, max_bytes=MiB)
    with pytest.raises(Invalid):
        await vault.destroy(name)
    with pytest.raises(Invalid):
        await read_back(vault, name)


async def test_keys_must_be_256_bits(vault: Vault, blobs: Blobs) -> None:
    with pytest.raises(ValueError):
        await vault.store(stream(b"x"), b"short", max_bytes=10)
    assert blobs.contents() == []


async def test_names_older_than_and_leftover_files(file_vault: Vault) -> None:
    vault = file_vault
    blob = await vault.store(stream(b"evidence"), KEY, max_bytes=MiB)
    leftover = vault.root / ".tmp-0123"
    leftover.write_bytes(b"partial")
    now = time.time()
    assert await vault.names_older_than(60, now=now) == []
    assert await vault.names_older_than(60, now=now + 120) == [blob.name]
    assert await vault.remove_leftovers() == 0  # may be an upload in progress
    old = now - 2 * 24 * 3600
    os.utime(leftover, (old, old))
    assert await vault.remove_leftovers() == 1
    assert os.listdir(vault.root) == [blob.name]


async def test_memory_stays_flat_for_a_large_stream(file_vault: Vault) -> None:
    vault = file_vault
    piece = pattern(MiB)
    total = 200 * MiB
    expected = hashlib.sha256()
    for _ in range(total // MiB):
        expected.update(piece)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            yield piece

    tracemalloc.start()
    try:
        blob = await vault.store(source(), KEY, max_bytes=total)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.size == total
    assert blob.sha256 == expected.hexdigest()
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"

    tracemalloc.start()
    try:
        check = hashlib.sha256()
        async for chunk in vault.read(blob.name, KEY):
            check.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert check.hexdigest() == expected.hexdigest()
    assert peak < 16 * MiB, f"peak while reading {peak / MiB:.1f} MiB"


async def test_the_event_loop_keeps_running_during_a_store(vault: Vault) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def source() -> AsyncIterator[bytes]:
        piece = pattern(MiB)
        for _ in range(32):
            yield piece

    task = asyncio.create_task(ticker())
    await vault.store(source(), KEY, max_bytes=64 * MiB)
    stop.set()
    await task
    assert ticks > 32
