"""The checks on what a victim fills in: number, code word, time windows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from helpline.core.config import ConfigError, load_settings
from helpline.core.hours import OpeningHours
from helpline.intake.callback.validation import (
    CallbackInvalid,
    Window,
    check_code_word,
    check_windows,
    display_number,
    mask_number,
    normalise_number,
    windows_from_json,
    windows_to_json,
)
from tests.callback.conftest import AMSTERDAM, local

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # Thursday 10:00 in Amsterdam
HOURS = OpeningHours.parse("mo-fr 09:00-21:00; sa 12:00-17:00", "Europe/Amsterdam")
WEEK = timedelta(days=7)


def naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def check(*windows: tuple[datetime, datetime], now: datetime = NOW) -> list[Window]:
    return check_windows(list(windows), now=now, zone=AMSTERDAM, hours=HOURS, horizon=WEEK)


def refused(code: str, *windows: tuple[datetime, datetime]) -> CallbackInvalid:
    with pytest.raises(CallbackInvalid) as caught:
        check(*windows)
    assert caught.value.code == code, caught.value.message
    assert caught.value.status == 422
    return caught.value


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("typed", "region", "e164"),
    [
        ("06 12345678", "NL", "+31612345678"),
        ("06-1234 5678", "NL", "+31612345678"),
        ("+31 6 12345678", "NL", "+31612345678"),
        ("0031612345678", "NL", "+31612345678"),
        ("020 123 4567", "NL", "+31201234567"),
        ("+32 470 12 34 56", "NL", "+32470123456"),
        ("0470 12 34 56", "BE", "+32470123456"),
    ],
)
def test_numbers_are_normalised_to_e164(typed: str, region: str, e164: str) -> None:
    assert normalise_number(typed, region) == e164


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("", "number_missing"),
        ("   ", "number_missing"),
        ("12345", "number_invalid"),
        ("06 1234", "number_invalid"),
        ("call me maybe", "number_invalid"),
        ("+999 1234567", "number_invalid"),
        ("0" * 41, "number_invalid"),
        ("0900 1234567", "number_premium"),  # a premium-rate service number
    ],
)
def test_what_is_not_a_callable_number_is_refused(typed: str, code: str) -> None:
    with pytest.raises(CallbackInvalid) as caught:
        normalise_number(typed, "NL")
    assert caught.value.code == code
    assert caught.value.details == {"field": "phone"}
    assert caught.value.message.startswith("phone: ")


def test_staff_see_the_number_formatted_and_others_masked() -> None:
    assert display_number("+31612345678") == "+31 6 12345678"
    assert mask_number("+31612345678") == "+31 •••••••78"
    assert "1234" not in mask_number("+31612345678")


# ---------------------------------------------------------------- code words


def test_a_code_word_is_trimmed_and_bounded() -> None:
    assert check_code_word("  zonne   bloem ") == "zonne bloem"
    assert check_code_word("x" * 40) == "x" * 40
    for text, code in (
        ("", "code_word_missing"),
        ("  \n ", "code_word_missing"),
        ("x" * 41, "code_word_long"),
        ("zon\x00bloem", "code_word_invalid"),
    ):
        with pytest.raises(CallbackInvalid) as caught:
            check_code_word(text)
        assert caught.value.code == code


# ---------------------------------------------------------------- windows


def test_windows_without_an_offset_are_the_helplines_local_time() -> None:
    [only] = check((naive(local(2, 14)), naive(local(2, 16))))
    assert only.start == datetime(2026, 1, 2, 13, 0, tzinfo=UTC)
    assert only.end == datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
    # with an offset, the offset counts
    [utc] = check(
        (datetime(2026, 1, 2, 13, tzinfo=UTC), datetime(2026, 1, 2, 15, tzinfo=UTC)),
    )
    assert utc == only
    assert only.as_json(AMSTERDAM) == {
        "start": "2026-01-02T14:00:00+01:00",
        "end": "2026-01-02T16:00:00+01:00",
    }


def test_windows_are_sorted_and_stored_as_utc() -> None:
    later = (naive(local(5, 10)), naive(local(5, 11)))
    sooner = (naive(local(2, 10)), naive(local(2, 11)))
    checked = check(later, sooner)
    assert [w.start.astimezone(AMSTERDAM).day for w in checked] == [2, 5]
    assert windows_from_json(windows_to_json(checked)) == checked


def test_a_window_that_has_begun_counts_from_now() -> None:
    [only] = check((naive(local(1, 9)), naive(local(1, 12))))
    assert only.start == NOW


def test_windows_that_passed_or_make_no_sense_are_refused() -> None:
    assert refused("window_past", (naive(local(1, 8)), naive(local(1, 9, 30)))).details == {
        "field": "windows.0"
    }
    refused("window_order", (naive(local(2, 16)), naive(local(2, 14))))
    refused("window_order", (naive(local(2, 14)), naive(local(2, 14))))
    refused("window_short", (naive(local(2, 14)), naive(local(2, 14, 10))))
    refused("window_short", (naive(local(1, 9)), naive(local(1, 10, 5))))  # 5 minutes left
    refused("window_long", (naive(local(2, 8)), naive(local(2, 20, 30))))
    refused("window_far", (naive(local(9, 14)), naive(local(9, 16))))  # 8 days ahead
    refused("window_closed", (naive(local(2, 21, 30)), naive(local(2, 23))))  # after hours
    refused("window_closed", (naive(local(4, 10)), naive(local(4, 12))))  # a Sunday
    refused("windows_missing")
    too_many = [(naive(local(2, h)), naive(local(2, h, 30))) for h in range(10, 16)]
    assert refused("windows_too_many", *too_many).details["max"] == 5
    refused(
        "windows_overlap",
        (naive(local(2, 10)), naive(local(2, 12))),
        (naive(local(2, 11)), naive(local(2, 13))),
    )
    # a window reaching into the opening hours is fine; one touching another too
    check(
        (naive(local(2, 8)), naive(local(2, 9, 30))),
        (naive(local(2, 9, 30)), naive(local(2, 10))),
    )
    # the second window is named when it is the wrong one
    error = refused(
        "window_past",
        (naive(local(2, 10)), naive(local(2, 12))),
        (naive(local(1, 8)), naive(local(1, 9))),
    )
    assert error.message.startswith("windows.1: ")


def test_the_region_setting_is_checked() -> None:
    assert load_settings(callback_region="be").callback_region == "BE"
    with pytest.raises(ConfigError, match="HELPLINE_CALLBACK_REGION"):
        load_settings(callback_region="XX")
