"""The notice clock under a controlled clock: due = sent + SLA, reminders before and after
the deadline, no response at the deadline, and the escalation ladder drafted for staff to
approve, step by step (escalation contact → art. 20 complaint → ACM dossier)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from helpline.core.crypto import canonical_json
from helpline.staff.models import Role
from helpline.takedown import sla
from helpline.takedown.builder import verify_detached
from tests.email.conftest import Sink
from tests.takedown.kit import Office


async def tick(office: Office, at: Any) -> None:
    office.clock.set(at)
    assert sla.JOB_NAME in await office.services.scheduler.run_due()
    await office.run_outbox()


def mails(sink: Sink) -> list[tuple[str, str]]:
    return [(r.rcpt_tos[0], str(r.message["Subject"])) for r in sink.received]


async def test_reminders_no_response_and_the_escalation_ladder(office: Office, sink: Sink) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent)
    notice = await office.notice(agent, case_id, platform["id"])
    start = office.clock.now()
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    notice_mail = sink.received[0].message
    reference = notice["reference"]
    row = await office.row(notice["id"])
    assert row.due_at is not None
    hours = timedelta(hours=1)

    await tick(office, start + 20 * hours - timedelta(minutes=1))
    assert len(sink.received) == 1  # not yet

    await tick(office, start + 20 * hours)  # 4 h before the deadline
    assert mails(sink)[1] == (
        "dsa@photoshare.example.org",
        f"Reminder: DSA notice {reference} is due 2026-01-02 09:00 UTC",
    )
    reminder = sink.received[1].message
    assert str(reminder["In-Reply-To"]) == str(notice_mail["Message-ID"])
    assert str(reminder["Reply-To"]) == str(notice_mail["Reply-To"])
    body = reminder.get_body(preferencelist=("plain",))
    assert body is not None and "/portal/n/" in body.get_content()
    await tick(office, start + 20 * hours + timedelta(minutes=5))
    assert len(sink.received) == 2  # once

    await tick(office, start + 24 * hours)
    late = await office.row(notice["id"])
    assert late.status == "no_response"
    assert {u.status for u in await office.urls(notice["id"])} == {"no_response"}
    assert len(sink.received) == 2

    await tick(office, start + 26 * hours)  # 2 h after the deadline
    assert mails(sink)[2] == (
        "dsa@photoshare.example.org",
        f"Overdue: DSA notice {reference} (due 2026-01-02 09:00 UTC)",
    )

    await tick(office, start + 48 * hours - timedelta(minutes=1))
    assert (await agent.get(f"/api/staff/notices/{notice['id']}")).json()["escalations"] == []
    await tick(office, start + 48 * hours)  # 24 h after the deadline: the first step
    shown = (await agent.get(f"/api/staff/notices/{notice['id']}")).json()
    assert shown["escalation_pending"] is True
    [step] = shown["escalations"]
    assert step["step"] == "escalation_contact" and step["status"] == "drafted"
    assert step["recipient"] == "lead@photoshare.example.org"
    assert reference in step["text"] and "no decision" in step["text"]
    assert len(sink.received) == 3  # nothing leaves before staff approve

    base = f"/api/staff/notices/{notice['id']}/escalations"
    approved = await agent.post(
        f"{base}/escalation_contact/approve", {"text": f"Please act on {reference} now."}
    )
    assert approved.status_code == 200, approved.text
    await office.run_outbox()
    assert mails(sink)[3] == (
        "lead@photoshare.example.org",
        f"Escalation: DSA notice {reference} from a trusted flagger",
    )
    escalation_body = sink.received[3].message.get_body(preferencelist=("plain",))
    assert escalation_body is not None
    assert escalation_body.get_content().strip() == f"Please act on {reference} now."

    approved_at = office.clock.now()
    await tick(office, approved_at + 72 * hours - timedelta(minutes=1))
    assert len((await agent.get(f"/api/staff/notices/{notice['id']}")).json()["escalations"]) == 1
    await tick(office, approved_at + 72 * hours)
    steps = (await agent.get(f"/api/staff/notices/{notice['id']}")).json()["escalations"]
    assert [s["step"] for s in steps] == ["escalation_contact", "internal_complaint"]
    assert steps[1]["recipient"] == "complaints@photoshare.example.org"
    assert "art. 20" in steps[1]["text"]
    await office.do(agent, notice["id"], "escalations/internal_complaint/approve")
    await office.run_outbox()
    assert mails(sink)[4] == (
        "complaints@photoshare.example.org",
        f"Complaint under DSA art. 20: notice {reference}",
    )

    second = office.clock.now()
    await tick(office, second + 72 * hours)
    steps = (await agent.get(f"/api/staff/notices/{notice['id']}")).json()["escalations"]
    dossier_step = steps[2]
    assert dossier_step["step"] == "dsc_complaint" and dossier_step["recipient"] is None
    signed = dossier_step["dossier"]
    dossier = signed["dossier"]
    assert dossier["authority"]["name"].startswith("Autoriteit Consument & Markt")
    assert dossier["notice"]["reference"] == reference
    assert dossier["notice_document"]["reference"] == reference
    assert [s["step"] for s in dossier["earlier_steps"]] == [
        "escalation_contact",
        "internal_complaint",
    ]
    moves = [(t["by"], t["url"], t["from"], t["to"]) for t in dossier["timeline"]]
    assert ("system", None, "sent", "no_response") in moves
    assert ("system", 1, "sent", "no_response") in moves
    assert all(t["by"] in ("system", "staff", "platform") for t in dossier["timeline"])
    keys = (await agent.get("/.well-known/helpline-keys.json")).json()["keys"]
    signature = signed["signature"]
    assert verify_detached(keys, signature["kid"], canonical_json(dossier), signature["signature"])
    edit = await agent.post(f"{base}/dsc_complaint/approve", {"text": "changed"})
    assert edit.status_code == 422  # the dossier is signed
    await office.do(agent, notice["id"], "escalations/dsc_complaint/approve")
    await office.run_outbox()
    assert len(sink.received) == 5  # staff file the dossier themselves

    await tick(office, office.clock.now() + 200 * hours)
    assert len((await agent.get(f"/api/staff/notices/{notice['id']}")).json()["escalations"]) == 3

    # a late decision still counts, and stops the clock
    [url] = notice["urls"]
    done = await agent.post(
        f"/api/staff/notices/{notice['id']}/urls/{url['id']}/outcome", {"status": "honoured"}
    )
    assert done.json()["status"] == "honoured" and done.json()["clock"]["running"] is False
    events = [json.loads(h.details).get("event") for h in await office.history(notice["id"])]
    assert [e for e in events if e] == [
        "reminder_before",
        "reminder_after",
        "escalation_drafted",
        "escalation_approved",
        "escalation_drafted",
        "escalation_approved",
        "escalation_drafted",
        "escalation_approved",
    ]


async def test_a_decided_notice_gets_no_reminders(office: Office, sink: Sink) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin, escalation_email=None)
    notice = await office.notice(agent, await office.case(agent), platform["id"])
    start = office.clock.now()
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    [url] = notice["urls"]
    await agent.post(
        f"/api/staff/notices/{notice['id']}/urls/{url['id']}/outcome", {"status": "honoured"}
    )
    for hours in (20, 24, 26, 48, 200):
        await tick(office, start + timedelta(hours=hours))
    assert len(sink.received) == 1
    assert (await office.row(notice["id"])).status == "honoured"


async def test_staff_escalate_a_decline_and_the_ladder_skips_a_missing_contact(
    office: Office, sink: Sink
) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin, escalation_email=None, complaint_email=None)
    notice = await office.notice(agent, await office.case(agent), platform["id"])
    premature = await agent.post(
        f"/api/staff/notices/{notice['id']}/escalations", {"step": "internal_complaint"}
    )
    assert premature.status_code == 409
    await office.do(agent, notice["id"], "send")
    await office.run_outbox()
    [url] = notice["urls"]
    await agent.post(
        f"/api/staff/notices/{notice['id']}/urls/{url['id']}/outcome", {"status": "declined"}
    )
    drafted = await agent.post(
        f"/api/staff/notices/{notice['id']}/escalations", {"step": "internal_complaint"}
    )
    assert drafted.status_code == 201
    [step] = drafted.json()["escalations"]
    assert step["recipient"] == "dsa@photoshare.example.org"  # no complaint address: contact
    assert "declined" in step["text"]
    twice = await agent.post(
        f"/api/staff/notices/{notice['id']}/escalations", {"step": "internal_complaint"}
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "step_exists"
    dismissed = await office.do(agent, notice["id"], "escalations/internal_complaint/dismiss")
    assert dismissed["escalations"][0]["status"] == "dismissed"
    await office.run_outbox()
    assert len(sink.received) == 1
    missing = await agent.post(f"/api/staff/notices/{notice['id']}/escalations/nope/approve")
    assert missing.status_code == 404
