"""Four eyes per category, one case with many notices, one notice with many URLs each with
its own outcome, the notices view sorted by what is overdue, re-checks."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import col

from helpline.core.models import AuditEntry
from helpline.staff.models import Role
from helpline.takedown.states import TRANSITIONS, NoticeStatus, can_move, notice_outcome
from tests.takedown.kit import CONTENT_URL, Office, PlatformSite

S = NoticeStatus


def test_the_state_table() -> None:
    assert can_move("draft", "queued") and can_move("sent", "honoured")
    assert not can_move("draft", "sent") and not can_move("honoured", "declined")
    assert not can_move("withdrawn", "queued") and not can_move("sent", "nonsense")
    assert TRANSITIONS[S.honoured] == frozenset() and TRANSITIONS[S.withdrawn] == frozenset()
    assert set(TRANSITIONS) == set(NoticeStatus)
    assert notice_outcome(["honoured", "honoured"]) is S.honoured
    assert notice_outcome(["declined", "withdrawn", "declined"]) is S.declined
    assert notice_outcome(["honoured", "declined"]) is S.partly_honoured
    assert notice_outcome(["partly_honoured"]) is S.partly_honoured
    assert notice_outcome(["honoured", "sent"]) is None
    assert notice_outcome(["withdrawn"]) is None


async def test_four_eyes_per_category_set_by_a_supervisor(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    boss = await office.staff("sam", Role.supervisor)
    agent = await office.staff("bea")
    colleague = await office.staff("cor")
    platform = await office.platform(admin)
    refused = await office.put(agent, "/api/staff/takedown/approval-rules", {"categories": []})
    assert refused.status_code == 403
    bad = await office.put(boss, "/api/staff/takedown/approval-rules", {"categories": ["x"]})
    assert bad.status_code == 422
    rules = await office.put(
        boss, "/api/staff/takedown/approval-rules", {"categories": ["deepfake", "sextortion"]}
    )
    assert rules.json() == {"categories": ["deepfake", "sextortion"]}
    assert (await agent.get("/api/staff/takedown/approval-rules")).json() == rules.json()
    case_id = await office.case(agent, "deepfake")
    notice = await office.notice(agent, case_id, platform["id"])
    assert notice["approval"]["required"] is True
    waiting = await office.do(agent, notice["id"], "send")
    assert waiting["status"] == "awaiting_approval"
    assert waiting["document_sha256"] is None  # nothing is signed or queued yet
    own = await agent.post(f"/api/staff/notices/{notice['id']}/approve")
    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes"
    # a colleague may read a notice that awaits approval, and approve it
    assert (await colleague.get(f"/api/staff/notices/{notice['id']}")).status_code == 200
    approved = await office.do(colleague, notice["id"], "approve")
    assert approved["status"] == "queued"
    assert approved["approval"]["approved_by"] == {"id": colleague.id, "name": "Cor"}
    assert approved["document_sha256"] is not None
    again = await colleague.post(f"/api/staff/notices/{notice['id']}/approve")
    assert again.status_code == 409
    # a category without the rule goes straight out
    other = await office.notice(agent, await office.case(agent, "doxxing"), platform["id"])
    assert (await office.do(agent, other["id"], "send"))["status"] == "queued"
    # sent back to the author
    third = await office.notice(agent, case_id, platform["id"])
    await office.do(agent, third["id"], "send")
    back = await office.do(colleague, third["id"], "reject")
    assert back["status"] == "draft"
    actions = [
        a for a in await office.audit_actions(f"notice:{notice['id']}") if a != "notice.open"
    ]
    assert actions[:4] == ["notice.create", "notice.submit", "notice.approve", "notice.queue"]
    async with office.services.db.transaction() as session:
        lines = (
            (
                await session.execute(
                    select(AuditEntry).where(col(AuditEntry.action) == "notice.approval_rules")
                )
            )
            .scalars()
            .all()
        )
    assert [json.loads(line.details) for line in lines] == [
        {"before": "", "after": "deepfake,sextortion"}
    ]


async def test_one_case_many_notices_one_notice_many_urls(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    first = await office.platform(admin)
    second = await office.platform(admin, slug="clipstream", name="Clipstream")
    case_id = await office.case(agent)
    urls = [{"url": f"https://photoshare.example.org/p/{n}"} for n in (1, 2, 3)]
    notice = await office.notice(agent, case_id, first["id"], urls=urls)
    other = await office.notice(agent, case_id, second["id"])
    listed = (await agent.get(f"/api/staff/cases/{case_id}/notices")).json()["notices"]
    assert [n["id"] for n in listed] == [notice["id"], other["id"]]
    assert listed[0]["url_statuses"] == {"draft": 3}
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    ids = [u["id"] for u in notice["urls"]]
    base = f"/api/staff/notices/{notice['id']}/urls"
    one = await agent.post(
        f"{base}/{ids[0]}/outcome",
        {"status": "honoured", "decision_visibility": "DECISION_VISIBILITY_CONTENT_REMOVED"},
    )
    assert one.status_code == 200 and one.json()["status"] == "sent"
    await agent.post(f"{base}/{ids[1]}/outcome", {"status": "declined", "explanation": "satire"})
    bad = await agent.post(
        f"{base}/{ids[2]}/outcome", {"status": "honoured", "decision_ground": "X"}
    )
    assert bad.status_code == 422
    done = await agent.post(f"{base}/{ids[2]}/outcome", {"status": "honoured"})
    result = done.json()
    assert result["status"] == "partly_honoured" and result["decided_at"] is not None
    assert [u["status"] for u in result["urls"]] == ["honoured", "declined", "honoured"]
    assert result["urls"][1]["answer"]["explanation"] == "satire"
    assert result["urls"][0]["answer"]["answered_via"] == "staff"
    # a decided URL can still turn (declined → honoured after a complaint), a closed one not
    later = await agent.post(f"{base}/{ids[1]}/outcome", {"status": "honoured"})
    assert later.json()["status"] == "honoured"
    stuck = await agent.post(f"{base}/{ids[1]}/outcome", {"status": "declined"})
    assert stuck.status_code == 409 and stuck.json()["error"]["code"] == "bad_transition"
    history = await office.history(notice["id"])
    url_moves = [(h.url_id, h.to_status) for h in history if h.url_id == ids[1]]
    assert [to for _, to in url_moves] == ["queued", "sent", "declined", "honoured"]
    assert [h.seq for h in history] == list(range(1, len(history) + 1))
    # the other platform's notice is untouched
    assert (await office.row(other["id"])).status == "draft"
    missing = await agent.post(f"{base}/{other['urls'][0]['id']}/outcome", {"status": "honoured"})
    assert missing.status_code == 404


async def test_the_notices_view_puts_what_is_overdue_first(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    slow = await office.platform(admin, slug="slow", name="Slow", sla_hours=48)
    fast = await office.platform(admin, slug="fast", name="Fast", sla_hours=4)
    case_id = await office.case(agent)
    draft = await office.notice(agent, case_id, fast["id"])
    a = await office.notice(agent, case_id, slow["id"])
    b = await office.notice(agent, case_id, fast["id"])
    for notice in (a, b):
        await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    office.clock.advance(timedelta(hours=5))  # b (4 h) is overdue, a (48 h) is not
    done = await office.notice(agent, case_id, fast["id"])
    await office.do(agent, done["id"], "withdraw")
    answer = await agent.get("/api/staff/notices")
    assert answer.status_code == 200
    view = answer.json()["notices"]
    assert [n["id"] for n in view] == [b["id"], a["id"], draft["id"]]
    assert view[0]["clock"]["overdue"] is True and view[0]["clock"]["seconds_left"] < 0
    assert view[1]["clock"]["overdue"] is False
    assert "urls" not in view[0] and "explanation" not in view[0]
    everything = (await agent.get("/api/staff/notices", params={"scope": "all"})).json()
    assert done["id"] in [n["id"] for n in everything["notices"]]
    only_fast = await agent.get("/api/staff/notices", params={"platform": "fast"})
    assert {n["platform"]["slug"] for n in only_fast.json()["notices"]} == {"fast"}
    for params in ({"platform": "nope"}, {"scope": "x"}, {"status": "x"}, {"colour": "red"}):
        assert (await agent.get("/api/staff/notices", params=params)).status_code == 422


async def test_recheck_offers_a_404_as_evidence_of_removal(
    office: Office, site: PlatformSite
) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent)
    site.pages["/content/a"] = 200
    site.pages["/content/b"] = 200
    urls = [{"url": f"{site.url}/content/a"}, {"url": f"{site.url}/content/b"}]
    notice = await office.notice(agent, case_id, platform["id"], urls=urls)
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    site.pages["/content/b"] = 410
    checked = await office.do(agent, notice["id"], "recheck")
    first, second = checked["urls"]
    assert first["recheck"]["status"] == 200 and first["recheck"]["suggests_removal"] is False
    assert second["recheck"]["status"] == 410 and second["recheck"]["suggests_removal"] is True
    assert second["status"] == "sent"  # offered to staff, not applied
    assert "notice.recheck" in await office.audit_actions(f"notice:{notice['id']}")


async def test_material_that_may_show_a_minor_is_never_fetched(
    office: Office, site: PlatformSite
) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent, "possible_minor")
    notice = await office.notice(
        agent, case_id, platform["id"], urls=[{"url": f"{site.url}/content/x"}]
    )
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    answer = await agent.post(f"/api/staff/notices/{notice['id']}/recheck")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "possible_minor"
    assert site.posts == [] and CONTENT_URL not in str(site.pages)
