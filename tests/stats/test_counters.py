"""The counters are written at the event, in its transaction, on the helpline's day; they
survive the deletion of the case; a case is counted once; the validator refuses anything that
is not a code of a closed vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from helpline.cases import service
from helpline.cases.models import Case, Sender
from helpline.stats import counters as stats
from helpline.stats.counters import UnknownDimension, bucket, canonical_dims
from helpline.triage import service as triage
from tests.stats.conftest import counters, counters_in, total
from tests.triage.kit import Desk


async def staff_writes(desk: Desk, case_id: str, staff_id: str, text: str) -> None:
    async with desk.services.db.transaction() as session:
        await service.post_message(
            session,
            desk.services.keyring,
            desk.clock,
            case_id=case_id,
            sender=Sender.staff,
            text=text,
            client_id=f"c-{desk.clock.now().timestamp()}",
            staff_id=staff_id,
        )


async def test_closing_a_case_writes_its_counters_at_that_moment(desk: Desk) -> None:
    # 23:30 UTC on 10 March is 00:30 on 11 March in Amsterdam: the contact's day
    desk.clock.set(datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    agent = await desk.staff("anna")
    receipt = await desk.victim(topic="sextortion")
    case_id = receipt["case_id"]
    assert await counters(desk) == {("2026-03-11", "contact", (("channel", "chat"),)): 1}
    await agent.act(case_id, "claim")
    await agent.act(case_id, "triage", {"risk_flags": ["extortion_deadline", "self_harm"]})
    desk.clock.advance(minutes=7)
    await staff_writes(desk, case_id, agent.id, "hello")
    assert len(await counters(desk)) == 1  # nothing counted before the closure
    desk.clock.advance(hours=2)
    await agent.act(case_id, "close", {"outcome": "advice_only"})
    assert await counters(desk) == {
        ("2026-03-11", "contact", (("channel", "chat"),)): 1,
        (
            "2026-03-11",
            "case_closed",
            (
                ("category", "sextortion"),
                ("channel", "chat"),
                ("outcome", "advice_only"),
                ("referred", "no"),
                ("takedown", "no"),
            ),
        ): 1,
        ("2026-03-11", "case_risk", (("flag", "extortion_deadline"),)): 1,
        ("2026-03-11", "case_risk", (("flag", "self_harm"),)): 1,
        ("2026-03-11", "first_response", (("channel", "chat"), ("minutes", "5-15"))): 1,
    }


async def test_a_closure_rolled_back_leaves_no_counter(desk: Desk) -> None:
    receipt = await desk.victim()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with desk.services.db.transaction() as session:
            case = await session.get(Case, receipt["case_id"])
            assert case is not None
            await triage.close(session, desk.clock, case, staff_id="x", outcome="no_action")
            assert total(await counters_in(session), "case_closed") == 1
            raise Boom
    assert total(await counters(desk), "case_closed") == 0


async def test_counters_survive_the_deletion_of_the_case(desk: Desk) -> None:
    agent = await desk.staff("anna")
    closed = await desk.victim(topic="doxxing")
    await agent.act(closed["case_id"], "claim")
    await agent.act(closed["case_id"], "close", {"outcome": "referred"})
    before = await counters(desk)
    victim = desk.client()
    answer = await victim.post(
        "/api/chat/delete",
        json={"confirm": True},
        headers={"Authorization": f"Bearer {closed['token']}"},
    )
    assert answer.status_code == 200, answer.text
    async with desk.services.db.transaction() as session:
        assert await session.get(Case, closed["case_id"]) is None
    assert await counters(desk) == before  # counted when it closed; deleting changes nothing

    # an open case the victim deletes is counted as it goes, and stays counted
    open_case = await desk.victim(topic="deepfake")
    answer = await victim.post(
        "/api/chat/delete",
        json={"confirm": True},
        headers={"Authorization": f"Bearer {open_case['token']}"},
    )
    assert answer.status_code == 200, answer.text
    after = await counters(desk)
    deleted = {k: v for k, v in after.items() if k[1] == "case_closed" and v}
    assert {dict(k[2])["outcome"]: v for k, v in deleted.items()} == {
        "referred": 1,
        "deleted_by_victim": 1,
    }
    assert total(after, "contact") == 2
    assert total(after, "first_response") == 2


async def test_a_case_closed_reopened_and_closed_again_counts_once(desk: Desk) -> None:
    agent = await desk.staff("anna")
    receipt = await desk.victim(topic="harassment")
    case_id = receipt["case_id"]
    await agent.act(case_id, "claim")
    await agent.act(case_id, "close", {"outcome": "advice_only"})
    for _ in range(2):
        async with desk.services.db.transaction() as session:
            case = await session.get(Case, case_id)
            assert case is not None
            await service.reopen(session, desk.clock, case)
        await agent.act(case_id, "claim")
        await agent.act(case_id, "close", {"outcome": "referred"})
    found = await counters(desk)
    assert total(found, "contact") == 1
    assert total(found, "case_closed") == 1
    assert total(found, "first_response") == 1
    assert total(found, "case_reopened") == 2
    reclosed = {k[2]: v for k, v in found.items() if k[1] == "case_reclosed"}
    assert reclosed == {(("channel", "chat"), ("outcome", "referred")): 2}
    # the first closure's outcome stands
    closed = [dict(k[2]) for k in found if k[1] == "case_closed"]
    assert [c["outcome"] for c in closed] == ["advice_only"]

    # the victim ending a chat is a closure too; deleting it afterwards adds nothing
    other = await desk.victim()
    ended = await desk.client().post(
        "/api/chat/end", headers={"Authorization": f"Bearer {other['token']}"}
    )
    assert ended.status_code == 200, ended.text
    deleted = await desk.client().post(
        "/api/chat/delete",
        json={"confirm": True},
        headers={"Authorization": f"Bearer {other['token']}"},
    )
    assert deleted.status_code == 200, deleted.text
    outcomes = [dict(k[2])["outcome"] for k in await counters(desk) if k[1] == "case_closed"]
    assert sorted(outcomes) == ["advice_only", "ended_by_victim"]


async def test_the_purge_of_an_open_case_is_counted_once(desk: Desk) -> None:
    receipt = await desk.victim()
    async with desk.services.db.transaction() as session:
        case = await session.get(Case, receipt["case_id"])
        assert case is not None
        settings = desk.services.settings
        now = desk.clock.now()
        assert await stats.count_case_closed(session, settings, case, now=now, reason="purged_open")
    outcomes = [dict(k[2])["outcome"] for k in await counters(desk) if k[1] == "case_closed"]
    assert outcomes == ["purged_open"]


def test_the_validator_refuses_what_is_not_a_code() -> None:
    assert canonical_dims("contact", {"channel": "chat"}) == "channel=chat"
    assert (
        canonical_dims("handover", {"status": "delivered", "partner_kind": "police"})
        == "partner_kind=police;status=delivered"
    )
    refused = [
        ("visits", {"channel": "chat"}),  # no such metric
        ("contact", {"channel": "chat", "case": "0123456789abcdef0123456789abcdef"}),
        ("contact", {}),  # a dimension missing
        ("contact", {"channel": "fax"}),  # not in the vocabulary
        (
            "case_closed",
            {
                "channel": "chat",
                "category": "sextortion",
                "outcome": "my ex did it",
                "referred": "no",
                "takedown": "no",
            },
        ),
        ("case_risk", {"flag": "7K3Q-M9PX"}),  # a reference is no flag
        ("notice_sent", {"platform": "a platform; DROP", "category": "doxxing"}),
        ("notice_sent", {"platform": "https://example.org/x", "category": "doxxing"}),
        ("first_response", {"channel": "chat", "minutes": "7"}),
    ]
    for metric, dims in refused:
        with pytest.raises(UnknownDimension):
            canonical_dims(metric, dims)


async def test_a_platform_must_be_in_the_directory(desk: Desk) -> None:
    async with desk.services.db.transaction() as session:
        with pytest.raises(UnknownDimension, match="directory"):
            await stats.bump(
                session,
                desk.services.settings,
                at=desk.clock.now(),
                metric="notice_sent",
                # the shape of an id, but no platform: a case id must not pass
                dims={"platform": "0123456789abcdef0123456789abcdef", "category": "doxxing"},
            )


def test_buckets() -> None:
    minutes = stats.FIRST_RESPONSE_BUCKETS
    assert bucket(None, minutes, 60) == "none"
    assert bucket(timedelta(minutes=-3), minutes, 60) == "0-5"
    assert bucket(timedelta(minutes=4, seconds=59), minutes, 60) == "0-5"
    assert bucket(timedelta(minutes=5), minutes, 60) == "5-15"
    assert bucket(timedelta(minutes=239), minutes, 60) == "60-240"
    assert bucket(timedelta(hours=30), minutes, 60) == "240+"
    hours = stats.REMOVAL_BUCKETS
    assert bucket(timedelta(minutes=59), hours, 3600) == "0-1"
    assert bucket(timedelta(hours=6), hours, 3600) == "6-24"
    assert bucket(timedelta(hours=71), hours, 3600) == "24-72"
    assert bucket(timedelta(days=4), hours, 3600) == "72+"
