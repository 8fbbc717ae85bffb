"""The platform portal: a link opens one notice only, stops working when revoked or expired,
shows no victim data, takes answers, and its token never reaches a log line."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.models import CaseEvent
from helpline.core.config import Settings
from helpline.core.logs import JSONFormatter
from helpline.intake.email import tokens
from helpline.staff.models import Role
from helpline.takedown.models import NoticeHistory, NoticeReply, NoticeToken
from helpline.triage.events import event_text
from tests.takedown_platform.conftest import (
    PDQ,
    SHA256,
    VICTIM_TEXT,
    Desk,
    bearer,
    declined,
    removed,
    served,
)


async def test_the_page_is_static_html_under_the_strict_headers(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    page = await desk.http.get(f"/portal/n/{sent.token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # nothing of the notice is in the page itself: the script fetches it with the token
    assert sent.notice.reference not in page.text
    assert '<script type="module" src="/static/portal/portal.js">' in page.text
    assert "<script>" not in page.text and "style=" not in page.text
    script = await desk.http.get("/static/portal/portal.js")
    assert script.status_code == 200
    for language in ("nl", "en"):
        strings = await desk.http.get(f"/static/portal/i18n/{language}.json")
        assert strings.status_code == 200 and "portal" in strings.json()


async def test_a_link_opens_its_own_notice_and_no_other(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    first = await desk.sent_notice(platform)
    second = await desk.sent_notice(platform)

    seen = await desk.http.get("/api/portal/notice", headers=bearer(first.token))
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["reference"] == first.notice.reference
    assert [u["id"] for u in body["urls"]] == first.url_ids
    assert body["answerable"] is True
    assert body["legal_basis"]["code"] == "sr_139h"
    assert body["dsa_category"] == "STATEMENT_CATEGORY_CYBER_VIOLENCE"
    assert body["signature"]["kid"] and body["document"]["reference"] == first.notice.reference
    assert second.notice.reference not in seen.text

    # the first link cannot answer for a URL of the second notice
    other = await desk.http.post(
        "/api/portal/answers",
        headers=bearer(first.token),
        json={"answers": [removed(second.url_ids[0])]},
    )
    assert other.status_code == 422
    assert other.json()["error"]["message"] == "answers[0].url_id: is not a URL of this notice"
    assert [u.status for u in await desk.urls(second.notice.id)] == ["sent", "sent"]

    # nor does it open the platform API
    api = await desk.http.get("/api/platform/notices", headers=bearer(first.token))
    assert api.status_code == 401


async def test_a_revoked_link_stops_working(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    supervisor = await desk.staff_client("sanne", Role.supervisor)

    links = await supervisor.get(f"/api/staff/notices/{sent.notice.id}/portal-links")
    assert links.status_code == 200
    assert [(link["id"], link["active"]) for link in links.json()["links"]] == [
        (sent.link_id, True)
    ]
    revoked = await supervisor.post(
        f"/api/staff/notices/{sent.notice.id}/portal-links/{sent.link_id}/revoke"
    )
    assert revoked.status_code == 200 and revoked.json()["active"] is False

    refused = await desk.http.get("/api/portal/notice", headers=bearer(sent.token))
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "code": "link_revoked",
        "message": "this link was withdrawn by the helpline",
    }
    answer = await desk.http.post(
        "/api/portal/answers",
        headers=bearer(sent.token),
        json={"answers": [removed(sent.url_ids[0])]},
    )
    assert answer.status_code == 401

    # a new link works; its URL is shown once, and it is scoped to the same notice
    fresh = await supervisor.post(f"/api/staff/notices/{sent.notice.id}/portal-link")
    assert fresh.status_code == 201
    url = fresh.json()["url"]
    assert url.startswith(f"{desk.services.settings.base_url}/portal/n/")
    token = url.rsplit("/", 1)[1]
    again = await desk.http.get("/api/portal/notice", headers=bearer(token))
    assert again.status_code == 200 and again.json()["reference"] == sent.notice.reference
    async with desk.services.db.transaction() as session:
        stored = (await session.execute(select(NoticeToken))).scalars().all()
    assert tokens.token_hash(token) in {row.token_hash for row in stored}
    assert all(token not in row.token_hash for row in stored)


async def test_a_link_expires(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    days = desk.services.settings.notice_portal_days
    desk.clock.advance(timedelta(days=days) - timedelta(seconds=1))
    assert (
        await desk.http.get("/api/portal/notice", headers=bearer(sent.token))
    ).status_code == 200
    desk.clock.advance(seconds=1)
    expired = await desk.http.get("/api/portal/notice", headers=bearer(sent.token))
    assert expired.status_code == 401
    assert expired.json()["error"] == {"code": "link_expired", "message": "this link has expired"}


async def test_unknown_or_missing_tokens_are_refused(desk: Desk) -> None:
    for headers in ({}, bearer("x" * 43), bearer("y" * 500), {"Authorization": "Basic abc"}):
        answer = await desk.http.get("/api/portal/notice", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_no_victim_data_reaches_the_platform(desk: Desk) -> None:
    platform, api_key = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    assert api_key is not None
    outputs = [
        (await desk.http.get("/api/portal/notice", headers=bearer(sent.token))).text,
        (await desk.http.get("/api/platform/notices", headers=bearer(api_key))).text,
        (
            await desk.http.get(
                f"/api/platform/notices/{sent.notice.id}?html=1", headers=bearer(api_key)
            )
        ).text,
    ]
    html = json.loads(outputs[2])["html"]["base64"]
    outputs.append(base64.b64decode(html).decode())
    for output in outputs:
        assert VICTIM_TEXT not in output
        assert "Fenna" not in output and "Zwolle" not in output
        assert sent.case.reference not in output
        assert sent.case.id not in output
    # what it does carry: the URLs and the image only by its hashes
    portal = json.loads(outputs[0])
    assert portal["hashes"] == [
        {
            "position": 1,
            "media_type": "image/jpeg",
            "sha256": SHA256,
            "pdq": PDQ,
            "pdq_quality": 88,
            "pdq_reliable": True,
        }
    ]
    assert portal["document"]["hashes"][0]["pdq"] == PDQ
    assert all(u["url"].startswith("https://fotoforum.example.org/p/") for u in portal["urls"])


async def test_an_answer_through_the_portal(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    first, second = sent.url_ids

    opened = await desk.http.post("/api/portal/receipt", headers=bearer(sent.token))
    assert opened.json()["confirmed"] is True and opened.json()["status"] == "receipt_confirmed"
    assert (await desk.http.post("/api/portal/receipt", headers=bearer(sent.token))).json()[
        "confirmed"
    ] is False

    answer = await desk.http.post(
        "/api/portal/answers", headers=bearer(sent.token), json={"answers": [removed(first)]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "receipt_confirmed",
        "changed": [first],
        "unchanged": [],
        "questions": 0,
    }
    # the same answer again changes nothing
    repeat = await desk.http.post(
        "/api/portal/answers", headers=bearer(sent.token), json={"answers": [removed(first)]}
    )
    assert repeat.json()["unchanged"] == [first]

    last = await desk.http.post(
        "/api/portal/answers", headers=bearer(sent.token), json={"answers": [declined(second)]}
    )
    assert last.json()["status"] == "partly_honoured"

    notice = await desk.notice(sent.notice.id)
    assert notice.status == "partly_honoured" and notice.decided_at is not None
    rows = {u.id: u for u in await desk.urls(notice.id)}
    assert rows[first].status == "honoured"
    assert rows[first].decision_visibility == "DECISION_VISIBILITY_CONTENT_REMOVED"
    assert rows[first].territorial_scope == "NL,BE" and rows[first].puid == "post-4711"
    assert rows[first].answered_via == "portal"
    assert rows[second].status == "declined"
    assert rows[second].decision_ground == "DECLINED_NOT_ILLEGAL"

    shown = (await desk.http.get("/api/portal/notice", headers=bearer(sent.token))).json()
    answers = {u["id"]: u["answer"] for u in shown["urls"]}
    assert answers[first]["explanation"].startswith("Intimate image")
    assert answers[second]["reason"] == "not_illegal"

    async with desk.services.db.transaction() as session:
        history = (
            (
                await session.execute(
                    select(NoticeHistory)
                    .where(col(NoticeHistory.notice_id) == notice.id)
                    .order_by(col(NoticeHistory.at), col(NoticeHistory.id))
                )
            )
            .scalars()
            .all()
        )
    moves = [(h.url_id is not None, h.from_status, h.to_status) for h in history]
    assert (False, "sent", "receipt_confirmed") in moves
    assert (True, "sent", "receipt_confirmed") in moves
    assert (True, "receipt_confirmed", "honoured") in moves
    assert (True, "receipt_confirmed", "declined") in moves
    assert (False, "receipt_confirmed", "partly_honoured") in moves
    answered = [
        h for h in history if h.url_id is not None and h.to_status in ("honoured", "declined")
    ]
    assert {h.actor for h in answered} == {f"platform:{platform.id}"}
    assert {json.loads(h.details)["via"] for h in answered} == {"portal"}

    # an honoured URL stays honoured
    undo = await desk.http.post(
        "/api/portal/answers", headers=bearer(sent.token), json={"answers": [declined(first)]}
    )
    assert undo.status_code == 409
    assert undo.json()["error"]["code"] == "answer_refused"
    assert "honoured: it cannot become declined" in undo.json()["error"]["message"]


async def test_a_question_goes_to_the_case(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform, urls=1)
    question = "Is the person in the picture an adult? We need that to decide."
    asked = await desk.http.post(
        "/api/portal/answers",
        headers=bearer(sent.token),
        json={
            "answers": [
                {"url_id": sent.url_ids[0], "decision": "more_information", "question": question}
            ]
        },
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "more_info_requested"
    async with desk.services.db.transaction() as session:
        replies = (await session.execute(select(NoticeReply))).scalars().all()
        assert [(r.kind, r.via, r.url_id) for r in replies] == [
            ("question", "portal", sent.url_ids[0])
        ]
        events = (
            (
                await session.execute(
                    select(CaseEvent).where(
                        col(CaseEvent.case_id) == sent.case.id,
                        col(CaseEvent.kind) == "notice_question",
                    )
                )
            )
            .scalars()
            .all()
        )
        assert len(events) == 1
        assert await event_text(session, desk.services.keyring, events[0]) == question

    supervisor = await desk.staff_client("sanne", Role.supervisor)
    listed = await supervisor.get(f"/api/staff/notices/{sent.notice.id}/replies")
    assert [(r["kind"], r["text"]) for r in listed.json()["replies"]] == [("question", question)]
    timeline = await supervisor.get(f"/api/staff/cases/{sent.case.id}/timeline")
    kinds = [e.get("event") for e in timeline.json()["entries"] if e["kind"] == "event"]
    assert "notice_question" in kinds


async def test_the_token_never_reaches_a_log_line(
    desk: Desk, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Under uvicorn, configured as `helpline serve` runs it, at DEBUG: the server's and the
    app's log lines (not the test client's own) never hold the token."""
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    caplog.set_level(logging.DEBUG)
    async with served(settings, desk.clock) as base, httpx.AsyncClient(base_url=base) as http:
        await http.get(f"/portal/n/{sent.token}")
        await http.get(f"/portal/n/{sent.token}?again=1")
        await http.get(f"/portal/n/{sent.token}/nothing-here")
        await http.get("/api/portal/notice", headers=bearer(sent.token))
        await http.post("/api/portal/receipt", headers=bearer(sent.token))
        await http.post(
            "/api/portal/answers", headers=bearer(sent.token), json={"answers": [{"x": 1}]}
        )
        await http.post(
            "/api/portal/answers",
            headers=bearer(sent.token),
            json={"answers": [removed(sent.url_ids[0])]},
        )
        # an expired link too: refusals are logged like any request
        desk.clock.advance(timedelta(days=desk.services.settings.notice_portal_days + 1))
        await http.get("/api/portal/notice", headers=bearer(sent.token))

    formatter = JSONFormatter()
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [formatter.format(record) for record in ours]
    access = [json.loads(line) for line in lines if '"logger": "helpline.access"' in line]
    assert {(entry["route"], entry["status"]) for entry in access} >= {
        ("/portal/n/{token}", 200),
        ("(unmatched)", 404),
        ("/api/portal/notice", 200),
        ("/api/portal/answers", 422),
        ("/api/portal/answers", 200),
        ("/api/portal/notice", 401),
    }
    assert any(r.name.startswith("uvicorn") for r in ours), "uvicorn's lines were not captured"
    for line in lines:  # every logger, even the database driver's SQL at DEBUG
        assert sent.token not in line
