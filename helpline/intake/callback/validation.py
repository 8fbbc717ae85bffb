"""What a victim fills in to be called back, checked: the phone number (normalised to E.164),
the preferred time windows (in the helpline's time zone) and the code word.

Every refusal is an `Invalid` with its own code (and the field it concerns in `details`), so
that the form can say in the victim's language what to change.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from helpline.core.clock import as_utc
from helpline.core.errors import Invalid
from helpline.core.hours import OpeningHours

MAX_WINDOWS = 5
MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=12)
MAX_CODE_WORD = 40
MAX_NUMBER_INPUT = 40
# numbers that would cost the helpline money to call, or reach a service rather than a person
REFUSED_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
MASK = "•"


class CallbackInvalid(Invalid):
    """A callback request the helpline cannot take as it is; `code` says what to change."""

    def __init__(self, code: str, message: str, *, field: str, **details: object) -> None:
        super().__init__(message, field=field, **details)
        self.code = code


# ---------------------------------------------------------------- the phone number


def normalise_number(text: str, region: str) -> str:
    """The number in E.164 (`+31612345678`): with a country code, or in `region` without one.
    Refuses what is not a callable number, and premium-rate or shared-cost numbers."""
    text = text.strip()
    if not text:
        raise CallbackInvalid("number_missing", "phone: give a phone number", field="phone")
    if len(text) > MAX_NUMBER_INPUT:
        raise CallbackInvalid("number_invalid", "phone: this is not a phone number", field="phone")
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException:
        raise CallbackInvalid(
            "number_invalid", "phone: this is not a phone number", field="phone"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise CallbackInvalid(
            "number_invalid",
            "phone: this is not a valid phone number (with a country code if it is not "
            f"a number in {region})",
            field="phone",
        )
    if phonenumbers.number_type(parsed) in REFUSED_TYPES:
        raise CallbackInvalid(
            "number_premium", "phone: we cannot call premium-rate numbers", field="phone"
        )
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def display_number(e164: str) -> str:
    """`+31612345678` → `+31 6 12345678`, for staff to read and dial."""
    return phonenumbers.format_number(
        phonenumbers.parse(e164, None), PhoneNumberFormat.INTERNATIONAL
    )


def mask_number(e164: str) -> str:
    """The country code and the last two digits only: `+31 •••••••78`."""
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.national_significant_number(parsed)
    return f"+{parsed.country_code} {MASK * max(0, len(national) - 2)}{national[-2:]}"


# ---------------------------------------------------------------- the code word


def check_code_word(text: str) -> str:
    """The word staff will ask for when they call: 1-40 characters, no control characters."""
    word = " ".join(text.split())
    if not word:
        raise CallbackInvalid(
            "code_word_missing", "code_word: choose a code word we will ask for", field="code_word"
        )
    if len(word) > MAX_CODE_WORD:
        raise CallbackInvalid(
            "code_word_long",
            f"code_word: at most {MAX_CODE_WORD} characters",
            field="code_word",
        )
    if any(unicodedata.category(c).startswith("C") for c in word):
        raise CallbackInvalid(
            "code_word_invalid", "code_word: letters, digits and spaces only", field="code_word"
        )
    return word


# ---------------------------------------------------------------- time windows


@dataclass(frozen=True)
class Window:
    """A time the victim can be called, in UTC."""

    start: datetime
    end: datetime

    def as_json(self, zone: ZoneInfo) -> dict[str, str]:
        return {
            "start": self.start.astimezone(zone).isoformat(),
            "end": self.end.astimezone(zone).isoformat(),
        }


def _in_zone(moment: datetime, zone: ZoneInfo) -> datetime:
    """A time without an offset is the helpline's local time; one with an offset is kept."""
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _overlaps_opening_hours(hours: OpeningHours, start: datetime, end: datetime) -> bool:
    if not hours.spans:  # no opening hours configured: nothing to hold the window against
        return True
    if hours.is_open(start):
        return True
    opening = hours.next_opening(start)
    return opening is not None and opening < end


def check_windows(
    raw: list[tuple[datetime, datetime]],
    *,
    now: datetime,
    zone: ZoneInfo,
    hours: OpeningHours,
    horizon: timedelta,
) -> list[Window]:
    """The victim's windows, checked and sorted. A window that has begun already counts from
    now; one that has ended is refused. Each must last 15 minutes to 12 hours (from now, if it
    has begun), end within `horizon`, overlap the opening hours, and not overlap another."""
    if not raw:
        raise CallbackInvalid(
            "windows_missing", "windows: give at least one time to call", field="windows"
        )
    if len(raw) > MAX_WINDOWS:
        raise CallbackInvalid(
            "windows_too_many",
            f"windows: at most {MAX_WINDOWS} times to call",
            field="windows",
            max=MAX_WINDOWS,
        )
    checked: list[Window] = []
    for index, (start_in, end_in) in enumerate(raw):
        field = f"windows.{index}"
        start = as_utc(_in_zone(start_in, zone))
        end = as_utc(_in_zone(end_in, zone))
        if end <= start:
            raise CallbackInvalid(
                "window_order", f"{field}: the end must be after the start", field=field
            )
        if end <= now:
            raise CallbackInvalid("window_past", f"{field}: this time has passed", field=field)
        start = max(start, now)
        if end - start < MIN_WINDOW:
            raise CallbackInvalid(
                "window_short",
                f"{field}: a time to call must last at least {_minutes(MIN_WINDOW)} minutes",
                field=field,
            )
        if end - start > MAX_WINDOW:
            raise CallbackInvalid(
                "window_long",
                f"{field}: a time to call may last at most {_minutes(MAX_WINDOW) // 60} hours",
                field=field,
            )
        if end > now + horizon:
            raise CallbackInvalid(
                "window_far",
                f"{field}: we can call at most {horizon.days} days ahead",
                field=field,
                days=horizon.days,
            )
        if not _overlaps_opening_hours(hours, start, end):
            raise CallbackInvalid(
                "window_closed", f"{field}: we are closed at that time", field=field
            )
        checked.append(Window(start, end))
    checked.sort(key=lambda w: w.start)
    for earlier, later in zip(checked, checked[1:], strict=False):
        if later.start < earlier.end:
            raise CallbackInvalid(
                "windows_overlap", "windows: two times to call overlap", field="windows"
            )
    return checked


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def windows_to_json(windows: list[Window]) -> str:
    return json.dumps([[w.start.isoformat(), w.end.isoformat()] for w in windows])


def windows_from_json(text: str) -> list[Window]:
    return [
        Window(as_utc(datetime.fromisoformat(start)), as_utc(datetime.fromisoformat(end)))
        for start, end in json.loads(text)
    ]
