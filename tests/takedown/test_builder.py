"""Building a notice from a case: what DSA art. 16(2) requires, the codes, nl/en, never the
victim's identity, and clear 4xx answers for bad choices."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from helpline.core.models import DataKey
from helpline.staff.models import Role
from helpline.takedown.models import Notice, NoticeUrl
from tests.takedown.kit import CONTENT_URL, Office

SHA = "ab" * 32


async def preview(office: Office, member: Any, notice_id: str) -> dict[str, Any]:
    answer = await member.get(f"/api/staff/notices/{notice_id}/preview")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_a_notice_from_a_case_carries_what_article_16_requires(
    office: Office,
) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent, "intimate_images")
    hashed = await office.hashes(agent, case_id, SHA)
    notice = await office.notice(
        agent,
        case_id,
        platform["id"],
        urls=[
            {"url": CONTENT_URL, "content_type": "CONTENT_TYPE_IMAGE"},
            {"url": "https://photoshare.example.org/p/456"},
        ],
        items=[{"evidence_item_id": hashed}],
        ground="The person depicted told us she never agreed to this.",
    )
    assert notice["status"] == "draft"
    assert notice["reference"].startswith("N-") and len(notice["reference"]) == 11
    assert [u["url"] for u in notice["urls"]] == [
        CONTENT_URL,
        "https://photoshare.example.org/p/456",
    ]
    assert [u["status"] for u in notice["urls"]] == ["draft", "draft"]
    shown = await preview(office, agent, notice["id"])
    document = shown["document"]
    assert shown["signed"] is False and shown["signatures"] is None
    # (a) a substantiated explanation, with the legal basis and the free-text ground
    assert "without that person's consent" in document["explanation"]
    assert document["legal_basis"]["code"] == "sr_139h"
    assert "139h" in document["legal_basis"]["citation"]
    assert document["legal_basis"]["ground"].startswith("The person depicted")
    # (b) the exact URLs, unchanged (query string and all)
    assert [u["url"] for u in document["urls"]] == [
        CONTENT_URL,
        "https://photoshare.example.org/p/456",
    ]
    assert document["urls"][0]["content_type"] == "CONTENT_TYPE_IMAGE"
    # (c) the helpline as notifier, with its name and e-mail
    assert document["notifier"] == {
        "name": "Meldpunt Online Misbruik",
        "email": "meldpunt@helpline.test",
    }
    # (d) good faith
    assert "good faith" in document["good_faith"]
    # trusted flagger and the Transparency Database codes
    assert document["trusted_flagger"] == {
        "source_type": "SOURCE_TRUSTED_FLAGGER",
        "reference": "TF-0042",
    }
    assert document["category"] == "STATEMENT_CATEGORY_CYBER_VIOLENCE"
    assert document["category_specification"] == ["KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"]
    assert document["hashes"] == [
        {"sha256": SHA, "pdq": "f" * 64, "pdq_quality": 90, "media_type": None}
    ]
    # the readable page says the same
    page = shown["html"]
    for expected in (
        notice["reference"],
        "CONTENT_URL_PLACEHOLDER",
        "meldpunt@helpline.test",
        "STATEMENT_CATEGORY_CYBER_VIOLENCE",
        "139h",
        "good faith",
        SHA,
    ):
        if expected == "CONTENT_URL_PLACEHOLDER":
            expected = CONTENT_URL.replace("&", "&amp;")
        assert expected in page, expected
    assert shown["email"]["to"] == "dsa@photoshare.example.org"
    assert notice["reference"] in shown["email"]["subject"]


async def test_the_notice_never_names_the_victim(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    receipt = await office.victim()
    case_id = receipt["case_id"]
    await agent.act(case_id, "claim")
    await agent.act(case_id, "triage", {"category": "sextortion"})
    notice = await office.notice(agent, case_id, platform["id"])
    shown = await preview(office, agent, notice["id"])
    everything = json.dumps(shown)
    assert receipt["reference"] not in everything
    assert case_id not in json.dumps(shown["document"]) and case_id not in shown["html"]
    assert receipt["passphrase"] not in everything


async def test_child_abuse_notices_leave_the_notifier_out(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent, "possible_minor")
    notice = await office.notice(agent, case_id, platform["id"])
    assert notice["notifier_included"] is False
    shown = await preview(office, agent, notice["id"])
    assert shown["document"]["notifier"] is None
    assert shown["document"]["notifier_omitted"] == "DSA art. 16(2)(c)"
    assert shown["document"]["category_specification"] == ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]
    assert shown["document"]["legal_basis"]["code"] == "sr_252"
    assert "meldpunt@helpline.test" not in shown["html"]
    assert "Meldpunt Online Misbruik" not in shown["html"]
    assert "16(2)(c)" in shown["html"]


async def test_dutch_and_english_templates(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    dutch = await office.platform(admin, slug="buurtforum", name="Buurtforum", languages=["nl"])
    english = await office.platform(admin)
    case_id = await office.case(agent, "doxxing")
    nl = await preview(office, agent, (await office.notice(agent, case_id, dutch["id"]))["id"])
    en = await preview(office, agent, (await office.notice(agent, case_id, english["id"]))["id"])
    assert nl["document"]["language"] == "nl" and en["document"]["language"] == "en"
    assert '<html lang="nl">' in nl["html"] and "Melding van illegale inhoud" in nl["html"]
    assert "goede trouw" not in nl["html"] and "te goeder trouw" in nl["document"]["good_faith"]
    assert "Notice of illegal content" in en["html"]
    assert nl["document"]["legal_basis"]["citation"].startswith("art. 285d Wetboek")
    assert en["document"]["category"] == "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS"
    forced = await office.notice(agent, case_id, dutch["id"], language="en")
    assert forced["language"] == "en"


async def test_urls_from_the_case_evidence_and_keywords(office: Office, site: Any) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent, "harassment")
    site.pages["/content/post-1"] = 200
    page = f"{site.url}/content/post-1"
    item_id = await office.url_item(agent, case_id, page)
    notice = await office.notice(
        agent,
        case_id,
        platform["id"],
        urls=[{"evidence_item_id": item_id, "content_type": "CONTENT_TYPE_TEXT"}],
        keywords=["KEYWORD_CYBER_STALKING"],
        against_women=True,
        legal_basis="sr_285b",
    )
    assert notice["urls"][0]["url"] == page
    assert notice["urls"][0]["evidence_item_id"] == item_id
    assert notice["dsa_keywords"] == ["KEYWORD_CYBER_STALKING_AGAINST_WOMEN"]
    # the URL is stored encrypted under the notice's own key, not the case key
    async with office.services.db.transaction() as session:
        row = (
            await session.execute(select(NoticeUrl).where(col(NoticeUrl.notice_id) == notice["id"]))
        ).scalar_one()
        assert page.encode() not in row.url
        scopes = set((await session.execute(select(col(DataKey.scope)))).scalars())
        assert f"notice:{notice['id']}" in scopes


async def test_bad_choices_get_clear_422s(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    case_id = await office.case(agent, "intimate_images")
    other_case = await office.case(agent, "intimate_images")
    other_item = await office.hashes(agent, other_case, SHA)
    url = [{"url": CONTENT_URL}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"platform_id": "nope", "urls": url}, "platform_id"),
        ({"platform_id": platform["id"], "urls": []}, "urls"),
        ({"platform_id": platform["id"], "urls": [{"url": "ftp://x.example.org/a"}]}, ""),
        ({"platform_id": platform["id"], "urls": url * 2}, "the same URL twice"),
        ({"platform_id": platform["id"], "urls": url, "category": "other"}, "category"),
        ({"platform_id": platform["id"], "urls": url, "legal_basis": "sr_999"}, "legal_basis"),
        ({"platform_id": platform["id"], "urls": url, "legal_basis": "other"}, "ground"),
        ({"platform_id": platform["id"], "urls": url, "keywords": ["KEYWORD_X"]}, "keywords"),
        ({"platform_id": platform["id"], "urls": [{"url": CONTENT_URL, "content_type": "X"}]}, ""),
        ({"platform_id": platform["id"], "urls": [{"evidence_item_id": other_item}]}, ""),
        (
            {
                "platform_id": platform["id"],
                "urls": url,
                "items": [{"evidence_item_id": other_item}],
            },
            "items",
        ),
        ({"platform_id": platform["id"], "urls": url, "victim_name": "x"}, "victim_name"),
        ({"platform_id": platform["id"], "urls": [{}]}, "either url or evidence_item_id"),
    ]
    for body, mentions in cases:
        answer = await agent.post(f"/api/staff/cases/{case_id}/notices", body)
        assert answer.status_code == 422, (body, answer.text)
        assert mentions in answer.json()["error"]["message"], (body, answer.text)
    async with office.services.db.transaction() as session:
        assert (await session.execute(select(Notice))).first() is None


async def test_only_staff_with_the_case_build_notices_for_it(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    colleague = await office.staff("cor")
    platform = await office.platform(admin)
    case_id = await office.case(agent)
    answer = await colleague.post(
        f"/api/staff/cases/{case_id}/notices",
        {"platform_id": platform["id"], "urls": [{"url": CONTENT_URL}]},
    )
    assert answer.status_code == 403
    notice = await office.notice(agent, case_id, platform["id"])
    assert (await colleague.get(f"/api/staff/notices/{notice['id']}")).status_code == 403
    assert (await admin.get(f"/api/staff/notices/{notice['id']}")).status_code == 200
    assert "notice.open" in await office.audit_actions(f"notice:{notice['id']}")
