"""Upcoming purges, a case's schedule, purge runs and "run now", over HTTP."""

from __future__ import annotations

from helpline.staff.models import Role
from tests.retention.kit import Office, days


async def test_staff_see_upcoming_purges_a_week_ahead(office: Office) -> None:
    anna = await office.staff("anna")
    bob = await office.staff("bob")
    supervisor = await office.staff("sam", Role.supervisor)
    annas = await office.full_case(anna)
    bobs = await office.full_case(bob)
    office.clock.advance(days(85))  # messages are due at 90 days
    await office.purge()  # callbacks (7 days) and handovers (30) went already

    answer = await anna.get("/api/staff/retention/upcoming", params={"days": "7"})
    assert answer.status_code == 200, answer.text
    listed = answer.json()["cases"]
    assert [entry["reference"] for entry in listed] == [annas.reference]
    assert listed[0]["on_hold"] is False
    kinds = [entry["kind"] for entry in listed[0]["purges"]]
    assert "messages" in kinds and "evidence" not in kinds

    placed = await supervisor.post(
        f"/api/staff/cases/{bobs.case_id}/legal-hold", {"reason": "court order"}
    )
    assert placed.status_code == 201
    everyone = (await supervisor.get("/api/staff/retention/upcoming")).json()["cases"]
    assert {e["reference"]: e["on_hold"] for e in everyone} == {
        annas.reference: False,
        bobs.reference: True,
    }
    nothing = (await anna.get("/api/staff/retention/upcoming", params={"days": "1"})).json()
    assert nothing["cases"] == []
    bad = await anna.get("/api/staff/retention/upcoming", params={"days": "0"})
    assert bad.status_code == 422


async def test_a_case_shows_its_schedule_and_hold(office: Office) -> None:
    anna = await office.staff("anna")
    supervisor = await office.staff("sam", Role.supervisor)
    built = await office.full_case(anna)
    answer = await anna.get(f"/api/staff/cases/{built.case_id}/retention")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["hold"] is None and body["counted_from"] == "closure"
    schedule = {entry["kind"]: entry for entry in body["schedule"]}
    assert set(schedule) == {"messages", "evidence", "callbacks", "case"}
    assert all(entry["has_data"] for entry in schedule.values())
    assert [n["reference"] for n in body["notices"]] and [h for h in body["handovers"]]

    await supervisor.post(f"/api/staff/cases/{built.case_id}/legal-hold", {"reason": "police"})
    held = (await anna.get(f"/api/staff/cases/{built.case_id}/retention")).json()["hold"]
    assert held["reason"] == "police" and held["placed_by"]["name"] == "Sam"
    other = await office.staff("otto")
    refused = await other.get(f"/api/staff/cases/{built.case_id}/retention")
    assert refused.status_code == 403


async def test_admins_run_the_purge_and_see_the_runs(office: Office) -> None:
    anna = await office.staff("anna")
    admin = await office.staff("ada", Role.admin)
    await office.full_case(anna)
    office.clock.advance(days(91))
    dry = await admin.post("/api/staff/retention/purge", {"dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["counts"]["messages"] == 2
    real = await admin.post("/api/staff/retention/purge", {})
    assert real.status_code == 201, real.text
    assert real.json()["counts"]["messages"] == 2 and real.json()["trigger"] == "staff"
    runs = (await admin.get("/api/staff/retention/runs")).json()["runs"]
    assert sorted(run["dry_run"] for run in runs) == [False, True]
    assert (await anna.get("/api/staff/retention/runs")).status_code == 403
    actions = [line.action for line in await office.audit()]
    assert actions.count("retention.run_now") == 2
