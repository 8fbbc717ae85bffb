"""The blob backends the evidence tests run against: the data directory, and a real
S3-compatible server (moto in server mode) on a free loopback port.

`blobs` runs a test once on each backend. Tests that also run once on each database (the
bundle and route tests) take `paired_blobs` instead: SQLite with the directory, PostgreSQL with
the bucket, the two ways Helpline is deployed (one small server; several instances), so both
backends are covered without running those slower tests four times.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from helpline.evidence.blobstore import BlobBackend, FileBackend
from helpline.evidence.s3blobs import MIN_PART_SIZE, S3Backend, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}
PREFIX = "evidence/"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of this process, on 127.0.0.1 and a port the kernel
    picks; stopped when the session ends."""
    from moto.server import ThreadedMotoServer  # imported only when a test needs it

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Blobs:
    """The backend a test runs on, and a look at what it holds from outside the vault."""

    kind: str  # "filesystem" or "s3"
    backend: BlobBackend
    settings: dict[str, Any] = field(default_factory=dict)  # for an app on this backend
    client: S3Client | None = None
    bucket: str = ""

    @property
    def s3(self) -> S3Client:
        assert self.client is not None, "an S3 test on the filesystem backend"
        return self.client

    def contents(self) -> list[str]:
        """Everything stored: files (temporary ones too), or objects and unfinished
        multipart uploads under the prefix."""
        if isinstance(self.backend, FileBackend):
            root = self.backend.root
            return sorted(p.name for p in root.iterdir()) if root.exists() else []
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=PREFIX).get("Contents", [])
        uploads = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=PREFIX)
        return sorted(
            [entry["Key"].removeprefix(PREFIX) for entry in listed]
            + [f"upload {u['Key']}" for u in uploads.get("Uploads", [])]
        )

    def raw(self, name: str) -> bytes:
        """The stored bytes of blob `name`, as the disk or the bucket has them."""
        if isinstance(self.backend, FileBackend):
            return self.backend.path(name).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=PREFIX + name)["Body"].read()

    def replace(self, name: str, data: bytes) -> None:
        """Put `data` where blob `name` is (an attacker with access to the storage)."""
        if isinstance(self.backend, FileBackend):
            self.backend.path(name).write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=PREFIX + name, Body=data)


def make_blobs(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[Blobs]:
    if kind == "filesystem":
        # where `settings_for` (tests/conftest.py) puts the data directory
        yield Blobs("filesystem", FileBackend(tmp_path / "var" / "evidence"))
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    client = s3_client(endpoint_url=endpoint, region="us-east-1", **S3_KEYS)
    bucket = f"helpline-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    settings = {
        "blob_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": endpoint,
        "s3_region": "us-east-1",
        "s3_access_key_id": S3_KEYS["access_key_id"],
        "s3_secret_access_key": S3_KEYS["secret_access_key"],
        "s3_prefix": PREFIX,
    }
    # the smallest parts S3 allows, so that a few MiB already make a multipart upload
    backend = S3Backend(client, bucket, prefix=PREFIX, part_size=MIN_PART_SIZE)
    try:
        yield Blobs("s3", backend, settings, client, bucket)
    finally:
        _empty_and_remove(client, bucket)


def _empty_and_remove(client: S3Client, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=entry["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["filesystem", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    yield from make_blobs(request, request.param, tmp_path)


@pytest.fixture
def s3_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    """For the tests about the S3 backend alone."""
    yield from make_blobs(request, "s3", tmp_path)


@pytest.fixture
def paired_blobs(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Blobs]:
    """The directory with SQLite, the bucket with PostgreSQL (see the module docstring)."""
    kind = "s3" if database_url.startswith("postgresql") else "filesystem"
    yield from make_blobs(request, kind, tmp_path)
