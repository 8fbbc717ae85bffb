"""Working a case through the console API: every status change, closing with an outcome,
triage and priority overrides, release, transfers (warm and cold), handover notes, supervisor
assignment, the audit and timeline entries of each, and who may do what."""

from __future__ import annotations

import uuid

import pytest

from helpline.cases import service
from helpline.cases.models import Sender
from helpline.staff.models import Role
from tests.triage.kit import Desk, Member


async def victim_writes(desk: Desk, case_id: str, text: str = "ben je er nog?") -> None:
    found = desk.services
    async with found.db.transaction() as session:
        await service.post_message(
            session,
            found.keyring,
            found.clock,
            case_id=case_id,
            sender=Sender.victim,
            text=text,
            client_id=uuid.uuid4().hex,
        )


async def claimed(desk: Desk, agent: Member, topic: str | None = None) -> str:
    receipt = await desk.victim(topic)
    await agent.act(receipt["case_id"], "claim")
    return receipt["case_id"]


async def test_every_status_and_closing_with_an_outcome(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    case_id = await claimed(desk, agent)
    assert (await agent.case(case_id))["status"] == "in_conversation"
    for status in ("waiting_victim", "waiting_platform", "handed_over", "in_conversation"):
        assert (await agent.act(case_id, "status", {"status": status}))["status"] == status
    for bad in ("new", "closed", "resting", ""):
        refused = await agent.post(f"/api/staff/cases/{case_id}/status", {"status": bad})
        assert refused.status_code == 422, bad
    assert (await agent.post(f"/api/staff/cases/{case_id}/status", {})).status_code == 422

    # a victim writing to a case that waits for them brings it back into the conversation
    await agent.act(case_id, "status", {"status": "waiting_victim"})
    await victim_writes(desk, case_id)
    assert (await agent.case(case_id))["status"] == "in_conversation"

    refused = await agent.post(f"/api/staff/cases/{case_id}/close", {"outcome": "solved"})
    assert refused.status_code == 422
    closed = await agent.act(case_id, "close", {"outcome": "referred"})
    assert (closed["status"], closed["outcome"]) == ("closed", "referred")
    row = await desk.row(case_id)
    assert row.ended_at is not None and row.outcome == "referred"
    again = await agent.post(f"/api/staff/cases/{case_id}/close", {"outcome": "no_action"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "case_closed"
    late = await agent.post(f"/api/staff/cases/{case_id}/status", {"status": "in_conversation"})
    assert late.status_code == 409
    assert case_id not in {c["id"] for c in await agent.queue()}

    kinds = [(e.kind, e.actor) for e in await desk.events(case_id)]
    assert sorted(k for k, _ in kinds) == ["claim", "close"] + ["status"] * 5
    assert {actor for _, actor in kinds} == {f"staff:{agent.id}"}
    actions = [a for a, _, _ in await desk.actions(case_id)]
    assert actions.count("case.status") == 5
    assert (
        "case.close",
        f"staff:{agent.id}",
        {"outcome": "referred", "previous": "in_conversation"},
    ) in (await desk.actions(case_id))
    assert actions.index("case.open") < actions.index("case.close")  # GET is audited


async def test_the_victim_can_still_end_their_own_chat(desk: Desk) -> None:
    agent = await desk.staff("bram")
    receipt = await desk.victim()
    await agent.act(receipt["case_id"], "claim")
    ended = await desk.client().post(
        "/api/chat/end", headers={"Authorization": f"Bearer {receipt['token']}"}
    )
    assert ended.json() == {"status": "ended"}
    row = await desk.row(receipt["case_id"])
    assert (row.status, row.outcome) == ("closed", None)
    assert "case.end" in [a for a, _, _ in await desk.actions(receipt["case_id"])]
    # writing again puts the victim back in the queue, counted from now
    desk.clock.advance(minutes=5)
    async with desk.services.db.transaction() as session:
        case = await session.get(service.Case, receipt["case_id"])
        assert case is not None
        await service.reopen(session, desk.clock, case)
    row = await desk.row(receipt["case_id"])
    assert (row.status, row.assigned_staff_id) == ("new", None)
    assert [e.kind for e in await desk.events(receipt["case_id"])][-2:] == ["end", "reopen"]


async def test_triage_recomputes_priority_unless_overridden(desk: Desk) -> None:
    agent = await desk.staff("carla")
    case_id = await claimed(desk, agent, "privacy")
    assert (await agent.case(case_id))["priority"] == 4
    changed = await agent.act(case_id, "triage", {"risk_flags": ["spreading_now", "wants_police"]})
    assert changed["risk_flags"] == ["spreading_now", "wants_police"]
    assert (changed["priority"], changed["category"], changed["referral"]) == (2, "privacy", None)
    changed = await agent.act(case_id, "triage", {"category": "sextortion"})
    assert changed["risk_flags"] == ["spreading_now", "wants_police"]  # left alone
    changed = await agent.act(case_id, "triage", {"category": None, "risk_flags": []})
    assert (changed["category"], changed["risk_flags"], changed["priority"]) == (None, [], 3)
    for bad in ({"category": "weather"}, {"risk_flags": ["sad"]}, {"risk_flags": None}, {"x": 1}):
        refused = await agent.post(f"/api/staff/cases/{case_id}/triage", bad)
        assert refused.status_code == 422, bad

    # an override needs a reason, holds against triage changes, and can be lifted
    no_reason = await agent.post(f"/api/staff/cases/{case_id}/priority", {"priority": 1})
    assert no_reason.status_code == 422
    for bad in ({"priority": 0, "reason": "x"}, {"priority": 5, "reason": "x"}, {}):
        assert (await agent.post(f"/api/staff/cases/{case_id}/priority", bad)).status_code == 422
    reason = "Dreigt vanavond alles te versturen"
    overridden = await agent.act(case_id, "priority", {"priority": 1, "reason": reason})
    assert (overridden["priority"], overridden["priority_overridden"]) == (1, True)
    kept = await agent.act(case_id, "triage", {"category": "privacy"})
    assert (kept["priority"], kept["priority_name"]) == (1, "urgent")
    desk.clock.advance(seconds=1)
    lifted = await agent.act(case_id, "priority", {"priority": None})
    assert (lifted["priority"], lifted["priority_overridden"]) == (4, False)

    events = await desk.events(case_id)
    [override, _lift] = [e for e in events if e.kind == "priority"]
    assert override.text is not None and reason.encode() not in override.text  # encrypted
    assert '"overridden":true' in override.details and reason not in override.details
    actions = await desk.actions(case_id)
    assert [a for a, _, _ in actions].count("case.triage") == 4
    assert [a for a, _, _ in actions].count("case.priority") == 2
    assert all(reason not in str(details) for _, _, details in actions)
    first_triage = next(d for a, _, d in actions if a == "case.triage")
    assert first_triage["risk_flags"] == "spreading_now,wants_police"
    assert first_triage["previous_priority"] == 4 and first_triage["priority"] == 2


async def test_possible_minor_applies_the_evidence_rule_and_refers(desk: Desk) -> None:
    agent = await desk.staff("dirk")
    case_id = await claimed(desk, agent, "intimate_images")
    answer = await agent.act(case_id, "triage", {"category": "possible_minor"})
    assert answer["possible_minor"] is True and answer["priority"] == 2
    assert "hotline" in answer["referral"]
    assert (await desk.row(case_id)).possible_minor is True
    assert "case.possible_minor" in [a for a, _, _ in await desk.actions(case_id)]


async def test_release_puts_a_case_back_in_its_place(desk: Desk) -> None:
    agent = await desk.staff("eva")
    first = await desk.victim()
    desk.clock.advance(minutes=2)
    second = await desk.victim()
    await agent.act(first["case_id"], "claim")
    desk.clock.advance(minutes=2)
    released = await agent.act(first["case_id"], "release")
    assert (released["status"], released["assigned_to"], released["claimed_at"]) == (
        "new",
        None,
        None,
    )
    waiting = await agent.queue(status="new")
    assert [c["id"] for c in waiting] == [first["case_id"], second["case_id"]]
    again = await agent.post(f"/api/staff/cases/{first['case_id']}/release")
    assert again.status_code == 403  # no longer theirs
    assert [e.kind for e in await desk.events(first["case_id"])] == ["claim", "release"]


async def test_warm_and_cold_transfers_with_a_handover_note(desk: Desk) -> None:
    agent = await desk.staff("femke")
    colleague = await desk.staff("gijs")
    supervisor = await desk.staff("sanne", Role.supervisor)
    case_id = await claimed(desk, agent, "sextortion")

    for bad in (
        {"to": colleague.id, "note": "   "},
        {"to": "nobody", "note": "x"},
        {"to": agent.id, "note": "to myself"},
        {"note": "no target given"},
    ):
        refused = await agent.post(f"/api/staff/cases/{case_id}/transfer", bad)
        assert refused.status_code == 422, bad

    # warm: the colleague has it, and sees the note first
    note = "Slachtoffer is 17, wil geen politie. Dreiging loopt tot 20:00."
    warm = await agent.act(case_id, "transfer", {"to": colleague.id, "note": note})
    assert warm["assigned_to"] == {"id": colleague.id, "name": "Gijs"}
    assert warm["status"] == "in_conversation"
    assert (await agent.get(f"/api/staff/cases/{case_id}")).status_code == 403
    opened = await colleague.case(case_id)
    handover = opened["handover"]
    assert handover["note"] == note and handover["warm"] is True
    assert handover["from"] == {"id": agent.id, "name": "Femke"}
    assert handover["to"] == {"id": colleague.id, "name": "Gijs"}
    # only the one who has it marks it read
    not_theirs = await supervisor.post(f"/api/staff/cases/{case_id}/handover/seen")
    assert not_theirs.status_code == 403
    seen = await colleague.act(case_id, "handover/seen")
    assert seen["handover"] is None
    assert (await colleague.case(case_id))["handover"] is None
    assert (await colleague.act(case_id, "handover/seen"))["handover"] is None  # idempotent

    # cold: back into the queue; whoever claims it reads the note
    cold_note = "Wacht op screenshots van het slachtoffer."
    cold = await colleague.act(case_id, "transfer", {"to": None, "note": cold_note})
    assert (cold["status"], cold["assigned_to"]) == ("new", None)
    assert case_id in {c["id"] for c in await agent.queue(assigned="none")}
    await agent.act(case_id, "claim")
    handover = (await agent.case(case_id))["handover"]
    assert handover["note"] == cold_note and handover["warm"] is False and handover["to"] is None
    await agent.act(case_id, "handover/seen")

    events = await desk.events(case_id)
    transfers = [e for e in events if e.kind == "transfer"]
    assert len(transfers) == 2
    assert all(e.text is not None and note.encode() not in e.text for e in transfers)
    actions = await desk.actions(case_id)
    logged = [(a, d.get("warm")) for a, _, d in actions if a == "case.transfer"]
    assert logged == [("case.transfer", True), ("case.transfer", False)]
    assert [a for a, _, _ in actions].count("case.handover_seen") == 2
    assert all(note not in str(d) for _, _, d in actions)


async def test_supervisors_assign_agents_do_not(desk: Desk) -> None:
    agent = await desk.staff("hanna")
    colleague = await desk.staff("ivo")
    supervisor = await desk.staff("sanne", Role.supervisor)
    receipt = await desk.victim("grooming")
    case_id = receipt["case_id"]
    refused = await agent.post(f"/api/staff/cases/{case_id}/assign", {"to": agent.id})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assigned = await supervisor.act(case_id, "assign", {"to": agent.id})
    assert (assigned["status"], assigned["assigned_to"]["id"]) == ("in_conversation", agent.id)
    moved = await supervisor.act(case_id, "assign", {"to": colleague.id})
    assert moved["assigned_to"]["id"] == colleague.id
    assert (await agent.get(f"/api/staff/cases/{case_id}")).status_code == 403
    bad = await supervisor.post(f"/api/staff/cases/{case_id}/assign", {"to": "nobody"})
    assert bad.status_code == 422
    assigns = [
        (d["to"], d["previous"]) for a, _, d in await desk.actions(case_id) if a == "case.assign"
    ]
    assert assigns == [(agent.id, None), (colleague.id, agent.id)]
    # a supervisor works on any case
    closed = await supervisor.act(case_id, "close", {"outcome": "advice_only"})
    assert closed["status"] == "closed"
    assert (
        await supervisor.post(f"/api/staff/cases/{case_id}/assign", {"to": agent.id})
    ).status_code == 409


async def test_agents_are_refused_on_cases_that_are_not_theirs(desk: Desk) -> None:
    owner = await desk.staff("jan")
    other = await desk.staff("kim")
    case_id = await claimed(desk, owner, "doxxing")
    waiting = (await desk.victim())["case_id"]
    for target in (case_id, waiting):
        assert (await other.get(f"/api/staff/cases/{target}")).status_code == 403
        assert (await other.get(f"/api/staff/cases/{target}/messages")).status_code == 403
        for action, body in (
            ("release", {}),
            ("transfer", {"to": None, "note": "weg ermee"}),
            ("handover/seen", {}),
            ("triage", {"risk_flags": ["self_harm"]}),
            ("priority", {"priority": 1, "reason": "ik wil"}),
            ("status", {"status": "waiting_victim"}),
            ("close", {"outcome": "no_action"}),
        ):
            answer = await other.post(f"/api/staff/cases/{target}/{action}", body)
            assert answer.status_code == 403, (action, answer.text)
    taken = await other.post(f"/api/staff/cases/{case_id}/claim")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "already_claimed"
    assert (await other.get("/api/staff/overview")).status_code == 403
    assert (await other.get("/api/staff/cases/nope")).status_code in (403, 404)
    missing = await owner.post("/api/staff/cases/no-such-case/claim")
    assert missing.status_code == 404
    # nothing changed
    row = await desk.row(case_id)
    assert (row.status, row.assigned_staff_id, row.risk_flags) == ("in_conversation", owner.id, "")


@pytest.mark.parametrize("role", [Role.supervisor, Role.admin])
async def test_supervisors_and_admins_open_any_case(desk: Desk, role: Role) -> None:
    agent = await desk.staff("lotte")
    boss = await desk.staff("marit", role)
    case_id = await claimed(desk, agent)
    assert (await boss.case(case_id))["assigned_to"]["id"] == agent.id
    flagged = await boss.act(case_id, "triage", {"risk_flags": ["physical_danger"]})
    assert flagged["priority"] == 1
    opened = [(a, actor) for a, actor, _ in await desk.actions(case_id) if a == "case.open"]
    assert opened == [("case.open", f"staff:{boss.id}")]
