"""Issue 7 end to end: one notice with two URLs to a platform that has an API key is built,
held for four-eyes approval, approved by a colleague, signed and delivered once through the
outbox to a real SMTP sink; the platform answers URL 1 through the portal link in the mail and
URL 2 through the platform API with its key; the notice ends `honoured` with both answers in
its append-only history, and what was delivered verifies against the published keys."""

from __future__ import annotations

import json

from helpline.staff.models import Role
from helpline.takedown.builder import verify_detached
from tests.email.conftest import Sink
from tests.takedown.conftest import (  # noqa: F401  (the takedown fixtures, reused)
    cheap_hashing,
    office,
    office_overrides,
    sink,
)
from tests.takedown.kit import Office
from tests.takedown.test_delivery import attachments, html_part
from tests.takedown_platform.conftest import bearer, removed


async def test_a_notice_from_case_to_honoured(office: Office, sink: Sink) -> None:  # noqa: F811
    admin = await office.staff("ada", Role.admin)
    boss = await office.staff("sam", Role.supervisor)
    agent = await office.staff("bea")
    colleague = await office.staff("cor")
    platform = await office.platform(admin)
    issued = await admin.post(f"/api/staff/platforms/{platform['id']}/api-key")
    assert issued.status_code == 201, issued.text
    api_key = issued.json()["api_key"]
    rules = await office.put(
        boss, "/api/staff/takedown/approval-rules", {"categories": ["intimate_images"]}
    )
    assert rules.status_code == 200, rules.text

    # built from a case, with two URLs
    case_id = await office.case(agent, "intimate_images")
    urls = [
        {"url": "https://photoshare.example.org/p/1", "content_type": "CONTENT_TYPE_IMAGE"},
        {"url": "https://photoshare.example.org/p/2", "content_type": "CONTENT_TYPE_IMAGE"},
    ]
    notice = await office.notice(agent, case_id, platform["id"], urls=urls)
    first, second = (u["id"] for u in notice["urls"])
    assert notice["approval"]["required"] is True

    # four eyes: the author cannot approve; a colleague can, which signs and queues it
    waiting = await office.do(agent, notice["id"], "send")
    assert waiting["status"] == "awaiting_approval" and waiting["document_sha256"] is None
    assert await office.run_outbox() == 0 and sink.received == []
    own = await agent.post(f"/api/staff/notices/{notice['id']}/approve")
    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes"
    approved = await office.do(colleague, notice["id"], "approve")
    assert approved["status"] == "queued" and approved["document_sha256"]

    # delivered once through the outbox
    assert await office.run_outbox() == 1
    assert await office.run_outbox() == 0
    assert len(sink.received) == 1
    mail = sink.received[0].message
    assert sink.received[0].rcpt_tos == ["dsa@photoshare.example.org"]
    assert (await office.row(notice["id"])).status == "sent"

    # the signature of what was delivered verifies against the published keys
    keys = (await office.client().get("/.well-known/helpline-keys.json")).json()["keys"]
    files = attachments(mail)
    reference = notice["reference"]
    document = files[f"{reference}.json"]
    envelope = json.loads(files[f"{reference}.sig.json"])
    signatures = envelope["signatures"]
    assert verify_detached(keys, envelope["kid"], document, signatures["notice.json"])
    assert verify_detached(keys, envelope["kid"], html_part(mail), signatures["notice.html"])
    changed = document.replace(b"photoshare.example.org/p/1", b"photoshare.example.org/p/9")
    assert changed != document
    assert not verify_detached(keys, envelope["kid"], changed, signatures["notice.json"])
    assert [u["url"] for u in json.loads(document)["urls"]] == [u["url"] for u in urls]

    # URL 1 through the portal, with the token from the mail
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    link = next(line for line in text.get_content().splitlines() if "/portal/n/" in line)
    token = link.rsplit("/portal/n/", 1)[1].strip()
    reviewer = office.client()
    seen = await reviewer.get("/api/portal/notice", headers=bearer(token))
    assert seen.status_code == 200 and seen.json()["reference"] == reference
    by_portal = await reviewer.post(
        "/api/portal/answers", headers=bearer(token), json={"answers": [removed(first)]}
    )
    assert by_portal.status_code == 200, by_portal.text
    assert by_portal.json()["changed"] == [first]
    # an answer confirms receipt; URL 2 is still open
    assert (await office.row(notice["id"])).status == "receipt_confirmed"

    # URL 2 through the platform API, with the key
    machine = office.client()
    listed = await machine.get("/api/platform/notices", headers=bearer(api_key))
    assert [n["reference"] for n in listed.json()["notices"]] == [reference]
    fetched = await machine.get(f"/api/platform/notices/{reference}", headers=bearer(api_key))
    assert fetched.status_code == 200 and fetched.json()["id"] == notice["id"]
    by_api = await machine.post(
        f"/api/platform/notices/{reference}/answers",
        headers=bearer(api_key),
        json={"answers": [removed(second, puid="post-4712")]},
    )
    assert by_api.status_code == 200, by_api.text
    assert by_api.json()["status"] == "honoured"

    # honoured, both answers in the append-only history
    row = await office.row(notice["id"])
    assert row.status == "honoured" and row.decided_at is not None
    rows = {u.id: u for u in await office.urls(notice["id"])}
    assert rows[first].answered_via == "portal" and rows[second].answered_via == "api"
    assert rows[second].puid == "post-4712"
    history = await office.history(notice["id"])
    assert [h.seq for h in history] == list(range(1, len(history) + 1))
    answered = {
        h.url_id: json.loads(h.details)["via"]
        for h in history
        if h.url_id is not None and h.to_status == "honoured"
    }
    assert answered == {first: "portal", second: "api"}
    assert {h.actor for h in history if h.url_id is not None and h.to_status == "honoured"} == {
        f"platform:{platform['id']}"
    }
    moves = [(h.url_id, h.from_status, h.to_status) for h in history if h.url_id is None]
    assert [to for _, _, to in moves] == [
        "draft",
        "awaiting_approval",
        "queued",
        "sent",
        "receipt_confirmed",
        "honoured",
    ]
    # the staff see the same: both answers, and the notice honoured
    shown = (await agent.get(f"/api/staff/notices/{notice['id']}")).json()
    assert shown["status"] == "honoured"
    assert [u["answer"]["answered_via"] for u in shown["urls"]] == ["portal", "api"]
