"""Delivery: default deny, withdrawal, crashes, and a notification without case data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpline.core.outbox import CANCELLED, DELIVERED
from helpline.handover import delivery, gate
from helpline.handover.states import HandoverStatus, PartnerKind
from tests.handover_packet.conftest import CONTENT_URL, FILE_NAME, SUMMARY, Desk

H = HandoverStatus
EVIDENCE = b"the group chat, as the victim copied it\n" * 300


async def _nothing_left(desk: Desk, handover_id: str, *, sealed_before: bool = False) -> None:
    """Not one byte of case data left: no mail, no request to the partner, no packet (a
    destroyed one keeps only its hash, as a record)."""
    assert desk.sink.received == []
    assert desk.site.requests == []
    assert desk.blobs() == []
    row = await desk.row(handover_id)
    assert row.blob_name is None
    assert (row.packet_sha256 is not None) == sealed_before
    assert row.status not in (H.sealed, H.delivered, H.downloaded)


@pytest.mark.parametrize(
    "consent",
    ["none", "declined", "expired", "unconfirmed", "fewer_items", "police_unapproved"],
)
async def test_without_valid_consent_nothing_leaves(desk: Desk, consent: str) -> None:
    police = consent == "police_unapproved"
    partner = await desk.partner(PartnerKind.police if police else PartnerKind.gp)
    case_id = await desk.case()
    first = await desk.file(case_id, EVIDENCE)
    second = await desk.url(case_id)
    options: dict[str, Any] = {"evidence": [first, second], "queue": False}
    if consent == "none":
        options["consent"] = None
    elif consent == "fewer_items":
        options["consent_evidence"] = [first]
    elif consent == "police_unapproved":
        options["approve"] = False
    elif consent != "valid":
        options["consent"] = consent
    handover_id = await desk.handover(case_id, partner, **options)

    # the gate refuses, so the builder cannot even be called
    async with desk.services.db.transaction() as session:
        row = await session.get(delivery.Handover, handover_id)
        assert row is not None
        with pytest.raises(gate.ConsentMissing) as refused:
            await gate.authorise(session, row, desk.clock.now())
    if consent == "fewer_items":
        assert refused.value.reason == "scope"

    # nothing was queued, and nothing the workers do sends anything
    assert await desk.outbox() == []
    await desk.run_outbox()
    await desk.services.scheduler.run_due()
    await _nothing_left(desk, handover_id)

    # even if something queued it by mistake, the handler refuses and sends nothing
    async with desk.services.db.transaction() as session:
        row = await session.get(delivery.Handover, handover_id, with_for_update=True)
        assert row is not None
        await delivery.queue_delivery(session, desk.services, row)
    await desk.run_outbox()
    await _nothing_left(desk, handover_id)
    entries = await desk.outbox()
    assert len(entries) == 1 and entries[0].status == DELIVERED  # finished, nothing sent
    if consent == "expired":  # the expiry job closed it
        assert (await desk.row(handover_id)).status == H.expired
    elif consent not in ("none", "declined"):  # still proposed/declined: nothing to note
        notes = [json.loads(h.details) for h in await desk.history(handover_id)]
        assert {"event": "delivery_refused", "reason": refused.value.reason} in notes


async def test_withdrawal_before_delivery_stops_it(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    item = await desk.file(case_id, EVIDENCE)
    handover_id = await desk.handover(case_id, partner, evidence=[item])
    row = await desk.row(handover_id)
    assert row.outbox_id is not None
    await desk.withdraw(handover_id)
    entries = await desk.outbox()
    assert [(entry.id, entry.status) for entry in entries] == [(row.outbox_id, CANCELLED)]
    assert await desk.run_outbox() == 0
    await _nothing_left(desk, handover_id)
    assert (await desk.row(handover_id)).status == H.withdrawn


async def test_withdrawal_after_sealing_destroys_the_packet(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the worker dies after sealing")

    monkeypatch.setattr(delivery, "issue_link", crash)
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.sealed and desk.blobs() == [row.blob_name]
    await desk.withdraw(handover_id)
    monkeypatch.undo()
    await desk.retry_due()
    await _nothing_left(desk, handover_id, sealed_before=True)
    assert (await desk.row(handover_id)).status == H.withdrawn


async def test_the_notification_holds_no_case_data(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    item = await desk.file(case_id, EVIDENCE)
    url = await desk.url(case_id)
    handover_id = await desk.handover(case_id, partner, evidence=[item, url])
    await desk.run_outbox()
    row = await desk.row(handover_id)
    assert row.status == H.delivered
    [mail] = desk.sink.received
    assert mail.rcpt_tos == ["intake@partner.example.org"]
    raw = mail.raw.decode("utf-8", errors="replace")
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for secret in (
        SUMMARY,
        SUMMARY[:30],
        CONTENT_URL,
        "leaks.example.net",
        FILE_NAME,
        "screenshot",
        "intimate",
        "06-12345678",
        "Partner ",  # not even the partner's directory name
    ):
        assert secret not in raw, secret
    assert row.reference in body
    assert f"https://helpline.test/handover/{desk.link()}" in body
    assert "age -d -i" in body and "once" in body
    assert mail.message["Message-ID"] == delivery.message_id(desk.services, row)


async def test_a_crash_after_sealing_neither_loses_nor_doubles_the_mail(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary", "timeline"))
    real_issue = delivery.issue_link
    calls = {"n": 0}

    async def crash_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the worker dies after sealing")
        return await real_issue(*args, **kwargs)

    monkeypatch.setattr(delivery, "issue_link", crash_once)
    await desk.run_outbox()
    sealed = await desk.row(handover_id)
    assert sealed.status == H.sealed and desk.sink.received == []
    await desk.retry_due()
    row = await desk.row(handover_id)
    assert row.status == H.delivered
    assert len(desk.sink.received) == 1
    # sealed once: the retry used the committed packet
    assert (row.blob_name, row.packet_sha256) == (sealed.blob_name, sealed.packet_sha256)
    assert desk.blobs() == [row.blob_name]
    await desk.retry_due()
    assert len(desk.sink.received) == 1


async def test_a_crash_after_sending_sends_the_same_mail_again(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after the relay took the mail, before `delivered` was committed: the
    retry sends the very same mail (Message-ID, link), never a second, different link."""
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    real_move = delivery.state.move
    calls = {"n": 0}

    async def crash_once(session: Any, clock: Any, handover: Any, to: Any, **kwargs: Any) -> Any:
        if to == H.delivered:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the worker dies after sending")
        return await real_move(session, clock, handover, to, **kwargs)

    monkeypatch.setattr(delivery.state, "move", crash_once)
    await desk.run_outbox()
    assert (await desk.row(handover_id)).status == H.sealed
    await desk.retry_due()
    assert (await desk.row(handover_id)).status == H.delivered
    first, second = desk.sink.received
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message.get_body(("plain",)).get_content() == (  # type: ignore[union-attr]
        second.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    )


async def test_a_permanent_smtp_refusal_is_a_dead_letter(desk: Desk) -> None:
    desk.sink.handler.refuse_rcpt = "550 no such user"
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    await desk.run_outbox()
    [entry] = await desk.outbox()
    assert entry.status == "dead"
    row = await desk.row(handover_id)
    assert row.status == H.sealed
    notes = [json.loads(h.details) for h in await desk.history(handover_id)]
    assert any(n.get("event") == "delivery_failed" and n.get("reason") == "SMTP 550" for n in notes)


async def test_queueing_is_idempotent(desk: Desk) -> None:
    partner = await desk.partner()
    case_id = await desk.case()
    handover_id = await desk.handover(case_id, partner, parts=("summary",))
    async with desk.services.db.transaction() as session:
        row = await session.get(delivery.Handover, handover_id, with_for_update=True)
        assert row is not None
        await delivery.queue_delivery(session, desk.services, row)
    entries = await desk.outbox()
    assert len(entries) == 1
    assert entries[0].idempotency_key == f"handover:{handover_id}"
    assert entries[0].key_scope == f"handover:{handover_id}"
    await desk.run_outbox()
    assert len(desk.sink.received) == 1
