"""The art. 22(3) report states how the flagger stays independent of the platforms
(`HELPLINE_TRUSTED_FLAGGER_STATEMENT`) in its JSON, CSV and page; the page also comes in
Dutch (`?lang=nl`), with the same numbers and charts."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest

from helpline.staff.models import Role
from tests.takedown_figures import dataset
from tests.takedown_figures.test_report import REPORT, SVG, assert_clean, inline_svgs
from tests.triage.kit import Desk

STATEMENT = (
    "The helpline is funded by the ministry and takes no money from platforms.\n\n"
    "Its <board> & staff have no ties to any hosting provider."
)


@pytest.fixture
def desk_overrides() -> dict[str, Any]:
    return {"trusted_flagger_statement": STATEMENT}


async def test_the_statement_in_json_csv_and_page(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    data = (await supervisor.get(REPORT)).json()
    assert data["independence_statement"] == STATEMENT

    rows = list(csv.DictReader(io.StringIO((await supervisor.get(f"{REPORT}.csv")).text)))
    stated = [r for r in rows if r["section"] == "independence_statement"]
    assert len(stated) == 1 and stated[0]["text"] == STATEMENT
    assert rows[0]["section"] == "total" and rows[0]["text"] == ""

    html = (await supervisor.get(f"{REPORT}.html")).text
    section = html.split('<h2 id="independence">Independence</h2>', 1)[1].split("<h2>", 1)[0]
    assert section == (
        "<p>The helpline is funded by the ministry and takes no money from platforms.</p>"
        "<p>Its &lt;board&gt; &amp; staff have no ties to any hosting provider.</p>"
    )
    assert "<board>" not in html
    assert_clean(html, loaded)


async def test_the_page_in_dutch(desk: Desk, loaded: dataset.Loaded) -> None:
    supervisor = await desk.staff("sanne", Role.supervisor)
    english = await supervisor.get(f"{REPORT}.html")
    assert english.headers["content-language"] == "en" and '<html lang="en">' in english.text
    dutch = await supervisor.get(f"{REPORT}.html", params={"lang": "nl"})
    assert dutch.status_code == 200, dutch.text
    assert dutch.headers["content-language"] == "nl"
    html = dutch.text
    assert '<html lang="nl">' in html
    assert "<h1>Verslag trusted flagger 2026</h1>" in html
    assert '<h2 id="independence">Onafhankelijkheid</h2>' in html
    assert "Meldingen per hostingdienst" in html and "Begrippen" in html
    assert "Notices by hosting provider" not in html and "Definitions" not in html
    assert "15 meldingen met 20 URL's aan 4 hostingdiensten" in html
    charts = inline_svgs(html)
    assert [c.find(f"{SVG}title").text for c in charts] == [  # type: ignore[union-attr]
        "Honoreringsgraad per platform",
        "Mediane tijd tot verwijdering per platform",
        "Meldingen per soort illegale inhoud",
        "URL's per genomen maatregel",
    ]
    # the same numbers in both languages: every table cell that is a count is the same
    numbers = re.compile(r"<td>(\d+)</td>")
    assert numbers.findall(html) == numbers.findall(english.text)
    actions = charts[3]
    labels = [t.text for t in actions.iter(f"{SVG}title")][1:]
    assert labels[:3] == ["Verwijderd", "Geweigerd", "Wacht op besluit"]
    # the same links and stylesheet only; no script
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "/static/common/base.css",
        "2026",
        "2026.csv",
    ]
    assert "<script" not in html.lower()
    assert ElementTree.fromstring(html.split("<figure>", 1)[1].split("</figure>", 1)[0]).tag == (
        f"{SVG}svg"
    )
    assert_clean(html, loaded)


async def test_without_a_statement_the_page_says_so(
    desk: Desk, loaded: dataset.Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = desk.services.settings
    monkeypatch.setattr(
        desk.services, "settings", settings.model_copy(update={"trusted_flagger_statement": ""})
    )
    supervisor = await desk.staff("sanne", Role.supervisor)
    assert (await supervisor.get(REPORT)).json()["independence_statement"] is None
    html = (await supervisor.get(f"{REPORT}.html")).text
    assert "No statement of independence has been configured" in html
    rows = list(csv.DictReader(io.StringIO((await supervisor.get(f"{REPORT}.csv")).text)))
    assert [r["text"] for r in rows if r["section"] == "independence_statement"] == [""]
