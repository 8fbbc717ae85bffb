"""`GET /api/staff/handovers/awaiting-confirmation`: the recorded (verbal/written) yeses that wait
for a second staff member, for any colleague, also one who does not hold the case: not the
caller's own, not a no, not a yes given in the chat, not once confirmed, withdrawn or expired.
Trimmed: what the list shows, never the summary or the evidence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.handover.conftest import Cast, Member, Scene

PATH = "/api/staff/handovers/awaiting-confirmation"


async def waiting(member: Member) -> list[dict[str, Any]]:
    answer = await member.get(PATH)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()["handovers"]
    return listed


async def record(member: Member, handover_id: str, decision: str = "accepted") -> None:
    shown = (await member.get(f"/api/staff/handovers/{handover_id}")).json()
    answer = await member.post(
        f"/api/staff/handovers/{handover_id}/consent",
        {"method": "verbal", "decision": decision, "text_sha256": shown["consent_text_sha256"]},
    )
    assert answer.status_code == 200, answer.text


async def test_a_recorded_yes_waits_for_any_colleague_but_not_for_its_recorder(
    scene: Scene, cast: Cast
) -> None:
    handover, _ = await scene.proposal(cast)
    assert await waiting(cast.colleague) == []
    await record(cast.agent, handover["id"])
    recorded = (await cast.agent.get(f"/api/staff/handovers/{handover['id']}")).json()["consent"]

    [entry] = await waiting(cast.colleague)  # bert does not hold the case
    assert entry == {
        "id": handover["id"],
        "reference": handover["reference"],
        "partner": handover["partner"],
        "recorded_by": {"id": cast.agent.id, "name": "Anna"},
        "recorded_at": recorded["recorded_at"],
        "expires_at": recorded["expires_at"],
    }
    assert [h["id"] for h in await waiting(cast.supervisor)] == [handover["id"]]
    assert await waiting(cast.agent) == []  # the recorder cannot be the second staff member

    confirmed = await cast.colleague.post(f"/api/staff/handovers/{handover['id']}/consent/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert await waiting(cast.colleague) == []
    assert await waiting(cast.supervisor) == []


async def test_no_a_chat_answer_and_an_expired_yes_wait_for_nobody(
    scene: Scene, cast: Cast
) -> None:
    declined, _ = await scene.proposal(cast, name="Declined")
    await record(cast.agent, declined["id"], decision="declined")
    in_chat, victim = await scene.proposal(cast, name="In chat")
    assert (await scene.victim_says(victim, in_chat["id"])).status_code == 200
    cancelled, _ = await scene.proposal(cast, name="Cancelled")
    await record(cast.agent, cancelled["id"])
    gone = await cast.agent.post(f"/api/staff/handovers/{cancelled['id']}/cancel", {})
    assert gone.status_code == 200, gone.text
    late, _ = await scene.proposal(cast, name="Late")
    await record(cast.agent, late["id"])
    assert [h["id"] for h in await waiting(cast.colleague)] == [late["id"]]

    hours = scene.services.settings.handover_consent_hours
    scene.clock.advance(timedelta(hours=hours) - timedelta(seconds=1))
    assert [h["id"] for h in await waiting(cast.colleague)] == [late["id"]]
    scene.clock.advance(timedelta(seconds=1))  # expired: it could no longer be confirmed
    assert await waiting(cast.colleague) == []


async def test_oldest_first_and_nothing_of_the_case_in_it(scene: Scene, cast: Cast) -> None:
    first, _ = await scene.proposal(cast, name="First")
    second, _ = await scene.proposal(cast, name="Second")
    await record(cast.agent, second["id"])
    scene.clock.advance(timedelta(minutes=5))
    await record(cast.supervisor, first["id"])
    listed = await waiting(cast.colleague)
    assert [h["id"] for h in listed] == [second["id"], first["id"]]
    assert [h["recorded_by"]["name"] for h in listed] == ["Anna", "Sam"]
    # the supervisor does not see their own; the agent does not see theirs
    assert [h["id"] for h in await waiting(cast.supervisor)] == [second["id"]]
    assert [h["id"] for h in await waiting(cast.agent)] == [first["id"]]
    for entry in listed:
        assert not {"summary", "evidence", "case_id", "consent_text"} & entry.keys()
