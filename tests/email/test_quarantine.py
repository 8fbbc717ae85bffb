"""The quarantine for supervisors: list, download, release into a case, delete; and its
retention purge."""

from __future__ import annotations

from datetime import timedelta
from email.policy import SMTP

from sqlalchemy import select

from helpline.cases.service import QUEUE_CHANNEL
from helpline.core.models import AuditEntry
from helpline.evidence.models import EvidenceItem
from helpline.intake.email.models import QuarantinedEmail
from helpline.intake.email.quarantine import purge_job
from helpline.staff.models import Role
from tests.email.conftest import VICTIM, Mailroom, victim_mail
from tests.email.test_inbound import PNG


async def held(room: Mailroom) -> list[QuarantinedEmail]:
    async with room.services.db.transaction() as session:
        return list((await session.execute(select(QuarantinedEmail))).scalars().all())


async def actions(room: Mailroom) -> list[str]:
    async with room.services.db.transaction() as session:
        return [e.action for e in (await session.execute(select(AuditEntry))).scalars().all()]


def with_attachments(count: int, text: str = "Hier zijn de screenshots") -> bytes:
    mail = victim_mail(text, subject="Vier bestanden")
    for number in range(count):
        mail.add_attachment(PNG, maintype="image", subtype="png", filename=f"shot-{number}.png")
    return mail.as_bytes(policy=SMTP)


async def test_supervisors_list_and_download_agents_may_not(mailroom: Mailroom) -> None:
    raw = (
        victim_mail("x", subject="Onleesbaar")
        .as_bytes()
        .replace(b'charset="utf-8"', b"charset=x-unknown")
    )
    await mailroom.send(raw)
    [row] = await held(mailroom)
    agent = await mailroom.staff("agent")
    assert (await agent.http.get("/api/staff/email/quarantine")).status_code == 403
    assert (await agent.http.get(f"/api/staff/email/quarantine/{row.id}/raw")).status_code == 403
    async with mailroom.client() as anonymous:
        assert (await anonymous.get("/api/staff/email/quarantine")).status_code == 401
    supervisor = await mailroom.staff("super", Role.supervisor)
    listed = (await supervisor.http.get("/api/staff/email/quarantine")).json()["items"]
    assert listed == [
        {
            "id": row.id,
            "received_at": listed[0]["received_at"],
            "reason": "malformed",
            "detail": "unknown charset",
            "size": row.size,
            "from": VICTIM,
            "subject": "Onleesbaar",
            "attachments": 0,
        }
    ]
    download = await supervisor.http.get(f"/api/staff/email/quarantine/{row.id}/raw")
    assert download.status_code == 200
    assert download.headers["content-type"] == "message/rfc822"
    assert "attachment" in download.headers["content-disposition"]
    assert download.content.rstrip(b"\r\n") == raw.rstrip(b"\r\n")
    assert {"email.quarantine_list", "email.quarantine_download"} <= set(await actions(mailroom))


async def test_release_puts_the_mail_into_a_case_with_all_its_attachments(
    mailroom: Mailroom,
) -> None:
    await mailroom.send(with_attachments(4))  # over the limit of 3
    [row] = await held(mailroom)
    assert row.reason == "attachment_limit"
    supervisor = await mailroom.staff("super", Role.supervisor)
    bus = mailroom.services.bus
    async with bus.subscribe(QUEUE_CHANNEL) as queue:
        released = await supervisor.http.post(f"/api/staff/email/quarantine/{row.id}/release")
        assert released.status_code == 200, released.text
        assert (await queue.get(timeout=5))["type"] == "queue_changed"
    body = released.json()
    assert body["new_case"] is True and body["duplicate"] is False
    [case] = await mailroom.cases()
    assert (case.id, case.reference, case.channel) == (body["case_id"], body["reference"], "email")
    async with mailroom.services.db.transaction() as session:
        items = (await session.execute(select(EvidenceItem))).scalars().all()
    assert len(items) == 4 and {i.captured_by for i in items} == {"email"}
    assert await held(mailroom) == []
    assert "email.quarantine_release" in await actions(mailroom)
    again = await supervisor.http.post(f"/api/staff/email/quarantine/{row.id}/release")
    assert again.status_code == 404


async def test_a_released_reply_joins_its_case_and_unreadable_mail_cannot_be_released(
    mailroom: Mailroom,
) -> None:
    agent = await mailroom.staff("sanne")
    await mailroom.send(victim_mail("Eerste mail"))
    [case] = await mailroom.cases()
    await agent.claim(case.id)
    await agent.reply(case.id, "Stuur de screenshots maar.", client_id="r1")
    await mailroom.run_outbox()
    reply_to = mailroom.sink.received[-1].message["Reply-To"]
    await mailroom.send(with_attachments(5, "Alstublieft"), to=[reply_to])
    await mailroom.send(b"no header here\r\n\r\njust words\r\n")
    over_limit, unreadable = sorted(await held(mailroom), key=lambda r: r.reason)
    assert (over_limit.reason, unreadable.reason) == ("attachment_limit", "malformed")
    supervisor = await mailroom.staff("super", Role.supervisor)
    released = await supervisor.http.post(f"/api/staff/email/quarantine/{over_limit.id}/release")
    assert released.json()["case_id"] == case.id and released.json()["new_case"] is False
    assert "Alstublieft" in (await mailroom.texts(case.id))[-1][1]

    refused = await supervisor.http.post(f"/api/staff/email/quarantine/{unreadable.id}/release")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "unreadable"
    assert [r.id for r in await held(mailroom)] == [unreadable.id]
    deleted = await supervisor.http.delete(f"/api/staff/email/quarantine/{unreadable.id}")
    assert deleted.status_code == 204
    assert await held(mailroom) == []
    gone = await supervisor.http.delete(f"/api/staff/email/quarantine/{unreadable.id}")
    assert gone.status_code == 404
    assert "email.quarantine_delete" in await actions(mailroom)


async def test_quarantined_mail_is_purged_after_the_retention_period(mailroom: Mailroom) -> None:
    await mailroom.send(victim_mail("bulk", Precedence="bulk"))
    assert len(await held(mailroom)) == 1
    assert "email-quarantine-purge" in mailroom.services.scheduler.jobs
    purge = purge_job(mailroom.services, 30)
    await purge(mailroom.clock.now() + timedelta(days=29))
    assert len(await held(mailroom)) == 1
    await purge(mailroom.clock.now() + timedelta(days=31))
    assert await held(mailroom) == []
