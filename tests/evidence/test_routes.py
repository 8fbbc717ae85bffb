"""Evidence through the real app under uvicorn: uploads from the chat and the console, bad
input, previews and reveals, URL snapshots, the minor rule, hash-only records and export.

The blobs go to the data directory with SQLite and to an S3 bucket with PostgreSQL
(`paired_blobs`, tests/evidence/conftest.py), chosen through the settings as in production."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from helpline.core.config import Settings, env_name
from helpline.core.crypto import Keyring, MasterKeys, b64e, case_scope
from helpline.core.db import Database
from helpline.evidence.bundle import verify_bundle
from helpline.evidence.models import CustodyEntry, EvidenceItem
from helpline.staff.models import Role
from tests.conftest import TEST_MASTER_KEY
from tests.evidence.conftest import Blobs
from tests.evidence.test_imaging import png_header_only
from tests.intake.chatkit import StaffMember, Victim
from tests.live import LiveServer, free_port, live_server


def jpeg(width: int = 320, height: int = 240, *, gps: bool = False) -> bytes:
    image = Image.new("RGB", (width, height))
    for x in range(0, width, 8):  # some structure, so PDQ has something to see
        for y in range(0, height, 8):
            image.putpixel((x, y), ((x * 7) % 256, (y * 5) % 256, (x + y) % 256))
    out = io.BytesIO()
    exif = Image.Exif()
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def live_settings(settings_for: Any, database_url: str, port: int, paired_blobs: Blobs) -> Settings:
    result: Settings = settings_for(
        database_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        evidence_max_file_mb=2,
        snapshot_allow_loopback=True,
        **paired_blobs.settings,
    )
    return result


@pytest.fixture
async def server(live_settings: Settings, port: int) -> AsyncIterator[LiveServer]:
    async with live_server(live_settings, port=port) as running:
        yield running


@pytest.fixture
async def victim(server: LiveServer) -> Victim:
    return await Victim(server.url).start()


@pytest.fixture
def vault_files(paired_blobs: Blobs) -> Callable[[], list[str]]:
    """What the vault holds (files, or objects and open uploads), outside the app's view."""
    return paired_blobs.contents


async def upload(
    server: LiveServer, path: str, content: bytes, *, name: str = "bewijs.jpg", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post(path, files={"file": (name, content)}, headers=headers)


async def test_a_victim_attaches_a_photo_from_the_chat(
    server: LiveServer,
    victim: Victim,
    db: Database,
    vault_files: Callable[[], list[str]],
    paired_blobs: Blobs,
) -> None:
    photo = jpeg(gps=True)
    answer = await upload(
        server,
        "/api/chat/evidence/files",
        photo,
        name="..\\..\\etc/ik.jpg",
        Authorization=f"Bearer {victim.token}",
    )
    assert answer.status_code == 201, answer.text
    item = answer.json()
    assert item["media_type"] == "image/jpeg" and item["size"] == len(photo)
    assert item["sha256"] == hashlib.sha256(photo).hexdigest()

    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = await http.get(
            "/api/chat/evidence", headers={"Authorization": f"Bearer {victim.token}"}
        )
    [shown] = listed.json()["items"]
    assert shown["filename"] == "ik.jpg"  # no path, no control characters

    [blob] = vault_files()
    assert photo[100:200] not in paired_blobs.raw(blob)  # encrypted at rest
    async with db.transaction() as session:
        row = (await session.execute(select(EvidenceItem))).scalar_one()
        custody = (await session.execute(select(CustodyEntry))).scalars().all()
    assert row.pdq is not None and len(row.pdq) == 64 and row.pdq_quality is not None
    assert row.captured_by == "victim" and row.channel == "chat"
    assert [c.event for c in custody] == ["captured"]


@pytest.mark.parametrize(
    ("content", "name", "status", "says"),
    [
        (b"", "leeg.txt", 422, "empty"),
        (b"<!doctype html><script>alert(1)</script>", "x.jpg", 422, "HTML"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "x.png", 422, "SVG"),
        (b"MZ\x90\x00" + b"\x00" * 100, "photo.jpg", 422, "program"),
        (b"PK\x03\x04" + b"\x00" * 100, "photo.jpg", 422, "archive"),
        (os.urandom(3 * 1024 * 1024), "big.jpg", 413, "MiB"),
        (png_header_only(30000, 30000), "bomb.png", 422, "too large"),
        (b"\xff\xd8\xff\xe0" + b"JFIF<script>alert(1)</script>" + b"\x00" * 64, "p.jpg", 422, ""),
    ],
    ids=["empty", "html", "svg", "executable", "zip", "too-large", "image-bomb", "polyglot"],
)
async def test_bad_uploads_get_a_clear_error_and_leave_nothing(
    server: LiveServer,
    victim: Victim,
    db: Database,
    content: bytes,
    name: str,
    status: int,
    says: str,
    vault_files: Callable[[], list[str]],
) -> None:
    answer = await upload(
        server,
        "/api/chat/evidence/files",
        content,
        name=name,
        Authorization=f"Bearer {victim.token}",
    )
    assert answer.status_code == status, answer.text
    assert says.lower() in answer.json()["error"]["message"].lower()
    assert vault_files() == []
    async with db.transaction() as session:
        assert (await session.execute(select(EvidenceItem))).first() is None


async def test_malformed_multipart_bodies_are_refused(
    server: LiveServer, victim: Victim, vault_files: Callable[[], list[str]]
) -> None:
    bearer = {"Authorization": f"Bearer {victim.token}"}
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    ).encode()
    truncated = head + jpeg()[:500]  # the closing boundary never comes
    many = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'
            for i in range(2000)
        ).encode()
        + f"--{boundary}--\r\n".encode()
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        for body in (truncated, many):
            answer = await http.post(
                "/api/chat/evidence/files",
                content=body,
                headers={**bearer, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert answer.status_code == 422, answer.text
        no_multipart = await http.post(
            "/api/chat/evidence/files",
            content=jpeg(),
            headers={**bearer, "Content-Type": "image/jpeg"},
        )
        assert no_multipart.status_code == 422
    assert vault_files() == []


async def test_staff_preview_is_blurred_and_stripped_and_a_reveal_is_recorded(
    server: LiveServer, victim: Victim, db: Database
) -> None:
    await upload(
        server,
        "/api/chat/evidence/files",
        jpeg(gps=True),
        Authorization=f"Bearer {victim.token}",
    )
    agent = await StaffMember.create(db, server.url, "hanna")
    try:
        case_id = await agent.claim(victim.reference)
        [item] = (await agent.http.get(f"/api/staff/cases/{case_id}/evidence")).json()["items"]
        blurred = await agent.http.get(f"/api/staff/evidence/{item['id']}/preview")
        revealed = await agent.http.get(f"/api/staff/evidence/{item['id']}/preview?reveal=1")
        for answer in (blurred, revealed):
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
            image = Image.open(io.BytesIO(answer.content))
            assert not image.getexif()  # no EXIF, so no GPS
            assert answer.headers["cache-control"] == "no-store"
        assert blurred.content != revealed.content
        async with db.transaction() as session:
            events = (
                (await session.execute(select(CustodyEntry.event).order_by(CustodyEntry.seq)))
                .scalars()
                .all()
            )
        assert events == ["captured", "previewed", "revealed"]
    finally:
        await agent.close()


async def test_url_snapshots_are_kept_and_private_addresses_refused(
    server: LiveServer, victim: Victim, db: Database, vault_files: Callable[[], list[str]]
) -> None:
    bearer = {"Authorization": f"Bearer {victim.token}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        kept = await http.post(
            "/api/chat/evidence/urls", json={"url": f"{server.url}/healthz"}, headers=bearer
        )
        assert kept.status_code == 201, kept.text
        assert kept.json()["status"] == "stored"
        for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "file:///x"):
            refused = await http.post("/api/chat/evidence/urls", json={"url": url}, headers=bearer)
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == "url_refused"
        listed = (await http.get("/api/chat/evidence", headers=bearer)).json()["items"]
    assert [i["url"] for i in listed] == [f"{server.url}/healthz"]
    assert len(vault_files()) == 1
    async with db.transaction() as session:
        row = (await session.execute(select(EvidenceItem))).scalar_one()
        cipher = await Keyring(MasterKeys.from_keys([TEST_MASTER_KEY])).cipher(
            session, case_scope(row.case_id)
        )
    assert row.filename is None and row.snapshot is not None
    meta = json.loads(
        cipher.decrypt(row.snapshot, table="evidence_items", row_id=row.id, field="snapshot")
    )
    assert meta["final_url"] == f"{server.url}/healthz" and meta["status"] == 200


async def test_a_possible_minor_destroys_files_and_stops_storing(
    server: LiveServer, victim: Victim, db: Database, vault_files: Callable[[], list[str]]
) -> None:
    bearer = {"Authorization": f"Bearer {victim.token}"}
    await upload(server, "/api/chat/evidence/files", jpeg(), Authorization=bearer["Authorization"])
    assert len(vault_files()) == 1
    agent = await StaffMember.create(db, server.url, "iris")
    try:
        case_id = await agent.claim(victim.reference)
        marked = await agent.post(f"/api/staff/cases/{case_id}/possible-minor")
        assert marked.json()["destroyed"] == 1 and "hotline" in marked.json()["referral"]
        assert vault_files() == []
        refused = await upload(
            server, "/api/chat/evidence/files", jpeg(), Authorization=bearer["Authorization"]
        )
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "possible_minor"
        async with httpx.AsyncClient(base_url=server.url) as http:
            url_only = await http.post(
                "/api/chat/evidence/urls",
                json={"url": "http://10.9.9.9/never-fetched"},
                headers=bearer,
            )
        assert url_only.status_code == 201 and url_only.json()["status"] == "recorded"
        async with db.transaction() as session:
            events = (await session.execute(select(CustodyEntry.event))).scalars().all()
        assert "destroyed" in events and "marked_minor" in events
    finally:
        await agent.close()


async def test_an_image_registered_by_its_hashes_alone(
    server: LiveServer, victim: Victim, db: Database, vault_files: Callable[[], list[str]]
) -> None:
    agent = await StaffMember.create(db, server.url, "joost")
    try:
        case_id = await agent.claim(victim.reference)
        photo = jpeg()
        answer = await agent.http.post(
            f"/api/staff/cases/{case_id}/evidence/hashes",
            files={"file": ("x.jpg", photo)},
            headers=agent.headers(),
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == hashlib.sha256(photo).hexdigest()
        assert len(answer.json()["pdq"]) == 64
        typed = await agent.post(
            f"/api/staff/cases/{case_id}/evidence/hashes",
            json={"sha256": "a" * 64, "pdq": "b" * 64, "pdq_quality": 90},
        )
        assert typed.status_code == 201
        assert vault_files() == []  # no image is kept
        bad = await agent.post(
            f"/api/staff/cases/{case_id}/evidence/hashes",
            json={"sha256": "zz", "pdq": "b" * 64, "pdq_quality": 90},
        )
        assert bad.status_code == 422
    finally:
        await agent.close()


async def test_export_by_api_and_command_verifies_offline(
    server: LiveServer,
    victim: Victim,
    live_settings: Settings,
    db: Database,
    tmp_path: Path,
    paired_blobs: Blobs,
) -> None:
    bearer = f"Bearer {victim.token}"
    await upload(server, "/api/chat/evidence/files", jpeg(), Authorization=bearer)
    await upload(
        server, "/api/chat/evidence/files", b"screenshot text", name="n.txt", Authorization=bearer
    )
    supervisor = await StaffMember.create(db, server.url, "karin", role=Role.supervisor)
    try:
        cases = (await supervisor.http.get("/api/staff/cases")).json()["cases"]
        [case] = [c for c in cases if c["reference"] == victim.reference]
        exported = await supervisor.http.get(f"/api/staff/cases/{case['id']}/evidence/export")
        assert exported.status_code == 200
        bundle = tmp_path / "api.zip"
        bundle.write_bytes(exported.content)
        assert verify_bundle(bundle) == []
    finally:
        await supervisor.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env.update(
        HELPLINE_DATA_DIR=str(live_settings.data_dir),
        HELPLINE_DATABASE_URL=live_settings.database_url,
        HELPLINE_MASTER_KEY=b64e(TEST_MASTER_KEY),
        # the command finds the blobs where the app put them: the same settings
        **{env_name(name): str(value) for name, value in paired_blobs.settings.items()},
    )
    out = tmp_path / "cli.zip"
    command = [sys.executable, "-m", "helpline.cli", "evidence"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "export", victim.reference, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    checked = subprocess.run(
        [*command, "verify", str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and "intact" in checked.stdout
    data = bytearray(out.read_bytes())
    position = data.find(b"screenshot text")
    data[position] ^= 0x01
    out.write_bytes(bytes(data))
    broken = subprocess.run(
        [*command, "verify", str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 1 and "files/" in broken.stdout


async def test_staff_in_the_chat_hear_about_new_evidence(
    server: LiveServer, victim: Victim, db: Database
) -> None:
    agent = await StaffMember.create(db, server.url, "lotte")
    try:
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(server.ws_url, case_id)
        victim_chat = await victim.chat(server.ws_url)
        answer = await upload(
            server, "/api/chat/evidence/files", jpeg(), Authorization=f"Bearer {victim.token}"
        )
        notice = await staff_chat.wait_for(lambda f: f["type"] == "evidence")
        assert notice["id"] == answer.json()["id"]
        with pytest.raises(TimeoutError):  # the victim's own socket is not told
            await victim_chat.wait_for(lambda f: f["type"] == "evidence", timeout=0.5)
        await staff_chat.close()
        await victim_chat.close()
    finally:
        await agent.close()
