"""The purge: what goes when, completely; legal holds; dry runs; two purges at once."""

from __future__ import annotations

import asyncio

from helpline.cases.models import Case, CaseEvent, Message
from helpline.core.models import DataKey
from helpline.evidence.models import CustodyEntry, EvidenceItem
from helpline.handover.models import Handover
from helpline.intake.callback.models import CallbackRequest
from helpline.retention.models import LegalHold, PurgeRun
from helpline.staff.models import Role
from helpline.takedown.models import Notice
from tests.retention.kit import (
    FILE_BYTES,
    NOTE_SAYS,
    REPORTED_URL,
    STAFF_SAYS,
    VICTIM_SAYS,
    Office,
    counts,
    days,
)


async def test_a_case_past_retention_disappears_completely(office: Office) -> None:
    agent = await office.staff("anna")
    # left open: the purge counts it in the statistics before it goes
    built = await office.full_case(agent, close=False)
    assert built.notice_id and built.handover_id
    keys = {f"case:{built.case_id}", f"notice:{built.notice_id}", f"handover:{built.handover_id}"}
    assert keys <= {row.scope for row in await office.all(DataKey)}
    assert set(built.blobs) <= office.vault_names()
    closed_before = await office.counters("case_closed")
    needles = (built.case_id, built.reference, built.item_id or "", built.handover_id)
    assert len(await office.mentions(*needles)) > 5  # the scan finds them while they exist

    office.clock.advance(days(366))
    run = await office.purge()

    assert run.status == "done"
    assert counts(run) == {
        "cases": 1,
        "messages": 2,
        "evidence_items": 1,
        "blobs": 2,  # the file and the sealed packet
        "callbacks": 1,
        "handovers": 1,
        "keys": 2,  # the case's and the handover's; the notice outlives the case
    }
    # nothing in any table names the case, its reference, its evidence or handover
    assert await office.mentions(*needles) == []
    assert not set(built.blobs) & office.vault_names()
    scopes = {row.scope for row in await office.all(DataKey)}
    assert f"case:{built.case_id}" not in scopes
    assert f"handover:{built.handover_id}" not in scopes
    # its contribution to the statistics stays
    assert await office.counters("case_closed") == closed_before + 1

    # the notice that was sent outlives the case, under its own key and its own clock
    notice = await office.get(Notice, built.notice_id)
    assert notice is not None and notice.case_id is None
    office.clock.advance(days(730 - 366 + 1))
    run = await office.purge()
    assert counts(run) == {"notices": 1, "keys": 1}
    assert await office.get(Notice, built.notice_id) is None
    assert f"notice:{built.notice_id}" not in {row.scope for row in await office.all(DataKey)}
    assert await office.mentions(built.notice_id, REPORTED_URL) == []


async def test_each_kind_is_kept_the_day_before_and_gone_the_day_after(office: Office) -> None:
    agent = await office.staff("anna")
    built = await office.full_case(agent)  # closed now: every clock counts from here
    # notice and handover closed now too

    async def left() -> dict[str, int]:
        return {
            "messages": await office.count(Message, case_id=built.case_id),
            "evidence": await office.count(EvidenceItem, case_id=built.case_id),
            "callbacks": await office.count(CallbackRequest, case_id=built.case_id),
            "handovers": await office.count(Handover, id=built.handover_id),
            "case": await office.count(Case, id=built.case_id),
            "notices": await office.count(Notice, id=built.notice_id),
        }

    start = office.clock.now()
    everything = {k: 1 for k in ("evidence", "callbacks", "handovers", "case", "notices")}

    async def at(day: float) -> dict[str, int]:
        office.clock.set(start + days(day))
        await office.purge()
        return await left()

    assert await at(6) == {"messages": 2, **everything}
    assert await at(8) == {"messages": 2, **everything, "callbacks": 0}
    assert await at(29) == {"messages": 2, **everything, "callbacks": 0}
    after_handovers = {"messages": 2, **everything, "callbacks": 0, "handovers": 0}
    assert await at(31) == after_handovers
    assert await at(89) == after_handovers
    # messages go at 90 days, evidence stays until 365
    assert await at(91) == {**after_handovers, "messages": 0}
    assert set(built.blobs[:1]) <= office.vault_names()
    assert await at(364) == {**after_handovers, "messages": 0}
    assert await at(366) == {**after_handovers, "messages": 0, "evidence": 0, "case": 0}
    assert not set(built.blobs) & office.vault_names()
    assert await at(729) == {**after_handovers, "messages": 0, "evidence": 0, "case": 0}
    assert await at(731) == dict.fromkeys(everything | {"messages": 0}, 0)


async def test_message_purge_removes_what_the_email_side_keeps(office: Office) -> None:
    agent = await office.staff("anna")
    built = await office.full_case(agent)
    office.clock.advance(days(91))
    run = await office.purge()
    assert counts(run) == {"messages": 2, "callbacks": 1, "handovers": 1, "blobs": 1, "keys": 1}
    # the address, what was said: gone; the file (evidence) is still there
    assert await office.mentions("victim@example.net") == []
    assert await office.count(EvidenceItem, case_id=built.case_id) == 1
    assert await office.count(CustodyEntry) >= 1


async def test_a_legal_hold_stops_the_purge_until_it_is_lifted(office: Office) -> None:
    agent = await office.staff("anna")
    supervisor = await office.staff("sam", Role.supervisor)
    built = await office.full_case(agent)
    path = f"/api/staff/cases/{built.case_id}/legal-hold"
    refused = await agent.post(path, {"reason": "police investigation 2026-17"})
    assert refused.status_code == 403
    placed = await supervisor.post(path, {"reason": "police investigation 2026-17"})
    assert placed.status_code == 201, placed.text
    assert placed.json()["hold"]["reason"] == "police investigation 2026-17"
    assert placed.json()["hold"]["placed_by"]["name"] == "Sam"
    again = await supervisor.post(path, {"reason": "twice"})
    assert again.status_code == 409

    office.clock.advance(days(800))  # past every period
    run = await office.purge()
    assert counts(run) == {}  # nothing: not the case, its messages, its notice or handover
    assert await office.count(Message, case_id=built.case_id) == 2
    assert await office.get(Notice, built.notice_id or "") is not None
    assert await office.get(Handover, built.handover_id or "") is not None
    assert set(built.blobs) <= office.vault_names()

    lifted = await supervisor.http.delete(path, headers={"X-CSRF-Token": supervisor.csrf})
    assert lifted.status_code == 200, lifted.text
    assert await office.get(LegalHold, built.case_id) is None
    kinds = [event.kind for event in await office.events(built.case_id)]
    assert kinds[-2:] == ["legal_hold", "legal_hold_lifted"]
    actions = [action for action, _, _ in await office.actions(built.case_id)]
    assert "retention.hold_placed" in actions and "retention.hold_lifted" in actions
    # the reason is in no audit line
    assert not [line for line in await office.audit() if "2026-17" in line.details]

    run = await office.purge()
    assert counts(run)["cases"] == 1 and counts(run)["notices"] == 1
    assert not await office.case_exists(built.case_id)


async def test_a_dry_run_changes_nothing_and_reports_what_a_run_would_remove(
    office: Office,
) -> None:
    agent = await office.staff("anna")
    await office.full_case(agent)
    await office.full_case(agent, close=False)
    office.clock.advance(days(100))
    before = await office.table_sizes()
    dry = await office.purge(dry_run=True)
    after = await office.table_sizes()
    assert dry.dry_run and dry.status == "done"
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"purge_runs", "audit_log"}  # the run's record and its audit line
    real = await office.purge()
    assert (
        counts(dry)
        == counts(real)
        == {
            "messages": 4,
            "callbacks": 2,
            "handovers": 2,
            "blobs": 2,
            "keys": 2,
        }
    )
    runs = await office.all(PurgeRun)
    assert sorted(run.dry_run for run in runs) == [False, True]


async def test_two_purges_at_once_neither_fails_nor_counts_twice(office: Office) -> None:
    agent = await office.staff("anna")
    built = [await office.full_case(agent) for _ in range(4)]
    office.clock.advance(days(366))
    first, second = await asyncio.gather(
        office.purge(batch_size=1, trigger="cli"), office.purge(batch_size=1)
    )
    assert first.status == second.status == "done"
    total = {
        key: counts(first).get(key, 0) + counts(second).get(key, 0)
        for key in set(counts(first)) | set(counts(second))
    }
    assert total == {
        "cases": 4,
        "messages": 8,
        "evidence_items": 4,
        "blobs": 8,
        "callbacks": 4,
        "handovers": 4,
        "keys": 8,
    }
    for case in built:
        assert not await office.case_exists(case.case_id)
    assert await office.count(CaseEvent) == 0


async def test_what_a_case_said_is_unreadable_once_its_key_is_gone(office: Office) -> None:
    agent = await office.staff("anna")
    built = await office.full_case(agent)
    # the plaintext was never in the database to begin with
    assert await office.mentions(VICTIM_SAYS, STAFF_SAYS, NOTE_SAYS) == []
    assert await office.mentions(FILE_BYTES[:20].decode()) == []
    office.clock.advance(days(366))
    await office.purge()
    assert not await office.case_exists(built.case_id)
