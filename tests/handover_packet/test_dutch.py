"""A handover in Dutch (`language: nl`): the packet's texts and the notification are Dutch."""

from __future__ import annotations

import json
from pathlib import Path

from helpline.handover.states import HandoverStatus, PartnerKind
from tests.handover_packet.conftest import CONTENT_URL, SUMMARY, Desk
from tests.handover_packet.kit import check_manifest, open_packet

H = HandoverStatus
PHOTO = b"de groepschat, zoals het slachtoffer hem kopieerde\n" * 200


async def test_a_dutch_police_packet_speaks_dutch(desk: Desk, tmp_path: Path) -> None:
    partner = await desk.partner(PartnerKind.police)
    case_id = await desk.case()
    photo = await desk.file(case_id, PHOTO)
    url = await desk.url(case_id)
    handover_id = await desk.handover(case_id, partner, evidence=[photo, url], language="nl")
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.delivered

    [mail] = desk.sink.received
    assert mail.message["Subject"] == f"Versleuteld overdrachtspakket {row.reference}"
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Er staat een versleuteld overdrachtspakket" in body
    assert "en maar één keer" in body and "age -d -i" in body
    assert "waiting for you" not in body

    answer = await desk.http.post(f"/handover/{desk.link()}")
    assert answer.status_code == 200
    folder = open_packet(answer.content, partner.identity, tmp_path / "nl") / row.reference
    keys = (await desk.http.get("/.well-known/helpline-keys.json")).json()["keys"]
    check_manifest(folder, keys)

    summary = (folder / "summary.txt").read_text()
    assert summary.startswith(f"Warme overdracht {row.reference}\nVoor: ")
    assert "Het slachtoffer gaf op " in summary and "toestemming om precies dit te delen" in summary
    for heading in ("SAMENVATTING", "CATEGORIE EN RISICO'S", "TIJDLIJN", "BEWIJS"):
        assert heading in summary, heading
    assert "Categorie: intieme beelden zonder toestemming gedeeld" in summary
    assert "Risico: het materiaal wordt op dit moment verspreid" in summary
    assert "telefonisch" in summary
    assert SUMMARY in summary and CONTENT_URL in summary  # the staff's text as written
    for english in ("SUMMARY", "Warm handover", "The victim consented", "TIMELINE", "Risk:"):
        assert english not in summary, english

    page = (folder / "summary.html").read_text()
    assert '<html lang="nl">' in page and "<h2>Samenvatting</h2>" in page
    document = json.loads((folder / "handover.json").read_text())
    assert document["language"] == "nl"
    assert (
        document["timeline"][0]["what"] == "het slachtoffer nam contact op met de hulplijn (chat)"
    )
    assert document["contact"]["words"] == "telefonisch"

    readme = (folder / "README.txt").read_text()
    assert "Deze map bevat wat het slachtoffer met u wilde delen" in readme
    assert "police/intake.txt            een samenvatting voor het intakegesprek" in readme
    verify = (folder / "police" / "VERIFY.txt").read_text()
    assert "helpline verify-bundle" in verify and "controleren" in verify
    intake = (folder / "police" / "intake.txt").read_text()
    assert intake.startswith(
        f"Samenvatting voor het intakegesprek - warme overdracht {row.reference}"
    )
    assert "voorafgaat" in intake and "aangifte" in intake
    assert "beslist het slachtoffer" in intake
    for heading in ("1. WAT ER IS GEBEURD", "2. WANNEER", "3. AARD VAN DE ZAAK", "4. PLATFORMS"):
        assert heading in intake, heading
    assert "leaks.example.net" in intake and SUMMARY in intake
