"""A victim files a callback request: from the start page (a new case) or inside a chat; bad
input gets a clear 422; the number and code word are encrypted at rest under the case key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from helpline.cases.models import Case
from helpline.core.crypto import DecryptionError, case_scope
from helpline.intake.callback.models import CallbackState
from tests.callback.conftest import (
    CODE_WORD,
    E164,
    callback_row,
    file_request,
    local,
    request_body,
    victim_client,
    window,
)
from tests.triage.kit import Desk


async def test_info_lists_the_days_and_hours_to_choose_from(desk: Desk) -> None:
    answer = await desk.client().get("/api/callback/info")
    assert answer.status_code == 200
    info = answer.json()
    assert info["timezone"] == "Europe/Amsterdam"
    assert info["now"] == "2026-01-01T10:00:00+01:00"
    assert info["max_windows"] == 5
    assert (info["min_minutes"], info["max_minutes"]) == (15, 720)
    assert info["region"] == "NL"
    days = {d["date"]: d["hours"] for d in info["days"]}
    assert len(days) == 7  # HELPLINE_RETENTION_CALLBACK_DAYS
    assert days["2026-01-01"] == [{"start": "09:00", "end": "21:00"}]  # Thursday
    assert days["2026-01-03"] == [{"start": "12:00", "end": "17:00"}]  # Saturday
    assert days["2026-01-04"] == []  # Sunday: closed
    assert "possible_minor" not in info["topics"]


async def test_a_request_from_the_start_page_opens_a_callback_case(desk: Desk) -> None:
    filed = await file_request(desk, topic="sextortion", urgent=False, may_say_name=True)
    assert filed["number"] == "+31 6 12345678"  # back once, for the victim to check
    assert filed["number_masked"] == "+31 •••••••78"
    assert filed["state"] == "pending"
    assert filed["windows"] == [
        {"start": "2026-01-02T14:00:00+01:00", "end": "2026-01-02T16:00:00+01:00"}
    ]
    assert (filed["voicemail_safe"], filed["may_say_name"], filed["urgent"]) == (
        False,
        True,
        False,
    )
    assert "passphrase" not in filed and "token" not in filed
    assert "code_word" not in json.dumps(filed) and CODE_WORD not in json.dumps(filed)
    case = await desk.row(filed["case_id"])
    assert (case.channel, case.status, case.language) == ("callback", "new", "nl")
    assert (case.topic, case.category, case.priority) == ("sextortion", "sextortion", 2)
    assert case.passphrase_hash is None  # no chat unless asked for
    assert case.queued_at.replace(tzinfo=None) == local(2, 13).replace(tzinfo=None)  # 14:00 CET
    actions = [a for a, _, _ in await desk.actions(filed["case_id"])]
    assert actions == ["case.start", "callback.request"]
    [event] = await desk.events(filed["case_id"])
    assert (event.kind, event.actor) == ("callback_requested", "victim")
    details = json.loads(event.details)
    assert details["windows"] == 1 and details["source"] == "start"


async def test_the_number_and_code_word_are_encrypted_under_the_case_key(desk: Desk) -> None:
    filed = await file_request(desk)
    row = await callback_row(desk, filed["case_id"])
    assert row.phone is not None and row.code_word is not None
    for secret in (E164, "612345678", CODE_WORD):
        assert secret.encode() not in row.phone + row.code_word
    # the raw row as the database holds it: no number, no code word anywhere
    async with desk.services.db.transaction() as session:
        raw = (
            await session.execute(
                text("SELECT * FROM callback_requests WHERE id = :id"), {"id": row.id}
            )
        ).one()
        cipher = await desk.services.keyring.cipher(session, case_scope(filed["case_id"]))
        other = await desk.services.keyring.cipher(session, case_scope("another-case"))
    flat = " ".join(str(value) for value in raw)
    assert E164 not in flat and "612345678" not in flat and CODE_WORD not in flat
    assert (
        cipher.decrypt_text(row.phone, table="callback_requests", row_id=row.id, field="phone")
        == E164
    )
    assert (
        cipher.decrypt_text(
            row.code_word, table="callback_requests", row_id=row.id, field="code_word"
        )
        == CODE_WORD
    )
    # bound to its table, row and field, and to this case's key
    with pytest.raises(DecryptionError):
        cipher.decrypt(row.phone, table="callback_requests", row_id=row.id, field="code_word")
    with pytest.raises(DecryptionError):
        cipher.decrypt(row.phone, table="callback_requests", row_id="other", field="phone")
    with pytest.raises(DecryptionError):
        other.decrypt(row.phone, table="callback_requests", row_id=row.id, field="phone")


async def test_a_victim_who_wants_to_chat_too_gets_a_reference_and_passphrase(
    desk: Desk,
) -> None:
    filed = await file_request(desk, continue_in_chat=True, language="en")
    assert len(filed["passphrase"].split()) >= 5
    victim = victim_client(desk, filed["token"])
    seen = (await victim.get("/api/chat/callback")).json()["callback"]
    assert seen["state"] == "pending" and seen["number_masked"] == "+31 •••••••78"
    assert "number" not in seen
    # and the passphrase works at the chat's door
    resumed = await desk.client().post(
        "/api/chat/resume",
        json={"reference": filed["reference"], "passphrase": filed["passphrase"]},
    )
    assert resumed.status_code == 200, resumed.text
    assert (await desk.row(filed["case_id"])).language == "en"


async def refusal(desk: Desk, body: dict[str, Any]) -> Any:
    answer = await desk.client().post("/api/callback/request", json=body)
    assert answer.status_code == 422, answer.text
    return answer.json()["error"]


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"phone": "12345"}, "number_invalid", "phone"),
        ({"phone": ""}, "number_missing", "phone"),
        ({"phone": "0900 1234567"}, "number_premium", "phone"),
        ({"code_word": "   "}, "code_word_missing", "code_word"),
        ({"code_word": "x" * 41}, "code_word_long", "code_word"),
        ({"windows": []}, "windows_missing", "windows"),
        ({"windows": [window(local(1, 8), local(1, 9, 30))]}, "window_past", "windows.0"),
        ({"windows": [window(local(2, 16), local(2, 14))]}, "window_order", "windows.0"),
        ({"windows": [window(local(4, 10), local(4, 12))]}, "window_closed", "windows.0"),
        ({"windows": [window(local(20, 10), local(20, 12))]}, "window_far", "windows.0"),
        (
            {"windows": [window(local(2, h), local(2, h, 30)) for h in range(9, 15)]},
            "windows_too_many",
            "windows",
        ),
    ],
)
async def test_bad_requests_are_refused_with_a_clear_reason(
    desk: Desk, changes: dict[str, Any], code: str, field: str
) -> None:
    error = await refusal(desk, request_body(**changes))
    assert error["code"] == code
    assert error["details"]["field"] == field
    assert error["message"].startswith(f"{field}: ")
    async with desk.services.db.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM cases"))).scalar_one() == 0


async def test_malformed_bodies_are_refused(desk: Desk) -> None:
    for body in (
        {k: v for k, v in request_body().items() if k != "voicemail_safe"},  # not chosen
        request_body(surprise=1),  # unknown field
        request_body(windows=[{"start": "tomorrow", "end": "later"}]),
        request_body(language="de"),
        request_body(topic="possible_minor"),  # only staff judge that
        request_body(windows=[window(local(2, 10), local(2, 11))] * 60),
    ):
        error = await refusal(desk, body)
        assert error["code"] == "invalid", error


async def test_one_number_cannot_be_made_to_ring_again_and_again(desk: Desk) -> None:
    for _ in range(3):
        await file_request(desk)
    answer = await desk.client().post("/api/callback/request", json=request_body())
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "rate_limited"
    # the same number written differently is the same number
    other_way = await desk.client().post(
        "/api/callback/request", json=request_body(phone="+31 6 1234 5678")
    )
    assert other_way.status_code == 429
    await file_request(desk, phone="06 87654321")  # another number is fine


async def test_a_request_from_inside_a_chat_is_attached_to_that_case(desk: Desk) -> None:
    chat = await desk.victim("harassment")
    victim = victim_client(desk, chat["token"])
    assert (await victim.get("/api/chat/callback")).json() == {"callback": None}
    answer = await victim.post(
        "/api/chat/callback", json={k: v for k, v in request_body().items() if k != "language"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["reference"] == chat["reference"]
    case = await desk.row(chat["case_id"])
    assert case.channel == "chat" and case.status == "new"  # still where it was in the queue
    row_fields = {"phone", "windows", "voicemail_safe", "may_say_name", "code_word"}
    row = await callback_row(desk, chat["case_id"])
    assert (row.source, row.state) == ("chat", CallbackState.pending)
    # one waiting request at a time
    again = await victim.post(
        "/api/chat/callback", json={k: v for k, v in request_body().items() if k != "language"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "callback_pending"
    # the chat's form takes no language, topic or chat access: the chat has them
    for extra in ({"language": "en"}, {"topic": "other"}, {"continue_in_chat": True}):
        body = {k: v for k, v in request_body(**extra).items() if k in {*row_fields, *extra}}
        assert (await victim.post("/api/chat/callback", json=body)).status_code == 422
    # without a victim's token there is no chat to attach to
    anonymous = await desk.client().post("/api/chat/callback", json=request_body())
    assert anonymous.status_code == 401


async def test_the_victim_can_withdraw_a_waiting_request(desk: Desk) -> None:
    filed = await file_request(desk, continue_in_chat=True)
    victim = victim_client(desk, filed["token"])
    answer = await victim.post("/api/chat/callback/withdraw")
    assert answer.status_code == 200, answer.text
    assert answer.json()["callback"]["state"] == "cancelled"
    row = await callback_row(desk, filed["case_id"])
    assert (row.phone, row.code_word, row.state) == (None, None, "cancelled")
    assert row.contact_deleted_at is not None
    assert (await victim.post("/api/chat/callback/withdraw")).status_code == 404
    kinds = sorted(e.kind for e in await desk.events(filed["case_id"]))
    assert kinds == ["callback_contact_deleted", "callback_requested"]


async def test_an_ended_chat_takes_no_callback_request(desk: Desk) -> None:
    chat = await desk.victim()
    victim = victim_client(desk, chat["token"])
    assert (await victim.post("/api/chat/end")).status_code == 200
    body = {k: v for k, v in request_body().items() if k != "language"}
    answer = await victim.post("/api/chat/callback", json=body)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "ended"


async def test_deleting_the_case_deletes_the_request(desk: Desk) -> None:
    filed = await file_request(desk, continue_in_chat=True)
    victim = victim_client(desk, filed["token"])
    assert (await victim.post("/api/chat/delete", json={"confirm": True})).status_code == 200
    async with desk.services.db.transaction() as session:
        left = await session.execute(text("SELECT count(*) FROM callback_requests"))
        assert left.scalar_one() == 0
        assert await session.get(Case, filed["case_id"]) is None
        assert (
            await session.execute(
                text("SELECT count(*) FROM case_events WHERE case_id = :id"),
                {"id": filed["case_id"]},
            )
        ).scalar_one() == 0
