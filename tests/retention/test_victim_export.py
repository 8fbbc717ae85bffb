"""The victim downloads their own case: their conversation, the list of their evidence,
notices and handovers — never staff notes or staff names."""

from __future__ import annotations

import json

from tests.retention.kit import FILE_BYTES, NOTE_SAYS, STAFF_SAYS, VICTIM_SAYS, Office


async def test_the_victim_downloads_their_case_without_staff_notes_or_names(
    office: Office,
) -> None:
    agent = await office.staff("annabel")
    built = await office.full_case(agent, close=False)
    http = office.client()
    auth = {"Authorization": f"Bearer {built.token}"}

    answer = await http.get("/api/chat/case/export", headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-disposition"].startswith("attachment;")
    document = json.loads(answer.text)
    assert document["reference"] == built.reference
    assert [(m["from"], m["text"]) for m in document["messages"]] == [
        ("you", VICTIM_SAYS),
        ("helpline", STAFF_SAYS),
    ]
    assert [(e["kind"], e["name"]) for e in document["evidence"]] == [("file", "screenshot.txt")]
    assert document["evidence"][0]["sha256"]
    assert [(n["platform"], n["status"]) for n in document["notices"]] == [
        ("Photoshare", "honoured")
    ]
    assert [(h["partner"], h["status"]) for h in document["handovers"]] == [
        ("Centrum Seksueel Geweld", "downloaded")
    ]
    for leak in (NOTE_SAYS, "Annabel", "annabel", agent.id, FILE_BYTES[:30].decode()):
        assert leak not in answer.text

    page = await http.get("/api/chat/case/export", params={"format": "html"}, headers=auth)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text.lower() and "http" not in page.text.split("<body>")[0]
    assert "He put my photos on photoshare" in page.text
    for leak in (NOTE_SAYS, "Annabel"):
        assert leak not in page.text

    dutch = await http.get(
        "/api/chat/case/export", params={"format": "html", "lang": "nl"}, headers=auth
    )
    assert '<html lang="nl">' in dutch.text and "<h2>Berichten</h2>" in dutch.text
    assert "He put my photos on photoshare" in dutch.text

    actions = [(action, actor) for action, actor, _ in await office.actions(built.case_id)]
    assert actions.count(("case.export", "victim")) == 3
    anonymous = await http.get("/api/chat/case/export")
    assert anonymous.status_code == 401
    wrong = await http.get("/api/chat/case/export", params={"format": "pdf"}, headers=auth)
    assert wrong.status_code == 422
