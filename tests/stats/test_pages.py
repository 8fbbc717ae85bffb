"""The statistics page and the public annual report: SVG charts inline, nothing from another
origin, no script; the public report suppresses small numbers and appears only when published
and only for a year that is over."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from typing import Any

import pytest

from helpline.staff.models import Role
from helpline.stats.report import suppress_breakdown, suppressed_share
from tests.stats import dataset
from tests.triage.kit import Desk

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
URL = re.compile(r"(?:https?:)?//[^\s\"'<>]+")
TWO_WEEKS = {"from": "2026-03-09", "to": "2026-03-22", "group": "week"}


def check_self_contained(html: str) -> list[str]:
    """No script, no style attribute, no URL of another origin; returns the inline SVGs."""
    assert "<script" not in html.lower()
    assert " style=" not in html.lower()
    assert [u for u in URL.findall(html) if u != "http://www.w3.org/2000/svg"] == []
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed
    return svgs


async def test_the_statistics_page_draws_its_charts_inline(desk: Desk) -> None:
    loaded = await dataset.load(desk)
    answer = await loaded.supervisor.get(
        "/staff/statistics",
        params=TWO_WEEKS,
        headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["content-language"] == "nl"
    html = answer.text
    assert '<html lang="nl">' in html and "Statistieken" in html
    svgs = check_self_contained(html)
    assert len(svgs) >= 5
    assert "Alpha Video" in html and "Intimidatie" in html  # the console's own labels
    assert "/api/staff/stats.csv?from=2026-03-09" in html
    assert "/api/staff/stats.json?from=2026-03-09" in html
    assert "/staff/report/2025" in html
    english = await loaded.supervisor.get("/staff/statistics", params={**TWO_WEEKS, "lang": "en"})
    assert '<html lang="en">' in english.text and "Contacts per week by channel" in english.text
    css = await desk.client().get("/report/report.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media print" in css.text


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    return {"publish_report": True, "trusted_flagger_statement": "We take no money from platforms."}


async def test_the_public_report_suppresses_small_numbers(desk: Desk) -> None:
    await dataset.load(desk)
    anonymous = desk.client()
    assert (await anonymous.get("/report/2026")).status_code == 404  # the year is not over
    desk.clock.set(datetime(2027, 1, 5, 9, 0, tzinfo=UTC))
    answer = await anonymous.get("/report/2026.json")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    own = report["helpline_figures"]
    assert own["contacts"]["total"] == 5
    # e-mail 1 is small; chat 4 is small too
    assert own["contacts"]["by_channel"] == {"chat": "<5", "email": "<5"}
    assert own["cases"]["closed"] == "<5"
    assert set(own["cases"]["by_category"].values()) == {"<5"}
    assert own["cases"]["helped_without_referral"] == {"cases": "<5", "share": None}
    assert own["notices"]["honour_rate"] is None
    assert own["handovers"]["delivered_by_partner_kind"] == {"police": "<5"}
    flagger = report["trusted_flagger"]
    assert flagger["totals"]["notices"] == "<5"
    assert [p["notices"] for p in flagger["by_provider"]] == ["<5", "<5"]
    assert flagger["independence_statement"] == "We take no money from platforms."

    page = await anonymous.get("/report/2026", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    html = page.text
    check_self_contained(html)
    assert "Annual report 2026" in html
    assert "&lt;5" in html and "Small numbers are not published" in html
    assert "@media print" not in html  # the print rules live in the served stylesheet
    assert '<link rel="stylesheet" href="/report/report.css">' in html
    assert (await anonymous.get("/report/2027")).status_code == 404
    assert (await anonymous.get("/report/2026", params={"x": "1"})).status_code == 422

    # supervisors preview a report (the current year too) as it would be published
    supervisor = await desk.staff("sue", Role.supervisor)
    preview = await supervisor.get("/staff/report/2027.json")
    assert preview.status_code == 200 and preview.json()["year"] == 2027
    assert (await desk.client().get("/staff/report/2026")).status_code == 401


def test_one_small_cell_takes_the_next_smallest_with_it() -> None:
    assert suppress_breakdown({"a": 10, "b": 2, "c": 7, "d": 0}) == {
        "a": 10, "b": "<5", "c": "<5", "d": 0,
    }  # fmt: skip
    assert suppress_breakdown({"a": 10, "b": 2, "c": 3}) == {"a": 10, "b": "<5", "c": "<5"}
    assert suppressed_share(6, 12) == 0.5
    assert suppressed_share(3, 12) is None  # small on one side
    assert suppressed_share(10, 12) is None  # small on the other
    assert suppressed_share(0, 12) == 0.0
