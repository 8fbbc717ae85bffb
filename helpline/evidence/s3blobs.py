"""Vault blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, ...), through boto3.

The vault hands this backend ciphertext only: the same version 1 vault format as on disk,
sealed in the process under the case's key, so the storage provider never sees plaintext.
Each blob is one object, `<prefix><name>`.

Writing streams: the vault's writing thread appends each sealed batch to a part buffer; a
full part (`part_size`, at least S3's minimum of 5 MiB) goes to an upload thread of the store
(`vault-upload-*`) while the writing thread fills the next one. Before it hands on a second
part it waits for the first, so a store holds at most two parts (`most_buffered` keeps the
high-water mark, which the tests check). A blob that ends within its first part is sent with
one PutObject; a larger one is a multipart upload, completed on `publish` and aborted on
`discard`, so a failed or cancelled store leaves neither an object nor stored parts. A process
that dies mid-upload leaves an incomplete multipart upload: `remove_leftovers` aborts those
(and a bucket lifecycle rule `AbortIncompleteMultipartUpload` should too).

Reading streams one GET of the object, read block by block as the vault decrypts.

Deleting is DeleteObject: there is nothing to overwrite. What makes a destroyed blob
unreadable for certain is that its case key is shredded (crypto-shredding); the bucket must not
keep old versions (versioning off, or noncurrent versions expired by a lifecycle rule), or
deleted ciphertext stays in the bucket. docs/decisions/0008-s3-blob-backend.md has the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from helpline.core.errors import TooLarge
from helpline.evidence.blobstore import NAME, BlobSource, new_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("helpline.evidence")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
PART_SIZE = 8 * MIB
_MAX_PARTS = 10_000  # S3's limit; 78 GiB at 8 MiB parts
_MISSING = {"404", "NoSuchKey", "NotFound"}


@functools.lru_cache(maxsize=8)
def s3_client(
    *, endpoint_url: str, region: str, access_key_id: str, secret_access_key: str
) -> S3Client:
    """One client per configuration and process (making one takes tens of milliseconds; a
    client is thread-safe). Without keys, boto3's own chain applies (AWS_* variables, instance
    or pod role)."""
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=64,  # each store's upload thread and each open read hold one
        connect_timeout=10,
        read_timeout=60,
        # MinIO, Ceph and test servers serve buckets under the path, not as host names
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING


class S3Backend:
    """Blobs as objects `<prefix><name>` in one bucket."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        prefix: str = "evidence/",
        part_size: int = PART_SIZE,
    ) -> None:
        if not bucket:
            raise ValueError("the S3 blob backend needs a bucket")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.most_buffered = 0  # the most bytes one store held in part buffers
        self._lock = threading.Lock()

    def key(self, name: str) -> str:
        return self.prefix + name

    def create(self) -> S3Sink:
        return S3Sink(self)  # no request yet: the first one comes from the writing thread

    def note_buffered(self, held: int) -> None:
        with self._lock:
            self.most_buffered = max(self.most_buffered, held)

    async def open(self, name: str) -> BlobSource:
        task = asyncio.ensure_future(asyncio.to_thread(self._get, name))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # the GET may have come back meanwhile: close it rather than leak its connection
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            raise

    def _get(self, name: str) -> BlobSource:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"no evidence blob {name}") from None
            raise
        return _ObjectStream(answer["Body"])

    async def size(self, name: str) -> int:
        return await asyncio.to_thread(self._size, name)

    def _size(self, name: str) -> int:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(name))["ContentLength"]
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"no evidence blob {name}") from None
            raise

    async def delete(self, name: str) -> bool:
        return await asyncio.to_thread(self._delete, name)

    def _delete(self, name: str) -> bool:
        try:
            self._size(name)
        except FileNotFoundError:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        return True

    async def names_before(self, cutoff: float) -> list[str]:
        return await asyncio.to_thread(self._names_before, cutoff)

    def _names_before(self, cutoff: float) -> list[str]:
        """By LastModified, which for a multipart upload is when the upload began."""
        names = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for entry in page.get("Contents", []):
                name = entry["Key"][len(self.prefix) :]
                if NAME.fullmatch(name) and entry["LastModified"].timestamp() <= cutoff:
                    names.append(name)
        return sorted(names)

    async def remove_leftovers(self, older_than: float) -> int:
        return await asyncio.to_thread(self._abort_stale_uploads, time.time() - older_than)

    def _abort_stale_uploads(self, cutoff: float) -> int:
        count = 0
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() <= cutoff:
                    with contextlib.suppress(ClientError):  # completed or aborted meanwhile
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        count += 1
        return count


class S3Sink:
    """One object being uploaded; see the module docstring for the flow."""

    def __init__(self, backend: S3Backend) -> None:
        self.backend = backend
        self.client = backend.client
        self.bucket = backend.bucket
        self.name = new_name()
        self.key = backend.key(self.name)
        self.filling = bytearray()
        self.sending: bytearray | None = None  # the part the upload thread has
        self.sent: Future[str] | None = None  # its ETag
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []
        self.uploader: ThreadPoolExecutor | None = None
        self.committing = False  # an object may exist under `key`
        self.most_buffered = 0

    def write(self, data: memoryview, *, final: bool) -> None:
        part_size = self.backend.part_size
        while data:
            room = part_size - len(self.filling)
            self.filling += data[:room]
            data = data[room:]
            held = len(self.filling) + (len(self.sending) if self.sending is not None else 0)
            self.most_buffered = max(self.most_buffered, held)
            # a full part goes only when more follows: the last part is sent below
            if len(self.filling) == part_size and (data or not final):
                self._send_part()
        if not final:
            return
        if self.upload_id is None:  # all of it fits one part: one request
            self.committing = True
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=cast(bytes, self.filling),
                ContentType="application/octet-stream",
            )
        else:
            self._send_part()
            self._wait_for_part()
        self.filling = bytearray()

    def _send_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/octet-stream"
            )["UploadId"]
            self.uploader = ThreadPoolExecutor(1, thread_name_prefix="vault-upload")
        assert self.uploader is not None
        self._wait_for_part()  # at most one part in flight, one filling
        number = len(self.parts) + 1
        if number > _MAX_PARTS:
            raise TooLarge("the file is too large for the evidence vault's bucket")
        self.sending, self.filling = self.filling, bytearray()
        self.sent = self.uploader.submit(self._upload_part, number, self.sending)

    def _upload_part(self, number: int, part: bytearray) -> str:
        assert self.upload_id is not None
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=cast(bytes, part),
        )
        return answer["ETag"]

    def _wait_for_part(self) -> None:
        if self.sent is not None:
            etag = self.sent.result()
            self.parts.append({"PartNumber": len(self.parts) + 1, "ETag": etag})
            self.sent = None
            self.sending = None

    def publish(self) -> None:
        self._stop_uploader()
        if self.upload_id is not None:
            self.committing = True
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.backend.note_buffered(self.most_buffered)

    def discard(self) -> None:
        self._stop_uploader()
        self.backend.note_buffered(self.most_buffered)
        self.filling = bytearray()
        self.sending = None
        try:
            if self.upload_id is not None:
                with contextlib.suppress(ClientError):  # completed already: deleted below
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                    )
            if self.committing:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (BotoCoreError, ClientError) as error:
            # the bucket is unreachable: `remove_leftovers` (or a lifecycle rule) aborts the
            # upload later, and the orphan sweep deletes an object that has no evidence row
            log.warning(
                "evidence upload not cleaned up",
                extra={"blob": self.name, "error": type(error).__name__},
            )

    def _stop_uploader(self) -> None:
        if self.uploader is not None:
            self.uploader.shutdown(wait=True, cancel_futures=True)
            self.uploader = None


class _ObjectStream:
    """An object's body as a `BlobSource`: `read(n)` returns n bytes unless the object ends
    (botocore's may return fewer); botocore checks the length against the response's at the
    end."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def read(self, size: int, /) -> bytes:
        first: bytes = self.body.read(size)
        if len(first) == size or not first:
            return first
        pieces = [first]
        got = len(first)
        while got < size:
            more: bytes = self.body.read(size - got)
            if not more:
                break
            pieces.append(more)
            got += len(more)
        return b"".join(pieces)

    def close(self) -> None:
        self.body.close()
