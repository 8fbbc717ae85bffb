"""The default canned responses: valid templates in both languages, the right numbers, and a
seed that fills only an empty table."""

from __future__ import annotations

import json

from sqlalchemy import delete, func, select
from sqlmodel import col

from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.core.models import AuditEntry
from helpline.staff.canned_defaults import DEFAULTS, seed_canned_responses
from helpline.staff.casework import PLACEHOLDERS, opening_hours_text, placeholders_in, render
from helpline.triage.models import CannedResponse


def test_every_default_is_a_valid_template_in_both_languages() -> None:
    for default in DEFAULTS:
        assert set(placeholders_in(default.body)) <= set(PLACEHOLDERS), default.title
        assert 1 <= len(default.title) <= 120 and 1 <= len(default.body) <= 4000
    dutch = [d for d in DEFAULTS if d.language == "nl"]
    english = [d for d in DEFAULTS if d.language == "en"]
    assert len(dutch) == len(english) == 7 and len(DEFAULTS) == 14
    # the same placeholders in each pair, so both languages say the same
    for nl, en in zip(dutch, english, strict=True):
        assert sorted(placeholders_in(nl.body)) == sorted(placeholders_in(en.body)), en.title
    used = {name for d in DEFAULTS for name in placeholders_in(d.body)}
    assert used == set(PLACEHOLDERS)


def test_the_referral_and_sextortion_advice_carry_the_numbers() -> None:
    text = {d.title: d.body for d in DEFAULTS}
    for referral in (text["Doorverwijzen"], text["Referral"]):
        for needed in ("0800-0188", "0900-8844", "Slachtofferhulp", "Fier", "112"):
            assert needed in referral
    assert "Betaal niet" in text["Sextortion: chantage met beelden"]
    assert "Don't pay" in text["Sextortion: blackmail with images"]
    assert "URL" in text["Saving evidence safely"] and "URL" in text["Bewijs veilig bewaren"]


async def test_seeding_fills_an_empty_table_once(db: Database, clock: FrozenClock) -> None:
    async with db.transaction() as session:
        assert await seed_canned_responses(session, clock) == len(DEFAULTS)
    async with db.transaction() as session:
        assert await seed_canned_responses(session, clock) == 0  # again: nothing added
        rows = (await session.execute(select(CannedResponse))).scalars().all()
        assert sorted((r.language, r.title) for r in rows) == sorted(
            (d.language, d.title) for d in DEFAULTS
        )
        assert all(r.updated_by == "system" for r in rows)
        # a supervisor deleted all but one: the seed does not bring the others back
        keep = rows[0].id
        await session.execute(delete(CannedResponse).where(col(CannedResponse.id) != keep))
    async with db.transaction() as session:
        assert await seed_canned_responses(session, clock) == 0
        count = (
            await session.execute(select(func.count()).select_from(CannedResponse))
        ).scalar_one()
        assert count == 1
        seeded = (
            (
                await session.execute(
                    select(AuditEntry).where(col(AuditEntry.action) == "canned.seed")
                )
            )
            .scalars()
            .all()
        )
    assert [json.loads(line.details) for line in seeded] == [{"count": len(DEFAULTS)}]


def test_rendering_substitutes_names_only() -> None:
    values = {"reference": "7K3Q-M9PX", "agent_name": "{reference}"}
    assert render("Code {reference}, {{letterlijk}}", values) == "Code 7K3Q-M9PX, {letterlijk}"
    assert render("Ik ben {agent_name}", values) == "Ik ben {reference}"  # values stay values
    # what slipped past validation (an old row) is shown as written, never evaluated
    assert render("{reference.__class__} {reference!r} {x}", values) == (
        "{reference.__class__} {reference!r} {x}"
    )
    assert render("kapot }", values) == "kapot }"


def test_opening_hours_in_words() -> None:
    settings = Settings(opening_hours="mo-fr 09:00-21:00; sa 12:00-17:00")
    assert opening_hours_text(settings, "nl") == "ma–vr 09:00–21:00, za 12:00–17:00"
    assert opening_hours_text(settings, "en") == "Mon–Fri 09:00–21:00, Sat 12:00–17:00"
