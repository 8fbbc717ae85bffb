"""The victim's side, from the chat: only their own case's proposals, a JSON without staff
names or internals, answering and withdrawing, and the websocket nudge to fetch again."""

from __future__ import annotations

import json
from typing import Any

from pyrage import x25519

from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.staff.models import Role
from tests.handover.conftest import Cast, Scene
from tests.intake.chatkit import StaffMember, Victim
from tests.live import free_port, live_server

VICTIM_KEYS = {
    "id",
    "partner",
    "status",
    "awaiting_confirmation",
    "language",
    "title",
    "text",
    "text_sha256",
    "will_receive",
    "will_not_receive",
    "contact_method",
    "can_answer",
    "can_add_contact",
    "can_withdraw",
    "decision",
    "answered_at",
}


async def test_the_victim_sees_exactly_the_proposal_and_nothing_internal(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast)
    [shown] = await victim.handovers()
    assert set(shown) == VICTIM_KEYS
    assert shown["id"] == handover["id"] and shown["status"] == "proposed"
    assert shown["partner"] == {
        "name": "Fier",
        "kind": "sexual_violence_care",
        "description": "Fier helps you further.",
    }
    assert shown["text"] == handover["consent_text"]
    assert shown["text_sha256"] == handover["consent_text_sha256"]
    assert shown["will_receive"] == handover["will_receive"]
    assert "Fier will receive:" in shown["text"] and "Fier will not receive:" in shown["text"]
    assert shown["can_answer"] and shown["can_add_contact"] and not shown["can_withdraw"]
    flat = json.dumps(shown)
    # no staff names or ids, no case id, no partner id, no evidence ids, no hashes of items
    for secret in (
        cast.agent.id,
        "Anna",
        victim.case_id,
        handover["partner"]["id"],
        handover["reference"],
        *[e["id"] for e in handover["evidence"]],
        *[e["sha256"] for e in handover["evidence"]],
    ):
        assert secret not in flat
    # the summary appears only as part of the text shown
    assert flat.count("Her ex shares her photos") == 2  # in `text` and in `will_receive`

    answered = await scene.victim_says(victim, handover["id"], contact_details="06 12345678")
    body = answered.json()
    assert body["status"] == "consented" and body["can_withdraw"] and not body["can_answer"]
    assert body["decision"] == "accepted" and body["answered_at"] is not None
    assert set(body) == VICTIM_KEYS


async def test_a_victim_sees_and_answers_only_their_own_case(scene: Scene, cast: Cast) -> None:
    handover, owner = await scene.proposal(cast)
    stranger = await scene.start_victim()
    assert await stranger.handovers() == []
    path = f"/api/chat/handovers/{handover['id']}"
    [shown] = await owner.handovers()
    body = {"decision": "accepted", "text_sha256": shown["text_sha256"]}
    answer = await stranger.post(f"{path}/consent", body)
    assert answer.status_code == 404
    assert (await stranger.post(f"{path}/withdraw")).status_code == 404
    assert await scene.consents(handover["id"]) == []
    # without a token: nobody
    anonymous = await scene.client().get("/api/chat/handovers")
    assert anonymous.status_code == 401
    # staff cookies are not a victim token
    assert (await cast.agent.get("/api/chat/handovers")).status_code == 401
    assert (await owner.post(f"{path}/consent", body)).status_code == 200


async def test_bad_answers_are_refused(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast)
    path = f"/api/chat/handovers/{handover['id']}/consent"
    for body in (
        {"decision": "maybe", "text_sha256": "0" * 64},
        {"decision": "accepted"},
        {"decision": "accepted", "text_sha256": "0" * 64, "method": "verbal"},
    ):
        answer = await victim.post(path, body)
        assert answer.status_code == 422, body
    too_long = await scene.victim_says(victim, handover["id"], contact_details="x" * 400)
    assert too_long.status_code == 422
    assert await scene.consents(handover["id"]) == []


async def test_the_chat_socket_tells_both_sides_to_fetch_again(
    settings_for: Any, database_url: str
) -> None:
    port = free_port()
    settings: Settings = settings_for(
        database_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    db = Database(database_url)
    members: list[StaffMember] = []
    try:
        async with live_server(settings, port=port) as server:
            admin = await StaffMember.create(db, server.url, "socket-admin", Role.admin)
            agent = await StaffMember.create(db, server.url, "socket-agent", Role.agent)
            members += [admin, agent]
            created = await admin.post(
                "/api/staff/partners",
                json={
                    "name": "CSG",
                    "kind": "sexual_violence_care",
                    "contact_email": "a@b.example.org",
                },
            )
            partner_id = created.json()["id"]
            key = await admin.post(
                f"/api/staff/partners/{partner_id}/key",
                json={"recipient": str(x25519.Identity.generate().to_public())},
            )
            await admin.post(
                f"/api/staff/partners/{partner_id}/key/confirm",
                json={"fingerprint": key.json()["key"]["fingerprint"]},
            )
            victim = await Victim(server.url).start()
            case_id = await agent.claim(victim.reference)
            victim_chat = await victim.chat(server.ws_url)
            staff_chat = await agent.chat(server.ws_url, case_id)
            proposed = await agent.post(
                f"/api/staff/cases/{case_id}/handovers",
                json={"partner_id": partner_id, "parts": ["timeline"]},
            )
            assert proposed.status_code == 201, proposed.text
            seen_by_victim = await victim_chat.wait_for(lambda f: f["type"] == "handover")
            seen_by_staff = await staff_chat.wait_for(lambda f: f["type"] == "handover")
            assert seen_by_victim == {"type": "handover"}
            assert seen_by_staff == {"type": "handover", "case_id": case_id}
            await victim_chat.close()
            await staff_chat.close()
    finally:
        for member in members:
            await member.close()
        await db.dispose()
