"""Opening a packet the way a partner does: the real `age` tool and `tar`."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from helpline.core.crypto import verify_signature
from helpline.evidence.bundle import _b64url_decode

AGE = "/usr/bin/age"


def open_packet(packet: bytes, identity: str, where: Path) -> Path:
    """Decrypt with `age -d -i <identity file>` and extract with `tar -x`; returns `where`."""
    where.mkdir(parents=True, exist_ok=True)
    key = where.parent / f"{where.name}.key"
    key.write_text(identity + "\n")
    key.chmod(0o600)
    sealed = where.parent / f"{where.name}.tar.age"
    sealed.write_bytes(packet)
    subprocess.run(
        f"set -o pipefail; {AGE} -d -i {key} {sealed} | tar -x -C {where}",
        shell=True,
        check=True,
        capture_output=True,
        executable="/bin/bash",
    )
    return where


def age_fails(packet: bytes, identity: str, where: Path) -> str:
    """Try to decrypt with another identity; returns age's complaint."""
    where.mkdir(parents=True, exist_ok=True)
    key = where / "other.key"
    key.write_text(identity + "\n")
    sealed = where / "packet.tar.age"
    sealed.write_bytes(packet)
    result = subprocess.run([AGE, "-d", "-i", str(key), str(sealed)], capture_output=True)
    assert result.returncode != 0
    assert result.stdout == b""
    return result.stderr.decode()


def check_manifest(folder: Path, jwks: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's signature verifies with the published key and every file's hash and
    size match; no file is unlisted. Returns the manifest."""
    manifest_bytes = (folder / "manifest.json").read_bytes()
    signature = json.loads((folder / "manifest.sig.json").read_text())
    assert set(signature) == {"kid", "alg", "signature"}
    assert signature["alg"] == "Ed25519"
    key = next(k for k in jwks if k["kid"] == signature["kid"])
    public = _b64url_decode(key["x"])
    raw = _b64url_decode(signature["signature"])
    assert public is not None and raw is not None
    assert verify_signature(public, manifest_bytes, raw)
    manifest: dict[str, Any] = json.loads(manifest_bytes)
    listed = {entry["path"] for entry in manifest["files"]}
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert len(data) == entry["size"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
    present = {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()} - {
        "manifest.json",
        "manifest.sig.json",
    }
    assert present == listed
    return manifest
