"""The sealed packet: what a partner gets, opened with the real `age` tool."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from helpline.evidence.bundle import verify_bundle
from helpline.evidence.models import CustodyEntry
from helpline.handover.states import HandoverStatus, PartnerKind
from tests.handover_packet.conftest import CONTENT_URL, FILE_NAME, SUMMARY, Desk
from tests.handover_packet.kit import age_fails, check_manifest, open_packet

H = HandoverStatus
PHOTO = b"the group chat, as the victim copied it\n" * 300


async def _download(desk: Desk) -> bytes:
    token = desk.link()
    page = await desk.http.get(f"/handover/{token}")
    assert page.status_code == 200
    answer = await desk.http.post(f"/handover/{token}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    return answer.content


async def _keys(desk: Desk) -> list[dict[str, str]]:
    answer = await desk.http.get("/.well-known/helpline-keys.json")
    assert answer.status_code == 200
    keys: list[dict[str, str]] = answer.json()["keys"]
    return keys


async def test_age_opens_the_packet_and_the_manifest_verifies(desk: Desk, tmp_path: Path) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    photo = await desk.file(case_id, PHOTO)
    desk.clock.advance(minutes=1)  # items are numbered in the order they were captured
    url = await desk.url(case_id)
    unshared = await desk.file(case_id, b"not shared " * 100, name="unshared.png")
    handover_id = await desk.handover(case_id, partner, evidence=[photo, url])
    await desk.run_outbox()

    row = await desk.row(handover_id)
    assert row.status == H.delivered
    packet = await _download(desk)
    assert hashlib.sha256(packet).hexdigest() == row.packet_sha256
    assert len(packet) == row.packet_size
    assert (await desk.row(handover_id)).status == H.downloaded

    folder = open_packet(packet, partner.identity, tmp_path / "opened") / row.reference
    manifest = check_manifest(folder, await _keys(desk))
    assert manifest["reference"] == row.reference
    assert manifest["partner"]["id"] == partner.partner_id
    assert manifest["consent"]["id"] == row.consent_id
    assert manifest["scope_sha256"] == row.scope_sha256
    assert manifest["evidence"] == sorted([photo, url])
    assert hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest() == (
        row.manifest_sha256
    )
    names = {path.name for path in folder.rglob("*") if path.is_file()}
    assert {"README.txt", "handover.json", "summary.txt", "summary.html"} <= names
    assert not (folder / "police").exists()

    # the selected parts, readable and as data; only the selected evidence
    text = (folder / "summary.txt").read_text()
    assert SUMMARY in text and CONTENT_URL in text
    document = json.loads((folder / "handover.json").read_text())
    assert document["summary"] == SUMMARY
    assert document["contact"]["details"] == "06-12345678 after 18:00"
    assert [item["id"] for item in document["evidence"]] == [photo, url]
    evidence_files = sorted((folder / "evidence").iterdir())
    shared = [path for path in evidence_files if path.name != "custody.json"]
    assert [path.name for path in shared] == ["01-screenshot_of_the_group_chat.png"]
    assert shared[0].read_bytes() == PHOTO
    assert unshared not in (folder / "handover.json").read_text()

    # custody: hashes and the signed chain, ending with this packaging
    custody = json.loads((folder / "evidence" / "custody.json").read_text())
    by_id = {item["id"]: item for item in custody["items"]}
    assert by_id[photo]["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    assert by_id[photo]["custody"][-1]["event"] == "packaged"
    assert by_id[url]["custody"][0]["event"] == "captured"

    # the timeline: kinds and times in words, no actors, no staff names
    timeline = document["timeline"]
    assert timeline[0]["kind"] == "opened"
    assert "triage" in {entry["kind"] for entry in timeline}
    assert set(timeline[0]) == {"at", "when", "kind", "what"}
    for name in ("README.txt", "handover.json", "summary.txt", "summary.html"):
        content = (folder / name).read_text()
        assert "Staff Member Name" not in content and "Supervisor Name" not in content
        assert "staff:" not in content

    # the page: escaped, no scripts, no remote content
    page = (folder / "summary.html").read_text()
    assert "<script" not in page.lower()
    assert "http://" not in page and "src=" not in page.lower()
    assert "default-src 'none'" in page


async def test_summary_html_is_escaped(
    desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.handover_packet.conftest as conftest

    monkeypatch.setattr(conftest, "SUMMARY", '<script>alert("x")</script><img src=https://e.vil/>')
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    await desk.run_outbox()
    row = await desk.row(handover_id)
    folder = open_packet(await _download(desk), partner.identity, tmp_path / "o") / row.reference
    page = (folder / "summary.html").read_text()
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page
    assert not (folder / "evidence").exists()
    document = json.loads((folder / "handover.json").read_text())
    assert document["parts"] == ["summary"]
    assert "timeline" not in document and "categories" not in document


async def test_a_packet_for_partner_a_does_not_open_with_partner_bs_identity(
    desk: Desk, tmp_path: Path
) -> None:
    partner_a = await desk.partner()
    partner_b = await desk.partner()
    case_id = await desk.case()
    await desk.handover(case_id, partner_a, parts=("summary", "categories"))
    await desk.run_outbox()
    packet = await _download(desk)
    complaint = age_fails(packet, partner_b.identity, tmp_path / "b")
    assert "no identity matched" in complaint.lower()
    assert open_packet(packet, partner_a.identity, tmp_path / "a").exists()


async def test_the_stored_packet_is_never_in_the_clear(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    photo = await desk.file(case_id, PHOTO)
    handover_id = await desk.handover(case_id, partner, evidence=[photo])
    await desk.run_outbox()
    row = await desk.row(handover_id)
    root = Path(desk.services.settings.data_dir)
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SUMMARY.encode() not in data, path
            assert PHOTO[:200] not in data, path
            assert b"age-encryption.org" not in data, path  # age output only inside the vault
    assert desk.blobs() == [row.blob_name]


async def test_police_packet_holds_the_bundle_which_verifies(desk: Desk, tmp_path: Path) -> None:
    partner = await desk.partner(PartnerKind.police)
    case_id = await desk.case()
    photo = await desk.file(case_id, PHOTO)
    url = await desk.url(case_id)
    other = await desk.file(case_id, b"other evidence " * 50, name="other.png")
    handover_id = await desk.handover(case_id, partner, evidence=[photo, url])
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.delivered
    folder = open_packet(await _download(desk), partner.identity, tmp_path / "p") / row.reference
    check_manifest(folder, await _keys(desk))

    zip_path = folder / "police" / "evidence-bundle.zip"
    assert verify_bundle(zip_path) == []
    keys = await _keys(desk)
    from helpline.evidence.bundle import _b64url_decode

    trusted = {k["kid"]: _b64url_decode(k["x"]) or b"" for k in keys}
    assert verify_bundle(zip_path, trusted_keys=trusted) == []
    with zipfile.ZipFile(zip_path) as archive:
        bundle_manifest = json.loads(archive.read("manifest.json"))
    assert {item["id"] for item in bundle_manifest["items"]} == {photo, url}
    assert other not in json.dumps(bundle_manifest)
    assert bundle_manifest["case"] == {"handover": row.reference}  # never the case reference

    verify = (folder / "police" / "VERIFY.txt").read_text()
    assert "helpline verify-bundle" in verify
    intake = (folder / "police" / "intake.txt").read_text()
    assert SUMMARY in intake
    assert CONTENT_URL in intake and "leaks.example.net" in intake
    assert hashlib.sha256(PHOTO).hexdigest() in intake
    assert "non-consensual" in intake.lower() or "intimate images" in intake

    # no temporary spool is left in the vault: only the sealed packet
    assert desk.blobs() == [row.blob_name]


async def test_large_evidence_goes_through(desk: Desk, tmp_path: Path) -> None:
    big = b"%PDF-1.7\n" + os.urandom(7 * 1024 * 1024 + 123)
    partner = await desk.partner()
    case_id = await desk.case()
    item = await desk.file(case_id, big, name="report.pdf")
    handover_id = await desk.handover(case_id, partner, parts=("evidence",), evidence=[item])
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.delivered
    assert row.packet_size is not None and row.packet_size > len(big)
    folder = open_packet(await _download(desk), partner.identity, tmp_path / "big") / row.reference
    check_manifest(folder, await _keys(desk))
    assert (folder / "evidence" / "01-report.pdf").read_bytes() == big


async def test_packaging_is_in_the_chain_of_custody(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    photo = await desk.file(case_id, PHOTO)
    await desk.handover(case_id, partner, evidence=[photo])
    await desk.run_outbox()
    async with desk.services.db.transaction() as session:
        from helpline.evidence import custody

        log: list[CustodyEntry] = await custody.entries(session, photo)
    assert [entry.event for entry in log] == ["captured", "packaged"]
    assert (
        custody.check_chain(
            log, {desk.services.signer.kid: desk.services.signer.public_key.public_bytes_raw()}
        )
        == []
    )


_ = FILE_NAME
