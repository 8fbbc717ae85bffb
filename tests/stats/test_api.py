"""The statistics API against the hand-counted data set (tests/stats/dataset.py), the CSV and
JSON exports, who may read them, and that no counter holds an id or a text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from sqlalchemy import select

from helpline.staff.models import Role
from helpline.stats.models import StatCounter
from helpline.stats.routes import EXPORT_COLUMNS
from tests.stats import dataset
from tests.triage.kit import Desk

TWO_WEEKS = {"from": "2026-03-09", "to": "2026-03-22", "group": "week"}


async def test_the_figures_match_the_hand_counted_data_set(desk: Desk) -> None:
    loaded = await dataset.load(desk)
    answer = await loaded.supervisor.get("/api/staff/stats", params=TWO_WEEKS)
    assert answer.status_code == 200, answer.text
    figures = answer.json()
    assert figures["periods"] == ["2026-03-09", "2026-03-16"]
    assert figures["contacts"]["by_period"] == [
        {"period": "2026-03-09", "chat": 3, "email": 1, "total": 4},
        {"period": "2026-03-16", "chat": 1, "total": 1},
    ]
    assert figures["contacts"]["total"] == 5
    cases = figures["cases"]
    assert cases["closed"] == 4
    assert cases["by_category"] == {"doxxing": 1, "harassment": 1, "none": 1, "sextortion": 1}
    assert cases["by_outcome"] == {
        "advice_only": 1,
        "ended_by_victim": 1,
        "referred": 1,
        "removal_requested": 1,
    }
    assert cases["helped_without_referral"] == {"cases": 3, "share": 0.75}
    assert cases["takedown_eligible"] == {"cases": 2, "share": 0.5}
    assert cases["first_response_minutes"] == {
        "0-5": 1, "5-15": 0, "15-60": 0, "60-240": 0, "240+": 0, "none": 3,
    }  # fmt: skip
    notices = figures["notices"]
    assert notices["sent"] == 2
    alpha, beta = notices["by_platform"]
    assert (alpha["name"], beta["name"]) == ("Alpha Video", "Beta Social")
    assert alpha["sent"] == beta["sent"] == 1
    assert alpha["outcomes"]["honoured"] == beta["outcomes"]["honoured"] == 1
    assert beta["outcomes"]["no_response"] == 0  # revised to honoured
    assert alpha["honour_rate"] == beta["honour_rate"] == 1.0
    assert alpha["removal_hours"]["72+"] == 1 and sum(alpha["removal_hours"].values()) == 1
    assert beta["removal_hours"]["24-72"] == 1 and sum(beta["removal_hours"].values()) == 1
    assert notices["honour_rate"] == 1.0
    assert notices["removed_within_24h"] == 0.0
    assert figures["handovers"]["by_partner_kind"] == {
        "police": {"approved": 1, "consented": 1, "delivered": 1, "downloaded": 1, "sealed": 1}
    }
    assert figures["handovers"]["delivered_by_partner_kind"] == {"police": 1}

    # by month: one period; the second week alone: only what was counted in it
    month = (
        await loaded.supervisor.get("/api/staff/stats", params={**TWO_WEEKS, "group": "month"})
    ).json()
    assert month["contacts"]["by_period"] == [
        {"period": "2026-03-01", "chat": 4, "email": 1, "total": 5}
    ]
    second = (
        await loaded.supervisor.get("/api/staff/stats", params={**TWO_WEEKS, "from": "2026-03-16"})
    ).json()
    assert second["contacts"]["total"] == 1
    assert second["cases"]["by_outcome"] == {"advice_only": 1}
    assert [p["sent"] for p in second["notices"]["by_platform"]] == [0, 1]


async def test_exports_hold_the_counters_per_period(desk: Desk) -> None:
    loaded = await dataset.load(desk)
    answer = await loaded.supervisor.get("/api/staff/stats.csv", params=TWO_WEEKS)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    table = {(r[0], r[2], r[3]): int(r[4]) for r in rows[1:]}
    assert all(r[1] == "week" for r in rows[1:])
    assert table[("2026-03-09", "contact", "channel=chat")] == 3
    assert table[("2026-03-09", "contact", "channel=email")] == 1
    assert table[("2026-03-16", "contact", "channel=chat")] == 1
    closed = "category=harassment;channel=chat;outcome=advice_only;referred=no;takedown=yes"
    assert table[("2026-03-16", "case_closed", closed)] == 1
    alpha = loaded.platforms["Alpha Video"]
    decided = f"category=sextortion;hours=72+;outcome=honoured;platform={alpha}"
    assert table[("2026-03-16", "notice_decided", decided)] == 1

    exported = (await loaded.supervisor.get("/api/staff/stats.json", params=TWO_WEEKS)).json()
    assert exported["group"] == "week" and exported["timezone"] == "Europe/Amsterdam"
    as_json = {
        (r["period"], r["metric"], ";".join(f"{k}={v}" for k, v in sorted(r["dims"].items()))):
        r["count"] for r in exported["rows"]
    }  # fmt: skip
    assert as_json == table


async def test_no_counter_holds_an_id_a_reference_or_a_text(desk: Desk) -> None:
    loaded = await dataset.load(desk)
    async with desk.services.db.transaction() as session:
        rows = (await session.execute(select(StatCounter))).scalars().all()
    assert rows
    stored = "\n".join(f"{r.day} {r.metric} {r.dims}" for r in rows)
    platform_ids = set(loaded.platforms.values())
    for identifier in loaded.identifiers:
        if identifier in platform_ids:
            continue  # directory ids of companies: the one id a counter may hold
        assert identifier not in stored
        assert identifier.lower() not in stored.lower()
    for text in (dataset.VICTIM_TEXT, dataset.STAFF_TEXT, "photoshare", "Zedenpolitie"):
        assert text.lower() not in stored.lower()


async def test_only_supervisors_read_statistics(desk: Desk) -> None:
    await dataset.load(desk)
    agent = await desk.staff("alex", Role.agent)
    for path in ("/api/staff/stats", "/api/staff/stats.csv", "/staff/statistics"):
        assert (await agent.get(path)).status_code == 403
        assert (await desk.client().get(path)).status_code == 401


async def test_bad_queries_are_refused(desk: Desk) -> None:
    loaded = await dataset.load(desk)
    for params in (
        {"from": "2026-13-01"},
        {"group": "day"},
        {"from": "2026-03-10", "to": "2026-03-01"},
        {"from": "2000-01-01", "to": "2026-03-01"},
        {"platform": "x"},
    ):
        answer = await loaded.supervisor.get("/api/staff/stats", params=params)
        assert answer.status_code == 422, (params, answer.text)


async def test_an_unpublished_report_is_not_there(desk: Desk) -> None:
    assert desk.services.settings.publish_report is False  # the default
    desk.clock.set(datetime(2027, 1, 5, 9, 0, tzinfo=UTC))
    for path in ("/report/2026", "/report/2026.json"):
        assert (await desk.client().get(path)).status_code == 404
