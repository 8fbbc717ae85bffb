"""The S3 blob backend against a real S3-compatible server (moto) on loopback: multipart
uploads, what a failed store leaves (nothing), what the bucket holds (ciphertext), bounded
part buffers, listing under the prefix, leftovers, and the settings that choose it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpline.core.config import ConfigError, load_settings
from helpline.evidence.blobstore import FileBackend
from helpline.evidence.s3blobs import MIN_PART_SIZE, S3Backend
from helpline.evidence.vault import Vault
from tests.evidence.conftest import PREFIX, Blobs
from tests.evidence.test_vault_pipeline import decrypt_by_the_documented_format

KEY = bytes(range(32))
MiB = 1024 * 1024


def backend(blobs: Blobs) -> S3Backend:
    assert isinstance(blobs.backend, S3Backend)
    return blobs.backend


def upload_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("vault-upload")]


async def pieces(data: bytes, piece: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def test_a_file_larger_than_a_part_is_a_multipart_upload_and_round_trips(
    s3_blobs: Blobs,
) -> None:
    vault = Vault(s3_blobs.backend, chunk_size=4096)  # small chunks: many per part
    data = os.urandom(12 * MiB + 123)
    blob = await vault.store(pieces(data), KEY, max_bytes=len(data))

    head = s3_blobs.s3.head_object(Bucket=s3_blobs.bucket, Key=PREFIX + blob.name)
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB: three parts
    assert s3_blobs.contents() == [blob.name]  # and no upload left open
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join([chunk async for chunk in vault.read(blob.name, KEY)]) == data
    assert decrypt_by_the_documented_format(s3_blobs.raw(blob.name), KEY) == data
    assert upload_threads() == []


async def test_a_file_within_one_part_is_one_put(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    data = os.urandom(MIN_PART_SIZE - 4096)  # with the header and 80 tags, still one part
    blob = await vault.store(pieces(data), KEY, max_bytes=len(data))
    head = s3_blobs.s3.head_object(Bucket=s3_blobs.bucket, Key=PREFIX + blob.name)
    assert "-" not in head["ETag"]
    assert await vault.read_all(blob.name, KEY, max_bytes=len(data)) == data


async def test_the_bucket_holds_only_ciphertext(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    secret = b"the address is Keizersgracht 123, Amsterdam. " * 200_000  # 9 MB: multipart
    blob = await vault.store(pieces(secret), KEY, max_bytes=len(secret))
    stored = s3_blobs.raw(blob.name)
    assert stored.startswith(b"HLV1")
    assert b"Keizersgracht" not in stored
    assert secret[:32] not in stored
    metadata = s3_blobs.s3.head_object(Bucket=s3_blobs.bucket, Key=PREFIX + blob.name)
    assert metadata["ContentType"] == "application/octet-stream"
    assert metadata.get("Metadata", {}) == {}


@pytest.mark.parametrize("how", ["source fails", "cancelled"])
async def test_a_store_stopped_after_some_parts_leaves_no_object_and_no_upload(
    s3_blobs: Blobs, how: str
) -> None:
    vault = Vault(s3_blobs.backend)
    sent = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        for _ in range(14):  # nearly three parts' worth
            yield os.urandom(MiB)
        sent.set()
        if how == "source fails":
            raise ConnectionResetError("client went away")
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(vault.store(source(), KEY, max_bytes=100 * MiB))
    await sent.wait()
    if how == "cancelled":
        task.cancel()
    with pytest.raises(ConnectionResetError if how == "source fails" else asyncio.CancelledError):
        await task
    uploads = s3_blobs.s3.list_multipart_uploads(Bucket=s3_blobs.bucket)
    assert uploads.get("Uploads", []) == []
    assert s3_blobs.s3.list_objects_v2(Bucket=s3_blobs.bucket).get("Contents", []) == []
    assert upload_threads() == []


async def test_a_part_the_server_refuses_ends_the_store_and_aborts_the_upload(
    s3_blobs: Blobs,
) -> None:
    vault = Vault(s3_blobs.backend)
    events = s3_blobs.s3.meta.events
    calls = 0

    def second_part_fails(params: dict[str, Any], **_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "no"}}, "UploadPart")

    events.register("before-call.s3.UploadPart", second_part_fails)
    try:
        with pytest.raises(ClientError, match="SlowDown"):
            await vault.store(pieces(os.urandom(16 * MiB)), KEY, max_bytes=100 * MiB)
    finally:
        events.unregister("before-call.s3.UploadPart", second_part_fails)
    assert calls == 2  # stopped at the failure, not at the end of the stream
    assert s3_blobs.contents() == []
    assert upload_threads() == []


async def test_at_most_two_parts_are_buffered(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    total = 40 * MiB  # eight parts
    piece = os.urandom(MiB)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            yield piece

    blob = await vault.store(source(), KEY, max_bytes=total)
    assert blob.size == total
    most = backend(s3_blobs).most_buffered
    # one part uploading while the next fills: more than one part, never more than two
    assert MIN_PART_SIZE < most <= 2 * MIN_PART_SIZE, f"{most / MiB:.1f} MiB"


async def test_destroy_deletes_the_object(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    blob = await vault.store(pieces(os.urandom(6 * MiB)), KEY, max_bytes=10 * MiB)
    assert await vault.destroy(blob.name) is True
    with pytest.raises(ClientError, match="404|Not Found"):
        s3_blobs.s3.head_object(Bucket=s3_blobs.bucket, Key=PREFIX + blob.name)
    assert s3_blobs.contents() == []
    assert await vault.destroy(blob.name) is False
    with pytest.raises(FileNotFoundError):
        [chunk async for chunk in vault.read(blob.name, KEY)]


async def test_names_older_than_lists_the_prefix_only(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    blob = await vault.store(pieces(b"evidence"), KEY, max_bytes=MiB)
    stranger = "ab" * 16
    for key in (f"other/{stranger}", f"{PREFIX}not-a-blob", f"{PREFIX}handover/{stranger}"):
        s3_blobs.s3.put_object(Bucket=s3_blobs.bucket, Key=key, Body=b"x")
    now = time.time()
    assert await vault.names_older_than(60, now=now) == []
    assert await vault.names_older_than(60, now=now + 120) == [blob.name]


async def test_remove_leftovers_aborts_stale_multipart_uploads(s3_blobs: Blobs) -> None:
    vault = Vault(s3_blobs.backend)
    s3 = s3_blobs.s3
    mine = s3.create_multipart_upload(Bucket=s3_blobs.bucket, Key=f"{PREFIX}{'cd' * 16}")
    theirs = s3.create_multipart_upload(Bucket=s3_blobs.bucket, Key="other/x")
    # moto says every upload began on 2010-11-10, so "young" here is "younger than a century"
    century = 100 * 365 * 24 * 3600
    assert await vault.remove_leftovers(older_than=century) == 0
    assert await vault.remove_leftovers() == 1
    left = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=s3_blobs.bucket)["Uploads"]]
    assert left == [theirs["UploadId"]] and mine["UploadId"] not in left


def test_the_backend_is_chosen_by_settings(s3_blobs: Blobs, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, **s3_blobs.settings)
    vault = Vault.from_settings(settings)
    assert isinstance(vault.backend, S3Backend)
    assert (vault.backend.bucket, vault.backend.prefix) == (s3_blobs.bucket, PREFIX)
    handover = Vault.from_settings(settings, "handover").backend
    assert isinstance(handover, S3Backend) and handover.prefix == f"{PREFIX}handover/"
    with pytest.raises(TypeError, match="bucket"):
        vault.path("ab" * 16)
    on_disk = Vault.from_settings(load_settings(data_dir=tmp_path))
    assert isinstance(on_disk.backend, FileBackend)
    assert on_disk.root == tmp_path / "evidence"


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"blob_backend": "s3"}, "HELPLINE_S3_BUCKET: required"),
        ({"blob_backend": "nfs"}, "HELPLINE_BLOB_BACKEND"),
        ({"s3_endpoint_url": "minio:9000"}, "HELPLINE_S3_ENDPOINT_URL: must start with http"),
        ({"s3_access_key_id": "AKIA0"}, "HELPLINE_S3_SECRET_ACCESS_KEY: give both"),
        ({"s3_prefix": "/evidence/"}, "HELPLINE_S3_PREFIX"),
    ],
)
def test_incomplete_s3_settings_stop_the_start(
    tmp_path: Path, settings: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(data_dir=tmp_path, **settings)


def test_the_secret_key_stays_out_of_repr(s3_blobs: Blobs, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, **{**s3_blobs.settings, "s3_secret_access_key": "wJalrXUtnFEMI"}
    )
    assert "wJalrXUtnFEMI" not in repr(settings)
