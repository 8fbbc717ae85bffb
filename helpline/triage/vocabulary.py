"""The codes of triage: categories (with their DSA Transparency Database codes), risk flags,
priorities, statuses and outcomes. Labels belong to the frontend; these are the API's words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from helpline.cases.models import CaseStatus, Outcome

CYBER_VIOLENCE = "STATEMENT_CATEGORY_CYBER_VIOLENCE"
PRIVACY_VIOLATIONS = "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS"
PROTECTION_OF_MINORS = "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"


@dataclass(frozen=True)
class Category:
    code: str
    # the Transparency Database's category and keyword (../shared/DOMAIN.md); a notice for
    # a woman victim uses the keyword's `_AGAINST_WOMEN` variant
    dsa_category: str | None
    dsa_keyword: str | None


CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in (
        Category("intimate_images", CYBER_VIOLENCE, "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"),
        Category("sextortion", CYBER_VIOLENCE, "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"),
        Category("deepfake", CYBER_VIOLENCE, "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE"),
        Category("doxxing", PRIVACY_VIOLATIONS, None),
        Category("impersonation", CYBER_VIOLENCE, "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING"),
        # stalking has its own keyword (KEYWORD_CYBER_STALKING); the notice builder picks it
        Category("harassment", CYBER_VIOLENCE, "KEYWORD_CYBER_HARASSMENT"),
        Category("privacy", PRIVACY_VIOLATIONS, None),
        Category("grooming", PROTECTION_OF_MINORS, "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"),
        Category("possible_minor", PROTECTION_OF_MINORS, "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"),
        Category("other", None, None),
    )
}

POSSIBLE_MINOR = "possible_minor"

FLAGS: tuple[str, ...] = (
    "minor_involved",
    "self_harm",
    "extortion_deadline",
    "spreading_now",
    "physical_danger",
    "wants_police",
)


class Priority(IntEnum):
    """1 is the most urgent; the queue is sorted by this number."""

    urgent = 1
    high = 2
    normal = 3
    low = 4


DEFAULT_PRIORITY = Priority.normal

STATUSES: tuple[str, ...] = tuple(s.value for s in CaseStatus)
# what `POST .../status` may set: `new` is `release`, `closed` is `close` (with an outcome)
SETTABLE_STATUSES: tuple[str, ...] = (
    CaseStatus.in_conversation.value,
    CaseStatus.waiting_victim.value,
    CaseStatus.waiting_platform.value,
    CaseStatus.handed_over.value,
)
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


def parse_flags(stored: str) -> list[str]:
    """`cases.risk_flags` (sorted, comma-separated) as a list."""
    return [flag for flag in stored.split(",") if flag]


def store_flags(flags: list[str] | tuple[str, ...] | set[str]) -> str:
    return ",".join(sorted(set(flags)))
