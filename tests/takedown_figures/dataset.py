# ruff: noqa: E501  (the table of the data set is wider than a line)
"""A fixed set of platforms, notices, URLs and history rows, and the figures computed from it
by hand (in the comments and in `EXPECTED_*`), for the figure and report tests.

The clock stands at NOW (Tuesday 10 March 2026, 12:00 UTC). The helpline's time zone is
Europe/Amsterdam (UTC+1 in March, before summer time). The period of the figures is
`from=2026-03-01&to=2026-03-09`: local days, so `[2026-02-28T23:00Z, 2026-03-09T23:00Z)`.

Times of notices are "sent"; `+Nh` is N hours after the notice was sent.

| notice | platform | sent (UTC) | category | status | URLs |
| --- | --- | --- | --- | --- | --- |
| A1 | alpha | 03-02 10:00 | intimate_images | honoured | u1 honoured REMOVED (history +2h); u2 honoured DISABLED (history +30h) |
| A2 | alpha | 03-03 08:00 | deepfake | partly_honoured | u1 honoured REMOVED +5h; u2 declined not_illegal |
| A3 | alpha | 03-04 09:00 | doxxing | declined | u1 declined not_illegal; u2 declined insufficient_information |
| A4 | alpha | 03-09 20:00 | harassment (2 keywords) | sent, due 03-10 20:00 (not overdue) | u1 sent |
| A5 | alpha | 03-09 23:30 | intimate_images | honoured | u1 REMOVED +1h — after the period (local 10 March) |
| A6 | alpha | 02-28 22:30 | intimate_images | declined | u1 not_illegal — before the period (local 28 Feb) |
| B1 | beta | 03-01 00:30 | sextortion | honoured | u1 REMOVED (history +12h, answered_at +13h); u2 honoured, no code, no history, answered_at +40h |
| B2 | beta | 03-05 12:00 | impersonation | no_response, due 03-06 12:00 (overdue) | u1 no_response |
| B3 | beta | 03-06 12:00 | harassment | receipt_confirmed, due 03-07 12:00 (overdue) | u1 receipt_confirmed |
| B4 | beta | 03-07 12:00 | privacy | withdrawn | u1 withdrawn |
| B5 | beta | 03-08 12:00 | grooming | more_info_requested, due 03-09 12:00 (not counted overdue) | u1 more_info_requested |
| B6 | beta | 03-08 18:00 | intimate_images | partly_honoured | u1 AGE_RESTRICTED; u2 declined, no reason |
| B7 | beta | — | intimate_images | draft, never sent | u1 draft |
| B8 | beta | 03-02 06:00 | intimate_images | honoured | u1 REMOVED: history declined +3h, then honoured +20h |
| G0 | gamma | 2025-12-31 22:30 | privacy | declined | u1 not_illegal — local 31 Dec 2025: not in the 2026 report |
| G1 | gamma | 2025-12-31 23:30 | doxxing | honoured | u1 REMOVED +3h — local 1 Jan 2026: in the 2026 report |
| D1 | delta (inactive) | 01-15 10:00 | deepfake | honoured | u1 REMOVED +10h |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from helpline.cases.service import start_chat
from helpline.core.clock import FrozenClock
from helpline.core.crypto import Keyring
from helpline.core.db import Database
from helpline.takedown.models import (
    Notice,
    NoticeHistory,
    NoticeUrl,
    Platform,
    notice_scope,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PERIOD = {"from": "2026-03-01", "to": "2026-03-09"}
HOUR = 3600.0

CV = "STATEMENT_CATEGORY_CYBER_VIOLENCE"
PRIVACY = "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS"
MINORS = "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
NCII = "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"
DEEPFAKE = "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE"
HARASSMENT = "KEYWORD_CYBER_HARASSMENT"
STALKING = "KEYWORD_CYBER_STALKING"
IMPERSONATION = "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING"
GROOMING = "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"
REMOVED = "DECISION_VISIBILITY_CONTENT_REMOVED"
DISABLED = "DECISION_VISIBILITY_CONTENT_DISABLED"
AGE = "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"

CATEGORY_CODES = {
    "intimate_images": (CV, (NCII,)),
    "sextortion": (CV, (NCII,)),
    "deepfake": (CV, (DEEPFAKE,)),
    "doxxing": (PRIVACY, ()),
    "impersonation": (CV, (IMPERSONATION,)),
    "harassment": (CV, (HARASSMENT,)),
    "privacy": (PRIVACY, ()),
    "grooming": (MINORS, (GROOMING,)),
}

# platform slug -> (name, active); a name with markup, to see it escaped everywhere
PLATFORMS = {
    "alpha": ("Alpha Video", True),
    "beta": ("Beta <Social> & Co", True),
    "gamma": ("Gamma Forum", True),
    "delta": ("Delta Archive", False),
}


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass
class U:
    """One URL: its status, the platform's codes, and its history as (hours, to_status)."""

    status: str
    visibility: str | None = None
    ground: str | None = None
    answered: float | None = None  # hours after sending
    history: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class N:
    key: str
    platform: str
    sent: datetime | None
    category: str
    status: str
    urls: list[U]
    keywords: tuple[str, ...] | None = None  # None: the category's
    due_hours: float = 24


def notices() -> list[N]:
    honoured, declined = "honoured", "declined"
    return [
        N("A1", "alpha", at(3, 2, 10), "intimate_images", honoured, [
            U(honoured, REMOVED, "DECISION_GROUND_ILLEGAL_CONTENT", 2, [(2, honoured)]),
            U(honoured, DISABLED, "DECISION_GROUND_ILLEGAL_CONTENT", 30, [(30, honoured)]),
        ]),
        N("A2", "alpha", at(3, 3, 8), "deepfake", "partly_honoured", [
            U(honoured, REMOVED, "DECISION_GROUND_ILLEGAL_CONTENT", 5, [(5, honoured)]),
            U(declined, None, "DECLINED_NOT_ILLEGAL", 6, [(6, declined)]),
        ]),
        N("A3", "alpha", at(3, 4, 9), "doxxing", declined, [
            U(declined, None, "DECLINED_NOT_ILLEGAL", 7, [(7, declined)]),
            U(declined, None, "DECLINED_INSUFFICIENT_INFORMATION", 7, [(7, declined)]),
        ]),
        N("A4", "alpha", at(3, 9, 20), "harassment", "sent", [U("sent")],
          keywords=(HARASSMENT, STALKING)),
        N("A5", "alpha", at(3, 9, 23, 30), "intimate_images", honoured, [
            U(honoured, REMOVED, None, 1, [(1, honoured)]),
        ]),
        N("A6", "alpha", at(2, 28, 22, 30), "intimate_images", declined, [
            U(declined, None, "DECLINED_NOT_ILLEGAL", 4, [(4, declined)]),
        ]),
        N("B1", "beta", at(3, 1, 0, 30), "sextortion", honoured, [
            U(honoured, REMOVED, None, 13, [(12, honoured)]),
            U(honoured, None, None, 40),
        ]),
        N("B2", "beta", at(3, 5, 12), "impersonation", "no_response", [
            U("no_response", history=[(24, "no_response")]),
        ]),
        N("B3", "beta", at(3, 6, 12), "harassment", "receipt_confirmed", [
            U("receipt_confirmed"),
        ]),
        N("B4", "beta", at(3, 7, 12), "privacy", "withdrawn", [U("withdrawn")]),
        N("B5", "beta", at(3, 8, 12), "grooming", "more_info_requested", [
            U("more_info_requested", answered=2, history=[(2, "more_info_requested")]),
        ]),
        N("B6", "beta", at(3, 8, 18), "intimate_images", "partly_honoured", [
            U("partly_honoured", AGE, "DECISION_GROUND_ILLEGAL_CONTENT", 8,
              [(8, "partly_honoured")]),
            U(declined, None, None, 8, [(8, declined)]),
        ]),
        N("B7", "beta", None, "intimate_images", "draft", [U("draft")]),
        N("B8", "beta", at(3, 2, 6), "intimate_images", honoured, [
            U(honoured, REMOVED, "DECISION_GROUND_ILLEGAL_CONTENT", 20,
              [(3, declined), (20, honoured)]),
        ]),
        N("G0", "gamma", at(12, 31, 22, 30, year=2025), "privacy", declined, [
            U(declined, None, "DECLINED_NOT_ILLEGAL", 5, [(5, declined)]),
        ]),
        N("G1", "gamma", at(12, 31, 23, 30, year=2025), "doxxing", honoured, [
            U(honoured, REMOVED, None, 3, [(3, honoured)]),
        ]),
        N("D1", "delta", at(1, 15, 10), "deepfake", honoured, [
            U(honoured, REMOVED, None, 10, [(10, honoured)]),
        ]),
    ]  # fmt: skip


def url_text(notice: str, position: int) -> str:
    """The reported URL: it must never show up in a figure, a report or a chart."""
    return f"https://victim-content.example/{notice.lower()}/item-{position}"


@dataclass
class Loaded:
    platforms: dict[str, str]  # slug -> id
    notices: dict[str, str]  # key -> id
    references: dict[str, str]  # key -> public reference
    case_id: str
    case_reference: str


async def load(db: Database, keyring: Keyring, clock: FrozenClock) -> Loaded:
    """Insert the data set (and one case that the notices came from)."""
    created = datetime(2025, 12, 1, tzinfo=UTC)
    async with db.transaction() as session:
        receipt = await start_chat(session, clock, language="nl", topic=None)
        case_id, case_reference = receipt.case.id, receipt.case.reference
        platform_ids: dict[str, str] = {}
        for index, (slug, (name, active)) in enumerate(PLATFORMS.items()):
            platform = Platform(
                id=f"platform{index:02d}{slug}",
                name=name,
                slug=slug,
                contact_email=f"dsa@{slug}.example",
                delivery="email",
                active=active,
                created_at=created,
                updated_at=created,
            )
            session.add(platform)
            platform_ids[slug] = platform.id
        await session.flush()
        notice_ids: dict[str, str] = {}
        references: dict[str, str] = {}
        for item in notices():
            notice_id = f"notice{item.key.lower()}" + "0" * 10
            dsa_category, keywords = CATEGORY_CODES[item.category]
            reference = f"N-{item.key}-TEST"
            notice = Notice(
                id=notice_id,
                reference=reference,
                case_id=case_id,
                platform_id=platform_ids[item.platform],
                category=item.category,
                dsa_category=dsa_category,
                dsa_keywords=",".join(item.keywords if item.keywords is not None else keywords),
                legal_basis="sr_139h",
                status=item.status,
                delivery="email",
                created_at=item.sent or created,
                updated_at=item.sent or created,
                queued_at=item.sent,
                sent_at=item.sent,
                due_at=item.sent + timedelta(hours=item.due_hours) if item.sent else None,
                idempotency_key=f"notice:{notice_id}",
            )
            session.add(notice)
            await session.flush()
            notice_ids[item.key] = notice_id
            references[item.key] = reference
            cipher = await keyring.cipher(session, notice_scope(notice_id))
            if item.sent is not None:
                session.add(history(notice_id, None, item.sent, "queued", "sent"))
            for position, url in enumerate(item.urls, start=1):
                url_id = f"{notice_id[:20]}u{position}"
                answered = (
                    item.sent + timedelta(hours=url.answered)
                    if item.sent is not None and url.answered is not None
                    else None
                )
                session.add(
                    NoticeUrl(
                        id=url_id,
                        notice_id=notice_id,
                        position=position,
                        url=cipher.encrypt(
                            url_text(item.key, position),
                            table="notice_urls",
                            row_id=url_id,
                            field="url",
                        ),
                        status=url.status,
                        decision_visibility=url.visibility,
                        decision_ground=url.ground,
                        answered_at=answered,
                        answered_via="portal" if answered else None,
                        updated_at=answered or item.sent or created,
                    )
                )
                await session.flush()
                assert item.sent is not None or not url.history
                previous = "sent"
                for hours, to_status in url.history:
                    assert item.sent is not None
                    moment = item.sent + timedelta(hours=hours)
                    session.add(history(notice_id, url_id, moment, previous, to_status))
                    previous = to_status
        await session.flush()
    return Loaded(platform_ids, notice_ids, references, case_id, case_reference)


def history(
    notice_id: str, url_id: str | None, moment: datetime, from_status: str, to_status: str
) -> NoticeHistory:
    suffix = url_id[-2:] if url_id else "nn"
    return NoticeHistory(
        id=f"h{notice_id[6:9]}{suffix}{int(moment.timestamp())}",
        notice_id=notice_id,
        url_id=url_id,
        at=moment,
        actor="platform:test",
        from_status=from_status,
        to_status=to_status,
        details=json.dumps({}),
    )


# ---------------------------------------------------------------- the figures, by hand

# alpha in the period: A1 honoured, A2 partly, A3 declined, A4 awaiting (A5, A6 outside).
# concluded = 1 + 1 + 1 + 0 = 3. URLs: removed A1u1 A1u2 A2u1; declined A2u2 A3u1 A3u2;
# awaiting A4u1. Removal: 2 h, 30 h, 5 h -> sorted 2, 5, 30: median 5 h, p90 rank ⌈2.7⌉ = 3:
# 30 h. Within 24 h: 2 of 3 removed, 2 of 7 sent.
EXPECTED_ALPHA = {
    "notices": {
        "sent": 4, "honoured": 1, "partly_honoured": 1, "declined": 1,
        "more_info_requested": 0, "no_response": 0, "awaiting": 1, "withdrawn": 0,
        "concluded": 3,
    },
    "honour_rate": 1 / 3,
    "partly_honoured_rate": 1 / 3,
    "decline_rate": 1 / 3,
    "no_response_rate": 0.0,
    "urls": {
        "sent": 7, "removed": 3, "restricted": 0, "declined": 3, "more_info_requested": 0,
        "no_response": 0, "awaiting": 1, "withdrawn": 0,
    },
    "declined_reasons": [
        {"reason": "not_illegal", "urls": 2},
        {"reason": "insufficient_information", "urls": 1},
    ],
    "time_to_removal": {
        "removed_urls": 3, "median_seconds": 5 * HOUR, "p90_seconds": 30 * HOUR,
        "median_hours": 5.0, "p90_hours": 30.0,
    },
    "within_24h": {"removed_urls": 2, "share_of_removed": 2 / 3, "share_of_sent": 2 / 7},
    "overdue_now": 0,
    "categories": {"deepfake": 1, "doxxing": 1, "harassment": 1, "intimate_images": 1},
    "content_categories": {CV: 3, PRIVACY: 1},
    "content_keywords": {DEEPFAKE: 1, HARASSMENT: 1, NCII: 1, STALKING: 1},
    "actions": {"declined": 3, REMOVED: 2, "awaiting": 1, DISABLED: 1},
}  # fmt: skip

# beta in the period: B1 B8 honoured, B6 partly, B2 no response, B3 awaiting, B4 withdrawn,
# B5 more information (B7 never sent). concluded = 2 + 1 + 0 + 1 = 4. URLs: removed B1u1
# (history 12 h, not answered_at 13 h), B1u2 (no history: answered_at 40 h), B8u1 (first
# honoured 20 h; the earlier decline does not count); restricted B6u1; declined B6u2 (no
# reason); B2u1 no response, B3u1 awaiting, B4u1 withdrawn, B5u1 more information: 9 URLs,
# 8 not withdrawn. Removal: 12, 20, 40 h: median 20 h, p90 40 h. Within 24 h: 2; 2/3, 2/8.
# Overdue now: B2 (no response, due 03-06) and B3 (receipt confirmed, due 03-07); not B5.
EXPECTED_BETA = {
    "notices": {
        "sent": 7, "honoured": 2, "partly_honoured": 1, "declined": 0,
        "more_info_requested": 1, "no_response": 1, "awaiting": 1, "withdrawn": 1,
        "concluded": 4,
    },
    "honour_rate": 0.5,
    "partly_honoured_rate": 0.25,
    "decline_rate": 0.0,
    "no_response_rate": 0.25,
    "urls": {
        "sent": 9, "removed": 3, "restricted": 1, "declined": 1, "more_info_requested": 1,
        "no_response": 1, "awaiting": 1, "withdrawn": 1,
    },
    "declined_reasons": [{"reason": "not_given", "urls": 1}],
    "time_to_removal": {
        "removed_urls": 3, "median_seconds": 20 * HOUR, "p90_seconds": 40 * HOUR,
        "median_hours": 20.0, "p90_hours": 40.0,
    },
    "within_24h": {"removed_urls": 2, "share_of_removed": 2 / 3, "share_of_sent": 0.25},
    "overdue_now": 2,
    "categories": {
        "grooming": 1, "harassment": 1, "impersonation": 1, "intimate_images": 2,
        "privacy": 1, "sextortion": 1,
    },
    "content_categories": {CV: 5, MINORS: 1, PRIVACY: 1},
    "content_keywords": {GROOMING: 1, HARASSMENT: 1, IMPERSONATION: 1, NCII: 3},
    "actions": {
        REMOVED: 2, AGE: 1, "awaiting": 1, "declined": 1, "more_info_requested": 1,
        "no_response": 1, "removed": 1, "withdrawn": 1,
    },
}  # fmt: skip

# gamma: active, no notice in the period; delta: inactive and none in the period, so absent.
EXPECTED_GAMMA = {
    "notices": {
        "sent": 0, "honoured": 0, "partly_honoured": 0, "declined": 0,
        "more_info_requested": 0, "no_response": 0, "awaiting": 0, "withdrawn": 0,
        "concluded": 0,
    },
    "honour_rate": None,
    "partly_honoured_rate": None,
    "decline_rate": None,
    "no_response_rate": None,
    "urls": {
        "sent": 0, "removed": 0, "restricted": 0, "declined": 0, "more_info_requested": 0,
        "no_response": 0, "awaiting": 0, "withdrawn": 0,
    },
    "declined_reasons": [],
    "time_to_removal": {
        "removed_urls": 0, "median_seconds": None, "p90_seconds": None,
        "median_hours": None, "p90_hours": None,
    },
    "within_24h": {"removed_urls": 0, "share_of_removed": None, "share_of_sent": None},
    "overdue_now": 0,
    "categories": {},
    "content_categories": {},
    "content_keywords": {},
    "actions": {},
}  # fmt: skip

# overall: 11 notices; concluded = 3 honoured + 2 partly + 1 declined + 1 no response = 7.
# Removal times 2, 5, 12, 20, 30, 40 h: median (12 + 20) / 2 = 16 h; p90 rank ⌈5.4⌉ = 6: 40 h.
# Within 24 h: 4 of 6 removed; of 16 URLs 1 is withdrawn: 4 / 15.
EXPECTED_OVERALL = {
    "notices": {
        "sent": 11, "honoured": 3, "partly_honoured": 2, "declined": 1,
        "more_info_requested": 1, "no_response": 1, "awaiting": 2, "withdrawn": 1,
        "concluded": 7,
    },
    "honour_rate": 3 / 7,
    "partly_honoured_rate": 2 / 7,
    "decline_rate": 1 / 7,
    "no_response_rate": 1 / 7,
    "urls": {
        "sent": 16, "removed": 6, "restricted": 1, "declined": 4, "more_info_requested": 1,
        "no_response": 1, "awaiting": 2, "withdrawn": 1,
    },
    "declined_reasons": [
        {"reason": "not_illegal", "urls": 2},
        {"reason": "insufficient_information", "urls": 1},
        {"reason": "not_given", "urls": 1},
    ],
    "time_to_removal": {
        "removed_urls": 6, "median_seconds": 16 * HOUR, "p90_seconds": 40 * HOUR,
        "median_hours": 16.0, "p90_hours": 40.0,
    },
    "within_24h": {"removed_urls": 4, "share_of_removed": 4 / 6, "share_of_sent": 4 / 15},
    "overdue_now": 2,
    "categories": {
        "deepfake": 1, "doxxing": 1, "grooming": 1, "harassment": 2, "impersonation": 1,
        "intimate_images": 3, "privacy": 1, "sextortion": 1,
    },
    "content_categories": {CV: 8, MINORS: 1, PRIVACY: 2},
    "content_keywords": {
        DEEPFAKE: 1, GROOMING: 1, HARASSMENT: 2, IMPERSONATION: 1, NCII: 4, STALKING: 1,
    },
    "actions": {
        REMOVED: 4, "declined": 4, "awaiting": 2, AGE: 1, DISABLED: 1,
        "more_info_requested": 1, "no_response": 1, "removed": 1, "withdrawn": 1,
    },
}  # fmt: skip
