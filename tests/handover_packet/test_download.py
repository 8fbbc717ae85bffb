"""The partner's one-time download link: 410 alike for every link that does not work, the
token in no log line, and the expiry job."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from helpline.handover.states import HandoverStatus
from tests.handover_packet.conftest import Desk

H = HandoverStatus
UNKNOWN = "0123456789abcdef0123456789abcdef"


async def _delivered(desk: Desk) -> tuple[str, str]:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary", "categories"))
    await desk.run_outbox()
    assert (await desk.row(handover_id)).status == H.delivered
    return handover_id, desk.link()


async def _gone_body(desk: Desk, token: str) -> bytes:
    for method in ("GET", "POST"):
        answer = await desk.http.request(method, f"/handover/{token}")
        assert answer.status_code == 410, (method, answer.text)
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
    return answer.content


async def test_page_then_one_download_then_gone(desk: Desk) -> None:
    handover_id, token = await _delivered(desk)
    unknown = await _gone_body(desk, UNKNOWN)
    malformed = await _gone_body(desk, "not-a-token")

    page = await desk.http.get(f"/handover/{token}")
    assert page.status_code == 200
    assert "<script" not in page.text and '<form method="post"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    reference = (await desk.row(handover_id)).reference
    assert reference not in page.text  # not even the reference
    # the page does not use the link up
    assert (await desk.http.get(f"/handover/{token}")).status_code == 200

    answer = await desk.http.post(f"/handover/{token}")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="{reference}.tar.age"'
    assert answer.headers["cache-control"] == "no-store"
    assert answer.content.startswith(b"age-encryption.org/v1\n")
    row = await desk.row(handover_id)
    assert row.status == H.downloaded and row.downloaded_at is not None

    used = await _gone_body(desk, token)
    assert used == unknown == malformed


async def test_expired_link_is_gone_and_the_packet_destroyed(desk: Desk) -> None:
    handover_id, token = await _delivered(desk)
    unknown = await _gone_body(desk, UNKNOWN)
    hours = desk.services.settings.handover_link_hours
    desk.clock.advance(timedelta(hours=hours, seconds=1))
    assert await _gone_body(desk, token) == unknown
    await desk.services.scheduler.run_due()
    row = await desk.row(handover_id)
    assert row.status == H.expired
    assert row.blob_name is None and desk.blobs() == []


async def test_consent_expiry_stops_an_undelivered_handover(desk: Desk) -> None:
    desk.sink.handler.refuse_rcpt = "451 try again later"  # the mail cannot go out yet
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.sealed and desk.blobs() == [row.blob_name]
    desk.clock.advance(hours=desk.services.settings.handover_consent_hours + 1)
    await desk.services.scheduler.run_due()
    row = await desk.row(handover_id)
    assert row.status == H.expired and row.blob_name is None and desk.blobs() == []
    [entry] = await desk.outbox()
    desk.sink.handler.refuse_rcpt = None
    await desk.retry_due()
    assert desk.sink.received == []
    assert entry.id == row.outbox_id


async def test_a_withdrawn_handover_is_gone_too(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    unknown = await _gone_body(desk, UNKNOWN)
    await desk.withdraw(handover_id)
    assert await desk.run_outbox() == 0
    # no link was ever issued; and a revoked link is gone alike
    assert await _gone_body(desk, UNKNOWN) == unknown


async def test_a_revoked_link_is_gone(desk: Desk) -> None:
    handover_id, token = await _delivered(desk)
    unknown = await _gone_body(desk, UNKNOWN)
    from sqlalchemy import update

    from helpline.handover.models import HandoverLink

    async with desk.services.db.transaction() as session:
        await session.execute(update(HandoverLink).values(revoked_at=desk.clock.now()))
    assert await _gone_body(desk, token) == unknown


async def test_the_token_never_reaches_a_log_line(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    _, token = await _delivered(desk)
    caplog.set_level(logging.DEBUG)
    await desk.http.get(f"/handover/{token}")
    await desk.http.post(f"/handover/{token}")
    await desk.http.post(f"/handover/{token}")
    assert caplog.records
    routes = {getattr(r, "route", None) for r in caplog.records if r.name == "helpline.access"}
    assert routes == {"/handover/{token}"}
    # the server side's loggers (the test's own httpx client logs the URL it requests)
    for record in caplog.records:
        if not record.name.startswith(("helpline", "uvicorn", "starlette")):
            continue
        assert token not in record.getMessage()
        assert token not in str(vars(record))
