"""The priority rule table, the vocabulary, and the SLA settings."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from helpline.cases.service import TOPICS
from helpline.core.config import PRIORITY_NAMES, ConfigError, load_settings
from helpline.triage.rules import RuleTable, RuleTableError, compute_priority, rule_table
from helpline.triage.vocabulary import CATEGORIES, FLAGS, Priority

U, H, N, L = Priority.urgent, Priority.high, Priority.normal, Priority.low


def test_the_packaged_table_has_a_rule_for_every_category_and_flag() -> None:
    table = rule_table()
    assert set(table.categories) == set(CATEGORIES)
    assert set(table.flags) == set(FLAGS)
    assert table.default == N


@pytest.mark.parametrize(
    ("category", "flags", "expected"),
    [
        (None, [], N),  # nothing known yet: normal
        ("privacy", [], L),
        ("other", [], N),
        ("intimate_images", [], N),
        ("deepfake", [], N),
        ("doxxing", [], N),
        ("impersonation", [], N),
        ("harassment", [], N),
        ("sextortion", [], H),
        ("grooming", [], H),
        ("possible_minor", [], H),
        (None, ["minor_involved"], H),
        (None, ["spreading_now"], H),
        (None, ["wants_police"], N),
        (None, ["self_harm"], U),
        (None, ["physical_danger"], U),
        (None, ["extortion_deadline"], U),
        # the most urgent matching rule wins, whichever it is
        ("privacy", ["spreading_now"], H),
        ("privacy", ["wants_police"], N),
        ("sextortion", ["extortion_deadline"], U),
        ("harassment", ["wants_police", "physical_danger", "minor_involved"], U),
    ],
)
def test_priority_is_the_most_urgent_matching_rule(
    category: str | None, flags: list[str], expected: Priority
) -> None:
    assert compute_priority(category, flags) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[categories]\nweather = "high"', "weather: not a known code"),
        ('[flags]\nsad = "urgent"', "sad: not a known code"),
        ('[flags]\nself_harm = "asap"', "'asap' is not a priority"),
        ('default = "meh"', "default: 'meh' is not a priority"),
        ('colour = "red"', "unknown key(s): colour"),
        ("categories = 3", "[categories] must be a table"),
        ("[flags\n", "not valid TOML"),
    ],
)
def test_a_table_with_an_unknown_code_or_priority_is_refused(text: str, complaint: str) -> None:
    with pytest.raises(RuleTableError) as refused:
        RuleTable.parse(text)
    assert complaint in str(refused.value)


def test_a_small_table_of_its_own() -> None:
    table = RuleTable.parse('default = "low"\n[flags]\nself_harm = "urgent"\n')
    assert table.priority("sextortion", []) == L
    assert table.priority("sextortion", ["self_harm"]) == U


def test_vocabulary_dsa_codes_follow_the_domain_table() -> None:
    minor = CATEGORIES["possible_minor"]
    assert minor.dsa_category == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    assert minor.dsa_keyword == "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"
    assert CATEGORIES["deepfake"].dsa_keyword == "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE"
    assert (
        CATEGORIES["doxxing"].dsa_category
        == "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS"
    )
    assert all(c.dsa_category for code, c in CATEGORIES.items() if code != "other")
    # victims pick from every category except the one only staff judge
    assert set(TOPICS) == set(CATEGORIES) - {"possible_minor"}


def test_sla_settings_are_minutes_per_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PRIORITY_NAMES == tuple(p.name for p in Priority)
    monkeypatch.setenv("HELPLINE_SLA_FIRST_RESPONSE_MINUTES", "low=90, urgent=2,high=4,normal=8")
    settings = load_settings()
    assert settings.sla_first_response == {1: 2, 2: 4, 3: 8, 4: 90}
    assert settings.sla_next_response == {1: 10, 2: 20, 3: 30, 4: 120}  # the default


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("15", "'15' is not priority=minutes"),
        ("urgent=5,high=10,normal=15", "no target for low"),
        ("urgent=5,high=10,normal=15,low=0", "low: '0' is not a whole number"),
        ("urgent=5,high=ten,normal=15,low=60", "high: 'ten' is not a whole number"),
        ("urgent=5,urgent=6,high=10,normal=15,low=60", "urgent is given twice"),
        ("asap=1,urgent=5,high=10,normal=15,low=60", "'asap=1' is not priority=minutes"),
    ],
)
def test_bad_sla_settings_stop_with_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, complaint: str
) -> None:
    monkeypatch.setenv("HELPLINE_SLA_NEXT_RESPONSE_MINUTES", value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("HELPLINE_SLA_NEXT_RESPONSE_MINUTES: ")
    assert complaint in message and "\n" not in message


def test_the_rule_table_ships_in_the_wheel() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["helpline"]
    assert any(fnmatch("triage/priority.toml", pattern) for pattern in shipped)
