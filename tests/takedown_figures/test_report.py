"""The yearly trusted-flagger report (DSA art. 22(3)) as JSON, CSV and a readable page with
SVG charts, the charts alone, who may read them, and what they must never contain."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from helpline.staff.models import Role
from helpline.takedown.models import Platform
from helpline.takedown.report import BAR_AREA, BAR_COLOUR
from tests.takedown_figures import dataset
from tests.takedown_figures.dataset import (
    AGE,
    CV,
    DEEPFAKE,
    DISABLED,
    GROOMING,
    HARASSMENT,
    IMPERSONATION,
    MINORS,
    NCII,
    PERIOD,
    PRIVACY,
    REMOVED,
    STALKING,
)
from tests.takedown_figures.test_figures import same
from tests.triage.kit import Desk, Member

REPORT = "/api/staff/takedown/report/2026"
SVG = "{http://www.w3.org/2000/svg}"

# 2026 in Europe/Amsterdam: the period's 11 notices, A5 and A6 (just outside the period),
# D1 (January, inactive platform) and G1 (31 Dec 23:30Z = 1 Jan 00:30 local); not G0
# (31 Dec 22:30Z = 23:30 local) and not B7 (never sent).
EXPECTED_PROVIDERS = [
    {
        # A1 A5 honoured, A2 partly, A3 A6 declined, A4 awaiting: 2 / 5; removal 1, 2, 5, 30 h
        "provider": "Alpha Video",
        "slug": "alpha",
        "notices": 6,
        "urls": 9,
        "outcomes": {
            "honoured": 2, "partly_honoured": 1, "declined": 2, "more_info_requested": 0,
            "no_response": 0, "awaiting": 1, "withdrawn": 0,
        },
        "actions": {"declined": 4, REMOVED: 3, "awaiting": 1, DISABLED: 1},
        "declined_reasons": {"not_illegal": 3, "insufficient_information": 1},
        "honour_rate": 0.4,
        "median_hours_to_removal": 3.5,
        "p90_hours_to_removal": 30.0,
    },
    {
        "provider": "Beta <Social> & Co",
        "slug": "beta",
        "notices": 7,
        "urls": 9,
        "outcomes": {
            "honoured": 2, "partly_honoured": 1, "declined": 0, "more_info_requested": 1,
            "no_response": 1, "awaiting": 1, "withdrawn": 1,
        },
        "actions": {
            REMOVED: 2, AGE: 1, "awaiting": 1, "declined": 1, "more_info_requested": 1,
            "no_response": 1, "removed": 1, "withdrawn": 1,
        },
        "declined_reasons": {"not_given": 1},
        "honour_rate": 0.5,
        "median_hours_to_removal": 20.0,
        "p90_hours_to_removal": 40.0,
    },
    {
        "provider": "Delta Archive",
        "slug": "delta",
        "notices": 1,
        "urls": 1,
        "outcomes": {
            "honoured": 1, "partly_honoured": 0, "declined": 0, "more_info_requested": 0,
            "no_response": 0, "awaiting": 0, "withdrawn": 0,
        },
        "actions": {REMOVED: 1},
        "declined_reasons": {},
        "honour_rate": 1.0,
        "median_hours_to_removal": 10.0,
        "p90_hours_to_removal": 10.0,
    },
    {
        "provider": "Gamma Forum",
        "slug": "gamma",
        "notices": 1,
        "urls": 1,
        "outcomes": {
            "honoured": 1, "partly_honoured": 0, "declined": 0, "more_info_requested": 0,
            "no_response": 0, "awaiting": 0, "withdrawn": 0,
        },
        "actions": {REMOVED: 1},
        "declined_reasons": {},
        "honour_rate": 1.0,
        "median_hours_to_removal": 3.0,
        "p90_hours_to_removal": 3.0,
    },
]  # fmt: skip
# all: honoured 6 of concluded 11; removal 1, 2, 3, 5, 10, 12, 20, 30, 40 h: median 10 h
EXPECTED_TOTALS = {
    "notices": 15,
    "urls": 20,
    "providers": 4,
    "honour_rate": 6 / 11,
    "median_hours_to_removal": 10.0,
}
EXPECTED_CONTENT_CATEGORIES = [
    {"dsa_category": CV, "notices": 11},
    {"dsa_category": PRIVACY, "notices": 3},
    {"dsa_category": MINORS, "notices": 1},
]
EXPECTED_KEYWORDS = [
    {"dsa_keyword": NCII, "notices": 6},
    {"dsa_keyword": HARASSMENT, "notices": 2},
    {"dsa_keyword": DEEPFAKE, "notices": 2},
    {"dsa_keyword": STALKING, "notices": 1},
    {"dsa_keyword": GROOMING, "notices": 1},
    {"dsa_keyword": IMPERSONATION, "notices": 1},
]
EXPECTED_ACTIONS = [
    {"action": REMOVED, "urls": 7},
    {"action": "declined", "urls": 5},
    {"action": "awaiting", "urls": 2},
    {"action": AGE, "urls": 1},
    {"action": DISABLED, "urls": 1},
    {"action": "more_info_requested", "urls": 1},
    {"action": "no_response", "urls": 1},
    {"action": "removed", "urls": 1},
    {"action": "withdrawn", "urls": 1},
]


def personal_data(loaded: dataset.Loaded) -> list[str]:
    """What must never appear: the reported URLs, the case, the notices' ids and references."""
    urls = [
        dataset.url_text(n.key, position)
        for n in dataset.notices()
        for position in range(1, len(n.urls) + 1)
    ]
    return [
        *urls,
        "victim-content.example",
        loaded.case_id,
        loaded.case_reference,
        *loaded.notices.values(),
        *loaded.references.values(),
    ]


def assert_clean(text: str, loaded: dataset.Loaded) -> None:
    for secret in personal_data(loaded):
        assert secret not in text, f"{secret!r} is in the output"


async def test_the_yearly_report_as_json(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    answer = await supervisor.get(REPORT)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["year"] == 2026
    assert report["flagger"] == "Hulplijn"
    assert report["period"] == {
        "from": "2025-12-31T23:00:00+00:00",
        "to": "2026-12-31T23:00:00+00:00",
        "timezone": "Europe/Amsterdam",
    }
    same(report["totals"], EXPECTED_TOTALS, "totals")
    same(report["by_provider"], EXPECTED_PROVIDERS, "by_provider")
    same(report["by_content_category"], EXPECTED_CONTENT_CATEGORIES, "categories")
    same(report["by_content_keyword"], EXPECTED_KEYWORDS, "keywords")
    same(report["by_action"], EXPECTED_ACTIONS, "actions")
    same(
        report["declined_reasons"],
        [
            {"reason": "not_illegal", "urls": 3},
            {"reason": "insufficient_information", "urls": 1},
            {"reason": "not_given", "urls": 1},
        ],
        "declined_reasons",
    )
    assert report["by_outcome"] == {
        "honoured": 6, "partly_honoured": 2, "declined": 2, "more_info_requested": 1,
        "no_response": 1, "awaiting": 2, "withdrawn": 1,
    }  # fmt: skip
    assert_clean(answer.text, loaded)
    # no platform ids either: a reader of the report needs names, not our keys
    for platform_id in loaded.platforms.values():
        assert platform_id not in answer.text

    # a year without notices is a report of zeros, not an error
    empty = (await supervisor.get("/api/staff/takedown/report/2024")).json()
    assert empty["totals"]["notices"] == 0 and empty["by_provider"] == []


async def test_the_yearly_report_as_csv(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    # a platform name a spreadsheet would run as a formula
    async with desk.services.db.transaction() as session:
        await session.execute(
            update(Platform)
            .where(col(Platform.slug) == "delta")
            .values(name='=HYPERLINK("http://evil.example")')
        )
    answer = await supervisor.get(f"{REPORT}.csv")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        'attachment; filename="trusted-flagger-report-2026.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == [
        "section", "provider", "dsa_category", "dsa_keyword", "action", "reason", "notices",
        "urls", "honour_rate", "median_hours_to_removal", "text",
    ]  # fmt: skip
    total = rows[0]
    assert (total["section"], total["notices"], total["urls"]) == ("total", "15", "20")
    assert float(total["honour_rate"]) == pytest.approx(6 / 11, abs=1e-4)
    providers = {r["provider"]: r for r in rows if r["section"] == "provider"}
    assert providers["Alpha Video"]["notices"] == "6"
    assert providers["Alpha Video"]["honour_rate"] == "0.4000"
    assert providers["Alpha Video"]["median_hours_to_removal"] == "3.5000"
    assert providers["Beta <Social> & Co"]["urls"] == "9"
    assert '\'=HYPERLINK("http://evil.example")' in providers
    alpha_actions = {
        r["action"]: int(r["urls"])
        for r in rows
        if r["section"] == "provider_action" and r["provider"] == "Alpha Video"
    }
    assert alpha_actions == {"declined": 4, REMOVED: 3, "awaiting": 1, DISABLED: 1}
    categories = {
        r["dsa_category"]: int(r["notices"]) for r in rows if r["section"] == "content_category"
    }
    assert categories == {CV: 11, PRIVACY: 3, MINORS: 1}
    keywords = {
        r["dsa_keyword"]: int(r["notices"]) for r in rows if r["section"] == "content_keyword"
    }
    assert keywords == {e["dsa_keyword"]: e["notices"] for e in EXPECTED_KEYWORDS}
    actions = {r["action"]: int(r["urls"]) for r in rows if r["section"] == "action"}
    assert actions == {e["action"]: e["urls"] for e in EXPECTED_ACTIONS}
    reasons = {r["reason"]: int(r["urls"]) for r in rows if r["section"] == "declined_reason"}
    assert reasons == {"not_illegal": 3, "insufficient_information": 1, "not_given": 1}
    assert_clean(answer.text, loaded)


def inline_svgs(html: str) -> list[ElementTree.Element]:
    return [ElementTree.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", html, re.DOTALL)]


def bars(svg: ElementTree.Element) -> list[float]:
    return [
        float(r.get("width", "0")) for r in svg.iter(f"{SVG}rect") if r.get("fill") == BAR_COLOUR
    ]


def labels(svg: ElementTree.Element) -> list[str]:
    """The text beside each bar (the label's full text is its <title>)."""
    found = []
    for text in svg.iter(f"{SVG}text"):
        title = text.find(f"{SVG}title")
        if title is not None and title.text:
            found.append(title.text)
    return found


async def test_the_readable_page_with_its_charts(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    answer = await supervisor.get(f"{REPORT}.html")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    # served under the app's policy: no script may run, and none is needed
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    html = answer.text
    assert "<script" not in html.lower()
    assert " style=" not in html and "<style" not in html
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "/static/common/base.css",
        "2026",
        "2026.csv",
    ]
    assert "<h1>Trusted flagger report 2026</h1>" in html
    # the platform's name is text, never markup
    assert "Beta &lt;Social&gt; &amp; Co" in html
    assert "<Social>" not in html
    assert_clean(html, loaded)

    charts = inline_svgs(html)
    assert [c.find(f"{SVG}title").text for c in charts] == [  # type: ignore[union-attr]
        "Honour rate per platform",
        "Median time to removal per platform",
        "Notices by type of illegal content",
        "URLs by action taken",
    ]
    honour, removal, categories, actions = charts
    assert labels(honour) == ["Alpha Video", "Beta <Social> & Co", "Delta Archive", "Gamma Forum"]
    # bars to scale: 0.4, 0.5, 1, 1 of the bar area
    assert bars(honour) == pytest.approx(
        [0.4 * BAR_AREA, 0.5 * BAR_AREA, BAR_AREA, BAR_AREA], abs=0.06
    )
    # median hours 3.5, 20, 10, 3 against the longest (20)
    assert bars(removal) == pytest.approx([b / 20 * BAR_AREA for b in (3.5, 20, 10, 3)], abs=0.06)
    assert labels(categories) == [
        "Cyber violence",
        "Data protection and privacy violations",
        "Protection of minors",
    ]
    assert bars(categories) == pytest.approx(
        [BAR_AREA, 3 / 11 * BAR_AREA, 1 / 11 * BAR_AREA], abs=0.06
    )
    assert labels(actions)[:3] == ["Removed", "Declined", "Awaiting decision"]
    assert len(bars(actions)) == len(EXPECTED_ACTIONS)


async def test_each_chart_alone_as_svg(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    for name in ("honour-rate", "time-to-removal", "categories", "actions"):
        answer = await supervisor.get(f"/api/staff/takedown/charts/{name}.svg", params=PERIOD)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/svg+xml; charset=utf-8"
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        svg = ElementTree.fromstring(answer.text)  # well-formed, standalone
        assert svg.tag == f"{SVG}svg"
        assert "<script" not in answer.text
        assert_clean(answer.text, loaded)
    # the period's honour rates (1/3, 1/2; gamma sent nothing and has no bar), one platform
    honour = await supervisor.get("/api/staff/takedown/charts/honour-rate.svg", params=PERIOD)
    chart = ElementTree.fromstring(honour.text)
    assert labels(chart) == ["Alpha Video", "Beta <Social> & Co"]
    assert bars(chart) == pytest.approx([BAR_AREA / 3, BAR_AREA / 2], abs=0.06)
    alone = await supervisor.get(
        "/api/staff/takedown/charts/honour-rate.svg", params={**PERIOD, "platform": "alpha"}
    )
    assert labels(ElementTree.fromstring(alone.text)) == ["Alpha Video"]
    # a period without notices draws an empty chart that says so
    nothing = await supervisor.get(
        "/api/staff/takedown/charts/actions.svg", params={"from": "2020-01-01", "to": "2020-12-31"}
    )
    assert "No notices in this period." in nothing.text


async def test_supervisors_only(desk: Desk, loaded: dataset.Loaded) -> None:
    agent = await desk.staff("gijs", Role.agent)
    admin = await desk.staff("ada", Role.admin)
    nobody = desk.client()
    paths = [
        "/api/staff/takedown/figures",
        "/api/staff/takedown/charts/actions.svg",
        REPORT,
        f"{REPORT}.csv",
        f"{REPORT}.html",
    ]
    for path in paths:
        assert (await nobody.get(path)).status_code == 401, path
        refused = await agent.get(path)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert (await admin.get(path)).status_code == 200, path


async def test_bad_input_gets_a_clear_4xx(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor: Member = await desk.staff("sanne", Role.supervisor)
    figures = "/api/staff/takedown/figures"
    cases: list[tuple[str, dict[str, Any] | list[tuple[str, str]], int, str]] = [
        (figures, {"platform": "nope"}, 404, "not_found"),
        (figures, {"from": "last week"}, 422, "invalid"),
        (figures, {"from": "2026-03-09", "to": "2026-03-01"}, 422, "invalid"),
        (figures, {"to": "2026-03-01T10:00"}, 422, "invalid"),
        (figures, {"from": ""}, 422, "invalid"),
        (figures, {"from": "2026-01-01" * 20}, 422, "invalid"),
        (figures, {"category": "sextortion"}, 422, "invalid"),
        (figures, [("from", "2026-01-01"), ("from", "2026-02-01")], 422, "invalid"),
        ("/api/staff/takedown/charts/pie.svg", {}, 404, "not_found"),
        ("/api/staff/takedown/charts/actions.svg", {"to": "nope"}, 422, "invalid"),
        ("/api/staff/takedown/report/1999", {}, 422, "invalid"),
        ("/api/staff/takedown/report/999999999.csv", {}, 422, "invalid"),
        ("/api/staff/takedown/report/2026.html", {"lang": "de"}, 422, "invalid"),
        ("/api/staff/takedown/report/2026.html", {"colour": "red"}, 422, "invalid"),
        ("/api/staff/takedown/report/2026", {"lang": "nl"}, 422, "invalid"),
        ("/api/staff/takedown/report/twenty", {}, 404, "not_found"),
        ("/api/staff/takedown/report/2026.pdf", {}, 404, "not_found"),
    ]
    for path, params, status, code in cases:
        answer = await supervisor.get(path, params=params)
        assert answer.status_code == status, (path, params, answer.text)
        assert answer.json()["error"]["code"] == code, (path, params)


async def test_the_figures_answer_names_no_one(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    answer = await supervisor.get("/api/staff/takedown/figures", params={"from": "2025-01-01"})
    assert answer.status_code == 200
    assert_clean(answer.text, loaded)
    assert json.loads(answer.text)["overall"]["notices"]["sent"] == 16  # all sent, G0 too
