"""The staff endpoints of a handover: proposing (every refusal), who may see and act, the
`Handover` JSON with its consent text and history, cancelling (the outbox entry is cancelled),
approval, figures, the audit of every view and the bus message after every change."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from helpline.cases.service import channel
from helpline.triage.service import CONSOLE_CHANNEL
from tests.handover.conftest import Cast, Scene

ALL_PARTS = ["summary", "categories", "timeline", "contact", "evidence"]


async def test_a_proposal_shares_nothing_and_shows_exactly_what_it_would(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast, items=2)
    assert handover["status"] == "proposed" and handover["reference"].startswith("H-")
    assert handover["case_id"] == victim.case_id
    assert handover["parts"] == ALL_PARTS
    assert handover["summary"] == "Her ex shares her photos in a group chat since Monday."
    labels = sorted(e["label"] for e in handover["evidence"])
    assert labels == ["screenshot-0.jpg", "screenshot-1.jpg"]
    assert all(len(e["sha256"]) == 64 and e["kind"] == "file" for e in handover["evidence"])
    assert handover["contact_method"] == "phone" and handover["approval_required"] is False
    assert handover["consent"] is None and handover["packet"] is None and handover["link"] is None
    assert handover["created_by"] == {"id": cast.agent.id, "name": "Anna"}
    assert handover["consent_text"].startswith("Sharing your information with Fier")
    assert "Fier will receive:" in handover["consent_text"]
    [entry] = handover["history"]
    assert entry["to"] == "proposed" and entry["actor"]["id"] == cast.agent.id
    assert await scene.outbox() == []
    events = [e for e in await scene.events(victim.case_id) if e.kind == "handover"]
    assert len(events) == 1 and '"partner":"Fier"' in events[0].details


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"parts": []}, 400, "invalid_parts"),
        ({"parts": ["summary", "chat"]}, 400, "invalid_parts"),
        ({"summary": "   "}, 400, "summary_required"),
        ({"evidence_ids": []}, 400, "evidence_required"),
        ({"evidence_ids": ["f" * 32]}, 400, "unknown_evidence"),
        ({"contact_method": "pigeon"}, 422, "invalid"),
        ({"language": "de"}, 422, "invalid"),
        ({"partner_id": "f" * 32}, 422, "invalid"),
    ],
)
async def test_bad_proposals_are_refused(
    scene: Scene, cast: Cast, change: dict[str, Any], status: int, code: str
) -> None:
    partner, _ = await scene.partner(cast.admin)
    victim = await scene.start_victim()
    await cast.agent.act(victim.case_id, "claim")
    body = {
        "partner_id": partner["id"],
        "parts": ALL_PARTS,
        "summary": "A summary.",
        "evidence_ids": [await victim.upload()],
        "contact_method": "phone",
        **change,
    }
    answer = await cast.agent.post(f"/api/staff/cases/{victim.case_id}/handovers", body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


async def test_only_evidence_of_this_case_and_only_ready_partners(scene: Scene, cast: Cast) -> None:
    partner, _ = await scene.partner(cast.admin)
    victim = await scene.start_victim()
    other = await scene.start_victim()
    await cast.agent.act(victim.case_id, "claim")
    await cast.agent.act(other.case_id, "claim")
    foreign = await other.upload()
    path = f"/api/staff/cases/{victim.case_id}/handovers"
    body = {"partner_id": partner["id"], "parts": ["evidence"], "evidence_ids": [foreign]}
    answer = await cast.agent.post(path, body)
    assert answer.json()["error"]["code"] == "unknown_evidence"

    unconfirmed = await cast.admin.post(
        "/api/staff/partners",
        {"name": "GP", "kind": "gp", "contact_email": "gp@huisarts.example.org"},
    )
    body = {"partner_id": unconfirmed.json()["id"], "parts": ["timeline"]}
    answer = await cast.agent.post(path, body)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "partner_not_ready"
    await scene.put(cast.admin, f"/api/staff/partners/{partner['id']}", {"active": False})
    answer = await cast.agent.post(path, {"partner_id": partner["id"], "parts": ["timeline"]})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "partner_not_ready"


async def test_agents_work_only_on_their_own_cases(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast)
    case_path = f"/api/staff/cases/{victim.case_id}/handovers"
    one = f"/api/staff/handovers/{handover['id']}"
    # the colleague does not hold the case
    assert (await cast.colleague.get(case_path)).status_code == 403
    assert (await cast.colleague.get(one)).status_code == 403
    assert (await cast.colleague.post(f"{one}/cancel")).status_code == 403
    body = {"partner_id": handover["partner"]["id"], "parts": ["timeline"]}
    assert (await cast.colleague.post(case_path, body)).status_code == 403
    # a supervisor may, on any case
    scene.clock.advance(timedelta(minutes=1))
    assert (await cast.supervisor.get(one)).status_code == 200
    assert (await cast.supervisor.post(case_path, body)).status_code == 201
    listed = (await cast.agent.get(case_path)).json()["handovers"]
    assert [h["parts"] for h in listed] == [["timeline"], ALL_PARTS]  # newest first
    assert (await cast.agent.get(f"/api/staff/handovers/{'f' * 32}")).status_code == 404


async def test_every_view_is_audited(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast)
    before = len(await scene.actions(victim.case_id))
    await cast.agent.get(f"/api/staff/cases/{victim.case_id}/handovers")
    await cast.supervisor.get(f"/api/staff/handovers/{handover['id']}")
    lines = (await scene.actions(victim.case_id))[before:]
    assert lines == [
        ("case.open", f"staff:{cast.agent.id}", {"via": "handovers"}),
        (
            "case.open",
            f"staff:{cast.supervisor.id}",
            {"via": "handover", "handover": handover["id"]},
        ),
    ]


async def test_cancelling_stops_the_delivery(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast)
    assert (await scene.victim_says(victim, handover["id"])).status_code == 200
    [entry] = await scene.outbox()
    assert entry.status == "pending"
    cancelled = await cast.agent.post(
        f"/api/staff/handovers/{handover['id']}/cancel", {"reason": "wrong partner"}
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "withdrawn" and body["consent"]["withdrawn_at"] is not None
    assert [h["to"] for h in body["history"]] == ["proposed", "consented", "withdrawn"]
    [entry] = await scene.outbox()
    assert entry.status == "cancelled"
    again = await cast.agent.post(f"/api/staff/handovers/{handover['id']}/cancel")
    assert again.status_code == 409
    # the victim no longer sees what staff cancelled
    assert await victim.handovers() == []


async def test_approval_is_for_consented_police_handovers_only(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast)
    path = f"/api/staff/handovers/{handover['id']}/approve"
    answer = await cast.supervisor.post(path)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_police"
    police, victim = await scene.proposal(cast, kind="police", name="Zedenpolitie")
    path = f"/api/staff/handovers/{police['id']}/approve"
    answer = await cast.supervisor.post(path)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_consented"
    assert (await scene.victim_says(victim, police["id"])).status_code == 200
    approved = (await cast.supervisor.post(path)).json()
    assert approved["status"] == "approved"
    assert approved["approved"]["by"] == {"id": cast.supervisor.id, "name": "Sam"}


async def test_figures_count_per_partner_and_kind(scene: Scene, cast: Cast) -> None:
    first, victim = await scene.proposal(cast)
    assert (await scene.victim_says(victim, first["id"])).status_code == 200
    await victim.post(f"/api/chat/handovers/{first['id']}/withdraw")
    second = await scene.propose(
        cast.agent, victim.case_id, partner_id=first["partner"]["id"], parts=["timeline"]
    )
    assert (await scene.victim_says(victim, second["id"], "declined")).status_code == 200
    assert (await cast.agent.get("/api/staff/handovers/figures")).status_code == 403
    figures = (await cast.supervisor.get("/api/staff/handovers/figures")).json()
    [fier] = figures["partners"]
    want = {
        "proposed": 2,
        "consented": 1,
        "declined": 1,
        "delivered": 0,
        "downloaded": 0,
        "withdrawn": 1,
        "expired": 0,
    }
    assert fier["counts"] == want and fier["name"] == "Fier"
    assert figures["kinds"]["sexual_violence_care"] == want
    assert figures["kinds"]["police"]["proposed"] == 0
    partners = (await cast.agent.get("/api/staff/partners")).json()["partners"]
    assert partners[0]["counts"] == want


async def test_every_change_is_announced_on_the_bus(scene: Scene, cast: Cast) -> None:
    partner, _ = await scene.partner(cast.admin)
    victim = await scene.start_victim()
    await cast.agent.act(victim.case_id, "claim")
    case_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    console_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    bus = scene.services.bus
    async with (
        bus.subscribe(channel(victim.case_id), queue=case_inbox),
        bus.subscribe(CONSOLE_CHANNEL, queue=console_inbox),
    ):
        handover = await scene.propose(
            cast.agent, victim.case_id, partner_id=partner["id"], parts=["timeline"]
        )
        await scene.victim_says(victim, handover["id"])
        await victim.post(f"/api/chat/handovers/{handover['id']}/withdraw")
        want = {"type": "handover", "case_id": victim.case_id}
        for inbox in (case_inbox, console_inbox):
            got = []
            while len(got) < 3:
                message = await asyncio.wait_for(inbox.get(), 10)
                if message.get("type") == "handover":
                    got.append(message)
            assert got == [want] * 3
