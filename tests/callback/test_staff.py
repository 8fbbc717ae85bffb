"""Staff on a callback case: only the one who has it sees the number and code word (audited);
each attempt is recorded; after `reached` or `wrong_number` the number is deleted; the agent
can give the victim a passphrase to continue in the chat."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from helpline.intake.callback.service import JOB_NAME, sweep
from helpline.staff.models import Role
from tests.callback.conftest import CODE_WORD, E164, callback_row, file_request, local, window
from tests.triage.kit import Desk, Member


async def claimed_callback(desk: Desk, **changes: object) -> tuple[Member, dict[str, str]]:
    agent = await desk.staff("anouk")
    filed = await file_request(desk, urgent=True, **changes)
    await agent.act(filed["case_id"], "claim")
    return agent, filed


async def test_only_the_agent_who_has_the_case_sees_the_number(desk: Desk) -> None:
    anouk = await desk.staff("anouk")
    bram = await desk.staff("bram")
    saskia = await desk.staff("saskia", Role.supervisor)
    filed = await file_request(desk, urgent=True, voicemail_safe=True)
    path = f"/api/staff/cases/{filed['case_id']}/callback"
    # nobody has it yet: an agent cannot even open it
    for agent in (anouk, bram):
        refused = await agent.get(path)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    await anouk.act(filed["case_id"], "claim")
    mine = await anouk.get(path)
    assert mine.status_code == 200, mine.text
    seen = mine.json()
    assert seen["revealed"] is True
    assert (seen["number"], seen["number_display"]) == (E164, "+31 6 12345678")
    assert seen["code_word"] == CODE_WORD
    assert seen["safety"] == {"voicemail_safe": True, "may_say_name": False}
    assert seen["state"] == "pending" and seen["urgent"] is True
    assert seen["windows"] == filed["windows"]
    assert seen["timezone"] == "Europe/Amsterdam"
    assert seen["attempts"] == []
    # a colleague who does not have it: refused; a supervisor: masked
    assert (await bram.get(path)).status_code == 403
    masked = (await saskia.get(path)).json()
    assert masked["revealed"] is False
    assert (masked["number"], masked["number_display"], masked["code_word"]) == (None, None, None)
    assert masked["number_masked"] == "+31 •••••••78"
    assert E164 not in json.dumps(masked) and CODE_WORD not in json.dumps(masked)
    # every reveal is in the audit log, the masked look only as an opening
    actions = await desk.actions(filed["case_id"])
    reveals = [actor for action, actor, _ in actions if action == "callback.reveal"]
    assert reveals == [f"staff:{anouk.id}"]
    opened = [actor for action, actor, d in actions if d.get("via") == "callback"]
    assert opened == [f"staff:{anouk.id}", f"staff:{saskia.id}"]
    await anouk.get(path)
    reveals = [a for a, _, _ in await desk.actions(filed["case_id"]) if a == "callback.reveal"]
    assert len(reveals) == 2
    # nothing about the number in the audit log itself
    assert E164 not in json.dumps(await desk.actions(filed["case_id"]))


async def test_a_case_without_a_callback_request_says_so(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    chat = await desk.victim()
    await agent.act(chat["case_id"], "claim")
    answer = await agent.get(f"/api/staff/cases/{chat['case_id']}/callback")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "no_callback"
    assert (await agent.get("/api/staff/cases/nosuchcase/callback")).status_code == 404


async def test_attempts_are_recorded_and_reaching_the_victim_deletes_the_number(
    desk: Desk,
) -> None:
    agent, filed = await claimed_callback(desk)
    case_id = filed["case_id"]
    attempts = f"/api/staff/cases/{case_id}/callback/attempts"
    first = await agent.post(attempts, {"outcome": "no_answer"})
    assert first.status_code == 201, first.text
    assert first.json()["revealed"] is False  # the answer never carries the number
    # the first call is the first response
    assert (await agent.case(case_id))["sla"]["kind"] is None
    desk.clock.advance(minutes=20)
    voicemail = await agent.post(attempts, {"outcome": "voicemail", "note": "kort bericht"})
    assert voicemail.status_code == 201
    assert (await callback_row(desk, case_id)).phone is not None  # still needed
    desk.clock.advance(minutes=20)
    reached = await agent.post(attempts, {"outcome": "reached", "note": "  goed gesprek  "})
    assert reached.status_code == 201
    view = reached.json()
    assert view["state"] == "reached"
    assert view["number_masked"] is None and view["contact_deleted_at"] is not None
    assert [(a["outcome"], a["note"]) for a in view["attempts"]] == [
        ("no_answer", None),
        ("voicemail", "kort bericht"),
        ("reached", "goed gesprek"),
    ]
    assert view["attempts"][0]["by"] == {"id": agent.id, "name": "Anouk"}
    # gone from the row, not hidden
    row = await callback_row(desk, case_id)
    assert (row.phone, row.code_word, row.attempts) == (None, None, 3)
    # the one who has it sees nothing to reveal any more, and nothing is audited as revealed
    after = (await agent.get(f"/api/staff/cases/{case_id}/callback")).json()
    assert (after["number"], after["code_word"], after["revealed"]) == (None, None, False)
    actions = [a for a, _, _ in await desk.actions(case_id)]
    assert actions.count("callback.attempt") == 3
    assert actions.count("callback.contact_deleted") == 1
    assert "callback.reveal" not in actions
    kinds = [e.kind for e in await desk.events(case_id)]
    assert kinds.count("callback_attempt") == 3 and "callback_contact_deleted" in kinds
    # the timeline has the attempts with their notes
    timeline = (await agent.get(f"/api/staff/cases/{case_id}/timeline")).json()["entries"]
    texts = [e.get("text") for e in timeline if e.get("event") == "callback_attempt"]
    assert texts == [None, "kort bericht", "goed gesprek"]
    # a later attempt is still recorded (the agent rings back), the state stays
    late = await agent.post(attempts, {"outcome": "no_answer"})
    assert late.json()["state"] == "reached"


async def test_a_wrong_number_deletes_the_number(desk: Desk) -> None:
    agent, filed = await claimed_callback(desk)
    answer = await agent.post(
        f"/api/staff/cases/{filed['case_id']}/callback/attempts", {"outcome": "wrong_number"}
    )
    assert answer.json()["state"] == "wrong_number"
    row = await callback_row(desk, filed["case_id"])
    assert (row.phone, row.code_word) == (None, None)


@pytest.mark.parametrize(
    "body",
    [{}, {"outcome": "maybe"}, {"outcome": "reached", "note": "x" * 1001}, {"outcome": 1}],
)
async def test_bad_attempts_are_refused(desk: Desk, body: dict[str, object]) -> None:
    agent, filed = await claimed_callback(desk)
    answer = await agent.post(f"/api/staff/cases/{filed['case_id']}/callback/attempts", body)
    assert answer.status_code == 422, answer.text
    assert (await callback_row(desk, filed["case_id"])).attempts == 0


async def test_the_agent_gives_the_victim_a_passphrase_to_continue_in_the_chat(
    desk: Desk,
) -> None:
    agent, filed = await claimed_callback(desk, continue_in_chat=True)
    saskia = await desk.staff("saskia", Role.supervisor)
    path = f"/api/staff/cases/{filed['case_id']}/callback/passphrase"
    # only the one on the phone with the victim
    refused = await saskia.post(path)
    assert refused.status_code == 403
    answer = await agent.post(path)
    assert answer.status_code == 200, answer.text
    issued = answer.json()
    assert issued["reference"] == filed["reference"]
    assert issued["passphrase"] != filed["passphrase"]
    resume = desk.client()
    for passphrase, status in ((filed["passphrase"], 401), (issued["passphrase"], 200)):
        tried = await resume.post(
            "/api/chat/resume", json={"reference": filed["reference"], "passphrase": passphrase}
        )
        assert tried.status_code == status, tried.text
    assert "callback.passphrase" in [a for a, _, _ in await desk.actions(filed["case_id"])]
    assert "passphrase_issued" in [e.kind for e in await desk.events(filed["case_id"])]
    # the passphrase is in no log line or event: only its hash is kept
    assert issued["passphrase"] not in json.dumps(await desk.actions(filed["case_id"]))


async def test_a_passphrase_needs_a_callback_case(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    chat = await desk.victim()
    await agent.act(chat["case_id"], "claim")
    answer = await agent.post(f"/api/staff/cases/{chat['case_id']}/callback/passphrase")
    assert answer.status_code == 404


async def test_the_sweep_ends_requests_whose_windows_passed_or_that_were_kept_too_long(
    desk: Desk,
) -> None:
    passing = await file_request(desk)  # Friday 14:00-16:00 (Amsterdam)
    later = await file_request(
        desk, phone="06 87654321", windows=[window(local(6, 10), local(6, 12))]
    )
    desk.clock.set(datetime(2026, 1, 2, 15, 0, 30, tzinfo=UTC))  # Friday 16:00:30
    assert JOB_NAME in await desk.services.scheduler.run_due()
    ended = await callback_row(desk, passing["case_id"])
    assert (ended.state, ended.phone, ended.code_word) == ("expired", None, None)
    assert (await callback_row(desk, later["case_id"])).phone is not None
    # HELPLINE_RETENTION_CALLBACK_DAYS lowered since: kept no longer than that
    async with desk.services.db.transaction() as session:
        swept = await sweep(session, desk.clock, desk.clock.now(), keep_for=timedelta(hours=1))
    assert swept.finished == [later["case_id"]]
    kept = await callback_row(desk, later["case_id"])
    assert (kept.state, kept.phone, kept.code_word) == ("cancelled", None, None)
    # idempotent: nothing more to do
    async with desk.services.db.transaction() as session:
        assert not await sweep(session, desk.clock, desk.clock.now(), keep_for=timedelta(hours=1))
