"""The figures match values computed by hand from the fixed data set (dataset.py), read from
the real tables and history on SQLite and PostgreSQL, through the domain function and the
endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from helpline.core.errors import Invalid
from helpline.staff.models import Role
from helpline.takedown.figures import (
    median,
    nearest_rank,
    parse_period,
    period_figures,
    year_period,
)
from helpline.takedown.models import Notice, NoticeUrl
from tests.takedown_figures import dataset
from tests.takedown_figures.dataset import (
    EXPECTED_ALPHA,
    EXPECTED_BETA,
    EXPECTED_GAMMA,
    EXPECTED_OVERALL,
    NOW,
    PERIOD,
)
from tests.triage.kit import Desk


def same(actual: Any, expected: Any, where: str = "") -> None:
    """Equal, with floats compared to 1e-9 (rates are divisions)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert sorted(actual) == sorted(expected), f"{where}: keys {sorted(actual)}"
        for key in expected:
            same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-9), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def by_slug(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["platform"]["slug"]: entry for entry in answer["platforms"]}


def figures_only(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "platform"}


async def test_the_figures_of_a_period_match_the_hand_computed_ones(
    desk: Desk, loaded: dataset.Loaded
) -> None:
    period = parse_period(PERIOD["from"], PERIOD["to"], now=NOW, timezone="Europe/Amsterdam")
    assert period.start == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 3, 9, 23, 0, tzinfo=UTC)
    async with desk.services.db.transaction() as session:
        result = (await period_figures(session, period, now=NOW)).as_json()
    same(result["overall"], EXPECTED_OVERALL, "overall")
    platforms = by_slug(result)
    # gamma is active with no notice in the period: a row of zeros; delta is inactive: absent
    assert [e["platform"]["slug"] for e in result["platforms"]] == ["alpha", "beta", "gamma"]
    same(figures_only(platforms["alpha"]), EXPECTED_ALPHA, "alpha")
    same(figures_only(platforms["beta"]), EXPECTED_BETA, "beta")
    same(figures_only(platforms["gamma"]), EXPECTED_GAMMA, "gamma")
    assert platforms["beta"]["platform"] == {
        "id": loaded.platforms["beta"],
        "slug": "beta",
        "name": "Beta <Social> & Co",
    }


async def test_the_endpoint_gives_the_same_figures_and_filters_by_platform(
    desk: Desk, loaded: dataset.Loaded
) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    answer = await supervisor.get("/api/staff/takedown/figures", params=PERIOD)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["period"] == {
        "from": "2026-02-28T23:00:00+00:00",
        "to": "2026-03-09T23:00:00+00:00",
        "timezone": "Europe/Amsterdam",
    }
    assert body["now"] == NOW.isoformat()
    same(body["overall"], EXPECTED_OVERALL, "overall")
    same(figures_only(by_slug(body)["beta"]), EXPECTED_BETA, "beta")

    for key in ("beta", loaded.platforms["beta"]):  # by slug or by id
        one = await supervisor.get(
            "/api/staff/takedown/figures", params={**PERIOD, "platform": key}
        )
        assert one.status_code == 200, one.text
        [only] = one.json()["platforms"]
        assert only["platform"]["slug"] == "beta"
        same(figures_only(only), EXPECTED_BETA, "beta alone")
        same(one.json()["overall"], EXPECTED_BETA, "overall of beta alone")

    # an inactive platform asked for by name is there, with its zeros for the period
    delta = await supervisor.get(
        "/api/staff/takedown/figures", params={**PERIOD, "platform": "delta"}
    )
    assert delta.status_code == 200
    assert delta.json()["overall"]["notices"]["sent"] == 0


async def test_the_period_follows_the_clock_and_the_history(
    desk: Desk, loaded: dataset.Loaded
) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)

    async def overall(**params: str) -> dict[str, Any]:
        answer = await supervisor.get("/api/staff/takedown/figures", params=params)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["overall"]
        return result

    # without from/to: the 30 days up to now (10 March 12:00Z) — the period's notices, plus
    # A5 (9 March 23:30Z) and A6 (28 Feb 22:30Z)
    default = await overall()
    assert default["notices"]["sent"] == 13
    # a time with an offset: B1 alone is sent in the first hour of 1 March (local)
    first_hours = await overall(
        **{"from": "2026-03-01T00:00:00+01:00", "to": "2026-03-01T02:00:00+01:00"}
    )
    assert first_hours["notices"]["sent"] == 1
    assert first_hours["categories"] == {"sextortion": 1}

    # overdue is read against the clock: a day earlier, B3 (due 7 March 12:00Z) was not yet
    desk.clock.set(datetime(2026, 3, 7, 11, 0, tzinfo=UTC))
    earlier = await overall(**PERIOD)
    assert earlier["overdue_now"] == 1  # B2 only
    desk.clock.set(NOW)

    # the platform answers the awaiting URL of B3 now: honoured, with its history row, 90 h
    # after sending; the notice is honoured and the figures move with it
    async with desk.services.db.transaction() as session:
        notice_id = loaded.notices["B3"]
        await session.execute(
            update(Notice).where(col(Notice.id) == notice_id).values(status="honoured")
        )
        await session.execute(
            update(NoticeUrl)
            .where(col(NoticeUrl.notice_id) == notice_id)
            .values(status="honoured", decision_visibility=dataset.REMOVED)
        )
        sent = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
        session.add(
            dataset.history(notice_id, f"{notice_id[:20]}u1", sent + timedelta(hours=90),
                            "receipt_confirmed", "honoured")
        )  # fmt: skip
    after = await overall(**PERIOD)
    assert after["notices"]["honoured"] == 4
    assert after["notices"]["awaiting"] == 1
    assert after["notices"]["concluded"] == 8
    assert after["honour_rate"] == pytest.approx(4 / 8)
    assert after["overdue_now"] == 1  # B2 only: B3 is decided
    # removal times 2, 5, 12, 20, 30, 40, 90 h: median 20 h, p90 rank ⌈6.3⌉ = 7: 90 h
    assert after["time_to_removal"]["median_seconds"] == 20 * 3600
    assert after["time_to_removal"]["p90_seconds"] == 90 * 3600


def test_median_and_nearest_rank_percentile() -> None:
    assert median([]) is None and nearest_rank([], 0.9) is None
    assert median([3.0]) == 3.0 and nearest_rank([3.0], 0.9) == 3.0
    assert median([1.0, 2.0, 10.0, 20.0]) == 6.0
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert nearest_rank(values, 0.9) == 9.0  # ⌈9.0⌉ = 9th
    assert nearest_rank([float(v) for v in range(1, 12)], 0.9) == 10.0  # ⌈9.9⌉ = 10th
    assert nearest_rank([1.0, 2.0], 0.9) == 2.0


def test_periods_in_the_helplines_time_zone() -> None:
    zone = "Europe/Amsterdam"
    # summer time: local days start at 22:00Z
    summer = parse_period("2026-07-01", "2026-07-31", now=NOW, timezone=zone)
    assert summer.start == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    assert summer.end == datetime(2026, 7, 31, 22, 0, tzinfo=UTC)
    # a date and time in UTC is taken as it is, and `to` is exclusive
    exact = parse_period("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", now=NOW, timezone=zone)
    assert (exact.start, exact.end) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    )
    default = parse_period(None, None, now=NOW, timezone=zone)
    assert (default.start, default.end) == (NOW - timedelta(days=30), NOW)
    year = year_period(2026, zone)
    assert year.start == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert year.end == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    for start, end in [
        ("2026-03-09", "2026-03-01"),  # backwards
        ("yesterday", None),
        ("2026-02-30", None),
        ("2026-03-01T10:00:00", None),  # no offset
        ("2000-01-01", "2026-01-01"),  # longer than ten years
    ]:
        with pytest.raises(Invalid):
            parse_period(start, end, now=NOW, timezone=zone)
    with pytest.raises(Invalid):
        year_period(1999, zone)
