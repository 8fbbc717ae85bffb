"""The partner directory: CRUD by admins, importing an age recipient and confirming its
fingerprint, counts per partner, and the demo partners (identity files age can use)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pyrage import decrypt, encrypt, x25519
from sqlalchemy import func, select

from helpline.handover import demo
from helpline.handover.models import Partner
from tests.handover.conftest import Cast, Scene

BASE = {
    "name": "Slachtofferhulp",
    "kind": "victim_support",
    "contact_email": "aanmelding@slachtofferhulp.example.org",
}


async def test_admins_keep_the_directory_and_agents_read_it(scene: Scene, cast: Cast) -> None:
    created = await cast.admin.post("/api/staff/partners", BASE)
    assert created.status_code == 201, created.text
    partner = created.json()
    assert partner["name"] == "Slachtofferhulp" and partner["active"] is True
    assert partner["key"] is None and partner["delivery"] == "download_link"
    assert partner["counts"] == dict.fromkeys(
        ["proposed", "consented", "declined", "delivered", "downloaded", "withdrawn", "expired"], 0
    )
    # agents may read, not write
    refused = await cast.agent.post("/api/staff/partners", BASE)
    assert refused.status_code == 403
    listed = await cast.agent.get("/api/staff/partners")
    assert [p["id"] for p in listed.json()["partners"]] == [partner["id"]]

    changed = await scene.put(cast.admin, f"/api/staff/partners/{partner['id']}", {"active": False})
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert changed.json()["name"] == "Slachtofferhulp"  # fields not given stay
    # active first, then by name
    other = await cast.admin.post("/api/staff/partners", {**BASE, "name": "Zzz"})
    listed = await cast.agent.get("/api/staff/partners")
    assert [p["id"] for p in listed.json()["partners"]] == [other.json()["id"], partner["id"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "friend"),
        ("contact_email", "not-an-address"),
        ("name", " "),
        ("website", "http://x"),
    ],
)
async def test_bad_fields_are_refused(scene: Scene, cast: Cast, field: str, value: str) -> None:
    answer = await cast.admin.post("/api/staff/partners", {**BASE, field: value})
    assert answer.status_code == 422 and field in answer.json()["error"]["message"]
    unknown = await cast.admin.post("/api/staff/partners", {**BASE, "colour": "red"})
    assert unknown.status_code == 422


async def test_a_key_is_imported_then_confirmed_with_its_fingerprint(
    scene: Scene, cast: Cast
) -> None:
    partner = (await cast.admin.post("/api/staff/partners", BASE)).json()
    path = f"/api/staff/partners/{partner['id']}/key"
    bad = await cast.admin.post(path, {"recipient": "age1notakey"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_recipient"
    ssh = await cast.admin.post(path, {"recipient": "ssh-ed25519 AAAA"})
    assert ssh.status_code == 400

    recipient = str(x25519.Identity.generate().to_public())
    imported = (await cast.admin.post(path, {"recipient": f"  {recipient}\n"})).json()
    key = imported["key"]
    assert key["recipient"] == recipient
    assert key["fingerprint"] == hashlib.sha256(recipient.encode()).hexdigest()
    assert len(key["fingerprint_words"]) == 16
    assert all(len(w) == 4 for w in key["fingerprint_words"])
    assert "".join(key["fingerprint_words"]) == key["fingerprint"]
    assert key["confirmed"] is False and imported["ready"] is False

    wrong = await cast.admin.post(f"{path}/confirm", {"fingerprint": "0" * 64})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "fingerprint_mismatch"
    typed = "-".join(key["fingerprint_words"]).upper()  # as read aloud, in groups
    confirmed = (await cast.admin.post(f"{path}/confirm", {"fingerprint": typed})).json()
    assert confirmed["key"]["confirmed"] is True and confirmed["ready"] is True
    assert confirmed["key"]["confirmed_by"]["id"] == cast.admin.id

    # a new key clears the confirmation
    other = str(x25519.Identity.generate().to_public())
    changed = (await cast.admin.post(path, {"recipient": other})).json()
    assert changed["key"]["confirmed"] is False and changed["key"]["confirmed_at"] is None
    assert changed["ready"] is False
    lines = [e.action for e in await scene.audit(f"partner:{partner['id']}")]
    assert lines == [
        "partner.create",
        "partner.key_import",
        "partner.key_confirm",
        "partner.key_import",
    ]


async def test_demo_partners_are_seeded_once_with_identity_files_age_can_use(
    scene: Scene,
) -> None:
    settings = scene.services.settings
    first = await demo.seed_demo_partners(scene.services)
    assert len(first) == 4 and all(p.added for p in first)
    assert {p.slug for p in first} == {"csg", "fier", "slachtofferhulp", "politie-zeden"}
    again = await demo.seed_demo_partners(scene.services)
    assert [p.id for p in again] == [p.id for p in first] and not any(p.added for p in again)
    async with scene.services.db.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(Partner))).scalar_one()
        rows = (await session.execute(select(Partner))).scalars().all()
    assert count == 4
    kinds = sorted(p.kind for p in rows)
    assert kinds == ["police", "sexual_violence_care", "sexual_violence_care", "victim_support"]
    for partner in rows:
        assert partner.key_confirmed_at is not None and partner.active
        assert partner.contact_email and partner.contact_email.endswith("example.org")
        description = partner.description or ""
        assert "nl: " in description and "en: " in description
    for seeded in first:
        path: Path = seeded.key_file
        assert path.parent == settings.data_dir / "demo-partners"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# ") and lines[-1].startswith("AGE-SECRET-KEY-1")
        identity = x25519.Identity.from_str(lines[-1])
        [row] = [p for p in rows if p.id == seeded.id]
        assert row.age_recipient == str(identity.to_public())
        assert decrypt(encrypt(b"hello", [identity.to_public()]), [identity]) == b"hello"
    age = shutil.which("age")
    if age is not None:  # the standard tool reads the identity file as written
        sealed = encrypt(b"for csg", [x25519.Recipient.from_str(rows[0].age_recipient)])
        [seeded] = [p for p in first if p.id == rows[0].id]
        opened = subprocess.run(
            [age, "-d", "-i", str(seeded.key_file)], input=sealed, capture_output=True, check=True
        )
        assert opened.stdout == b"for csg"
