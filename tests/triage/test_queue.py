"""The queue: a new chat's first category and priority, the order (priority, then waiting time)
for staff and for the victim's place, filters, the case object and the vocabulary."""

from __future__ import annotations

from typing import Any

import pytest

from helpline.cases import service
from helpline.staff.models import Role
from tests.triage.kit import Desk

CASE_KEYS = {
    "id",
    "reference",
    "channel",
    "status",
    "language",
    "topic",
    "category",
    "risk_flags",
    "priority",
    "priority_name",
    "priority_overridden",
    "possible_minor",
    "outcome",
    "created_at",
    "queued_at",
    "last_activity_at",
    "claimed_at",
    "assigned_to",
    "unread",
    "email_failed",
    "sla",
    "viewers",
    "handover",
}


async def positions(desk: Desk, case_ids: list[str]) -> list[int | None]:
    async with desk.services.db.transaction() as session:
        result = []
        for case_id in case_ids:
            case = await session.get(service.Case, case_id)
            assert case is not None
            result.append(await service.queue_position(session, case))
        return result


async def test_the_topic_is_the_first_category_and_sets_the_priority(desk: Desk) -> None:
    agent = await desk.staff("anouk")
    plain = await desk.victim()
    privacy = await desk.victim("privacy", language="en")
    sextortion = await desk.victim("sextortion")
    by_id = {c["id"]: c for c in await agent.queue()}
    assert (by_id[plain["case_id"]]["category"], by_id[plain["case_id"]]["priority"]) == (None, 3)
    assert by_id[privacy["case_id"]]["category"] == "privacy"
    assert by_id[privacy["case_id"]]["priority_name"] == "low"
    assert by_id[sextortion["case_id"]]["topic"] == "sextortion"
    assert by_id[sextortion["case_id"]]["category"] == "sextortion"
    assert (
        by_id[sextortion["case_id"]]["priority"],
        by_id[sextortion["case_id"]]["priority_name"],
    ) == (
        2,
        "high",
    )
    # a victim cannot pick the category only staff judge
    refused = await desk.client().post("/api/chat/start", json={"topic": "possible_minor"})
    assert refused.status_code == 422


async def test_the_queue_orders_by_priority_then_waiting_time(desk: Desk) -> None:
    agent = await desk.staff("bram")
    first_normal = await desk.victim("harassment")
    desk.clock.advance(minutes=1)
    low = await desk.victim("privacy")
    desk.clock.advance(minutes=1)
    second_normal = await desk.victim("deepfake")
    desk.clock.advance(minutes=1)
    high = await desk.victim("grooming")  # came last, goes first
    order = [first_normal, low, second_normal, high]
    ids = [r["case_id"] for r in order]
    expected = [high["case_id"], first_normal["case_id"], second_normal["case_id"], low["case_id"]]
    assert [c["id"] for c in await agent.queue()] == expected
    # the victim's place in the queue follows the same order
    assert await positions(desk, ids) == [2, 4, 3, 1]

    # marked high-risk by staff, a waiting case moves up past the others of its old priority
    supervisor = await desk.staff("sanne", Role.supervisor)
    await supervisor.act(low["case_id"], "triage", {"risk_flags": ["self_harm"]})
    assert [c["id"] for c in await agent.queue()][0] == low["case_id"]
    assert await positions(desk, ids) == [3, 1, 4, 2]

    # a claimed case leaves the victims' queue but stays in the staff's list, by priority
    await agent.act(high["case_id"], "claim")
    assert await positions(desk, ids) == [2, 1, 3, None]
    assert [c["id"] for c in await agent.queue()] == [
        low["case_id"],
        high["case_id"],
        first_normal["case_id"],
        second_normal["case_id"],
    ]


async def test_the_queue_filters(desk: Desk) -> None:
    agent = await desk.staff("carla")
    nl = await desk.victim("sextortion")
    en = await desk.victim("sextortion", language="en")
    other = await desk.victim("doxxing")
    await agent.act(nl["case_id"], "claim")

    async def ids(**filters: str) -> set[str]:
        return {c["id"] for c in await agent.queue(**filters)}

    everything = {nl["case_id"], en["case_id"], other["case_id"]}
    assert await ids() == everything == await ids(assigned="any") == await ids(channel="chat")
    assert await ids(channel="email") == set()
    assert await ids(category="sextortion") == {nl["case_id"], en["case_id"]}
    assert await ids(language="en") == {en["case_id"]}
    assert await ids(status="new") == {en["case_id"], other["case_id"]}
    assert await ids(status="in_conversation") == {nl["case_id"]}
    assert await ids(assigned="me") == {nl["case_id"]}
    assert await ids(assigned="none") == {en["case_id"], other["case_id"]}
    assert await ids(category="sextortion", assigned="none", language="en") == {en["case_id"]}

    for bad in (
        {"category": "weather"},
        {"status": "closed"},
        {"assigned": "you"},
        {"language": "fr"},
        {"channel": "pigeon"},
        {"sort": "name"},
    ):
        answer = await agent.get("/api/staff/cases", params=bad)
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["code"] == "invalid"


async def test_the_case_object_is_as_documented(desk: Desk) -> None:
    agent = await desk.staff("dirk")
    receipt = await desk.victim("sextortion")
    listed = await agent.queue()
    answer = await agent.get("/api/staff/cases")
    assert set(answer.json()) == {"cases", "now"}
    [case] = listed
    assert set(case) == CASE_KEYS
    assert case["reference"] == receipt["reference"]
    assert case["risk_flags"] == [] and case["priority_overridden"] is False
    assert case["assigned_to"] is None and case["claimed_at"] is None
    assert case["sla"]["kind"] == "first_response" and case["sla"]["breached"] is False
    assert case["viewers"] == [] and case["handover"] is None and case["outcome"] is None
    claimed = await agent.act(case["id"], "claim")
    assert set(claimed) == CASE_KEYS
    assert claimed["assigned_to"] == {"id": agent.id, "name": "Dirk"}
    assert claimed["claimed_at"] is not None
    opened = await agent.case(case["id"])
    assert set(opened) == CASE_KEYS


@pytest.mark.parametrize(
    "desk_overrides",
    [
        {
            "sla_first_response_minutes": "urgent=3,high=6,normal=9,low=12",
            "sla_next_response_minutes": "urgent=4,high=8,normal=16,low=32",
        }
    ],
)
async def test_the_vocabulary(desk: Desk, desk_overrides: dict[str, Any]) -> None:
    agent = await desk.staff("eva")
    vocabulary = (await agent.get("/api/staff/triage/vocabulary")).json()
    categories = {c["code"]: c for c in vocabulary["categories"]}
    assert list(categories) == [
        "intimate_images",
        "sextortion",
        "deepfake",
        "doxxing",
        "impersonation",
        "harassment",
        "privacy",
        "grooming",
        "possible_minor",
        "other",
    ]
    assert categories["sextortion"] == {
        "code": "sextortion",
        "dsa_category": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
        "dsa_keyword": "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    }
    assert vocabulary["flags"] == [
        "minor_involved",
        "self_harm",
        "extortion_deadline",
        "spreading_now",
        "physical_danger",
        "wants_police",
    ]
    assert vocabulary["priorities"][0] == {"level": 1, "name": "urgent"}
    assert vocabulary["statuses"] == [
        "new",
        "in_conversation",
        "waiting_victim",
        "waiting_platform",
        "handed_over",
        "closed",
    ]
    assert vocabulary["outcomes"] == [
        "advice_only",
        "removal_requested",
        "referred",
        "no_action",
        "no_contact",
    ]
    assert vocabulary["sla"] == {
        "first_response_minutes": {"1": 3, "2": 6, "3": 9, "4": 12},
        "next_response_minutes": {"1": 4, "2": 8, "3": 16, "4": 32},
    }
    assert "hotline" in vocabulary["hotline_referral"]["text"]
