"""The codes of a notice: legal bases (../shared/DOMAIN.md's table), the Transparency
Database's category and keyword codes per triage category, content types, and the
statement-of-reasons vocabulary a platform answers in (DSA art. 17).

Article numbers marked *unverified* in DOMAIN.md are kept here as data, labelled so, and no
logic depends on them: staff can always add a free-text ground or pick `other`.
"""

from __future__ import annotations

from dataclasses import dataclass

from helpline.triage.vocabulary import CATEGORIES, POSSIBLE_MINOR

SOURCE_TRUSTED_FLAGGER = "SOURCE_TRUSTED_FLAGGER"
AGAINST_WOMEN = "_AGAINST_WOMEN"

# DSA art. 16(2)(c): the notifier's name and e-mail may be left out for the offences of
# arts. 3-7 of Directive 2011/93/EU (child sexual abuse, including grooming)
CHILD_ABUSE_CATEGORIES = frozenset({POSSIBLE_MINOR, "grooming"})


@dataclass(frozen=True)
class LegalBasis:
    code: str
    citation: dict[str, str]  # by language
    categories: tuple[str, ...]  # the triage categories it usually fits (the first is default)
    verified: bool = True  # False: DOMAIN.md gives the article from memory


LEGAL_BASES: dict[str, LegalBasis] = {
    b.code: b
    for b in (
        LegalBasis(
            "sr_139h",
            {
                "nl": "art. 139h Wetboek van Strafrecht (seksueel beeldmateriaal zonder "
                "toestemming)",
                "en": "art. 139h Dutch Criminal Code (sexual images without consent)",
            },
            ("intimate_images", "deepfake", "sextortion"),
        ),
        LegalBasis(
            "sr_317",
            {
                "nl": "art. 317 Wetboek van Strafrecht (afpersing)",
                "en": "art. 317 Dutch Criminal Code (extortion)",
            },
            ("sextortion",),
            verified=False,
        ),
        LegalBasis(
            "sr_318",
            {
                "nl": "art. 318 Wetboek van Strafrecht (afdreiging)",
                "en": "art. 318 Dutch Criminal Code (blackmail)",
            },
            ("sextortion",),
            verified=False,
        ),
        LegalBasis(
            "sr_284",
            {
                "nl": "art. 284 Wetboek van Strafrecht (dwang)",
                "en": "art. 284 Dutch Criminal Code (coercion)",
            },
            ("sextortion",),
            verified=False,
        ),
        LegalBasis(
            "sr_285d",
            {
                "nl": "art. 285d Wetboek van Strafrecht (doxing)",
                "en": "art. 285d Dutch Criminal Code (doxing)",
            },
            ("doxxing",),
        ),
        LegalBasis(
            "sr_231b",
            {
                "nl": "art. 231b Wetboek van Strafrecht (identiteitsfraude)",
                "en": "art. 231b Dutch Criminal Code (identity fraud)",
            },
            ("impersonation",),
        ),
        LegalBasis(
            "sr_285b",
            {
                "nl": "art. 285b Wetboek van Strafrecht (belaging)",
                "en": "art. 285b Dutch Criminal Code (stalking)",
            },
            ("harassment",),
            verified=False,
        ),
        LegalBasis(
            "sr_285",
            {
                "nl": "art. 285 Wetboek van Strafrecht (bedreiging)",
                "en": "art. 285 Dutch Criminal Code (threat)",
            },
            ("harassment",),
            verified=False,
        ),
        LegalBasis(
            "gdpr_17",
            {
                "nl": "art. 17 AVG (recht op vergetelheid)",
                "en": "art. 17 GDPR (right to erasure)",
            },
            ("privacy", "doxxing"),
        ),
        LegalBasis(
            "bw_6_162",
            {
                "nl": "art. 6:162 Burgerlijk Wetboek (onrechtmatige daad)",
                "en": "art. 6:162 Dutch Civil Code (unlawful act)",
            },
            ("privacy",),
        ),
        LegalBasis(
            "sr_252",
            {
                "nl": "art. 252 Wetboek van Strafrecht (seksueel kindermisbruikmateriaal)",
                "en": "art. 252 Dutch Criminal Code (child sexual abuse material)",
            },
            (POSSIBLE_MINOR,),
        ),
        LegalBasis(
            "other",
            {"nl": "zie de toelichting", "en": "see the explanation"},
            ("grooming",),
        ),
    )
}
OTHER_BASIS = "other"  # needs a free-text ground


def default_legal_basis(category: str) -> str:
    for basis in LEGAL_BASES.values():
        if basis.categories and basis.categories[0] == category:
            return basis.code
    for basis in LEGAL_BASES.values():
        if category in basis.categories:
            return basis.code
    return OTHER_BASIS


# keywords staff may pick for a category besides its default (triage.vocabulary)
EXTRA_KEYWORDS: dict[str, tuple[str, ...]] = {"harassment": ("KEYWORD_CYBER_STALKING",)}


def keywords_for(category: str) -> tuple[str, ...]:
    """The Transparency Database keywords allowed for a triage category (default first)."""
    found = CATEGORIES[category]
    base = (found.dsa_keyword,) if found.dsa_keyword else ()
    return base + EXTRA_KEYWORDS.get(category, ())


def notice_categories() -> list[str]:
    """Triage categories a notice can be about: those with a DSA category."""
    return [code for code, c in CATEGORIES.items() if c.dsa_category]


CONTENT_TYPES: tuple[str, ...] = (
    "CONTENT_TYPE_IMAGE",
    "CONTENT_TYPE_VIDEO",
    "CONTENT_TYPE_TEXT",
    "CONTENT_TYPE_AUDIO",
    "CONTENT_TYPE_SYNTHETIC_MEDIA",
    "CONTENT_TYPE_PRODUCT",
    "CONTENT_TYPE_APP",
    "CONTENT_TYPE_OTHER",
)

# the platform's answer (statement of reasons), Transparency Database codes
DECISION_VISIBILITY: tuple[str, ...] = (
    "DECISION_VISIBILITY_CONTENT_REMOVED",
    "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
)
DECISION_GROUNDS: tuple[str, ...] = (
    "DECISION_GROUND_ILLEGAL_CONTENT",
    "DECISION_GROUND_INCOMPATIBLE_CONTENT",
)
AUTOMATED_DECISIONS: tuple[str, ...] = (
    "AUTOMATED_DECISION_FULLY",
    "AUTOMATED_DECISION_PARTIALLY",
    "AUTOMATED_DECISION_NOT_AUTOMATED",
)
