# ruff: noqa: E501  (the tables of the data set are wider than a line)
"""A small, hand-counted history of the helpline, made through the real code paths (the API
for chats and closures, the state functions for notices and handovers) under a clock the
data set moves. The helpline's time zone is Europe/Amsterdam (UTC+1 in March).

Week of Monday 9 March 2026:

| case | channel | category | what happens | closed as |
| --- | --- | --- | --- | --- |
| c1 | chat | sextortion | staff answer after 3 min; notice N1 to Alpha sent 10 Mar 12:30Z | removal_requested, takedown=yes |
| c2 | chat | doxxing | handover H1 to a police partner, delivered 10 Mar | referred, referred=yes |
| c3 | chat | (none) | the victim ends the chat | ended_by_victim |
| e1 | email | (none) | stays open | — |

Week of Monday 16 March 2026:

| case | channel | category | what happens | closed as |
| --- | --- | --- | --- | --- |
| c4 | chat | harassment | notice N2 to Beta sent 17 Mar 10:00Z: no_response 18 Mar 11:00Z (25 h), honoured 13:00Z (27 h) | advice_only, takedown=yes |

N1 is honoured on 17 Mar 14:30Z (7 days 2 h after sending: 72+). H1 is downloaded 17 Mar.

Hand-computed figures for 9–22 March by week: contacts 4 (chat 3, e-mail 1) then 1 (chat);
closed 4: helped without referral c1 c3 c4 = 3/4; takedown-eligible c1 c4 = 2/4; Alpha sent 1,
honoured 1 (72+); Beta sent 1, no_response revised to honoured: honoured 1, no_response 0
(24-72); honour rate 1.0 for both; police handovers: consented, approved, sealed, delivered,
downloaded 1 each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from helpline.cases import service
from helpline.cases.models import Sender
from helpline.core.ids import new_id
from helpline.handover import state as handover_state
from helpline.handover.models import Handover, Partner
from helpline.handover.states import HandoverStatus
from helpline.intake.email.inbound import open_email_case
from helpline.staff.models import Role
from helpline.takedown import state as notice_state
from helpline.takedown.models import Notice, Platform
from tests.triage.kit import Desk, Member

VICTIM_TEXT = "my ex posted the photos on photoshare, please help"
STAFF_TEXT = "we are here for you, tell me more"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@dataclass
class Loaded:
    supervisor: Member
    platforms: dict[str, str] = field(default_factory=dict)  # name -> id
    identifiers: list[str] = field(default_factory=list)  # every id and reference made


async def _platform(desk: Desk, name: str, slug: str) -> str:
    async with desk.services.db.transaction() as session:
        platform = Platform(
            id=new_id(),
            name=name,
            slug=slug,
            contact_email=f"dsa@{slug}.example",
            delivery="email",
            created_at=desk.clock.now(),
            updated_at=desk.clock.now(),
        )
        session.add(platform)
    return platform.id


async def _notice(desk: Desk, case_id: str, platform_id: str, category: str) -> Notice:
    async with desk.services.db.transaction() as session:
        notice_id = new_id()
        notice = Notice(
            id=notice_id,
            reference=f"N-{notice_id[:4].upper()}-{notice_id[4:8].upper()}",
            case_id=case_id,
            platform_id=platform_id,
            category=category,
            legal_basis="sr_139h",
            status="queued",
            delivery="email",
            created_at=desk.clock.now(),
            updated_at=desk.clock.now(),
            queued_at=desk.clock.now(),
            idempotency_key=f"notice:{notice_id}",
        )
        session.add(notice)
        await session.flush()
        await notice_state.move_notice(session, desk.clock, notice, "sent", actor="system")
    return notice


async def _move_notice(desk: Desk, notice_id: str, to: str) -> None:
    async with desk.services.db.transaction() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        await notice_state.move_notice(session, desk.clock, notice, to, actor="staff:x")


async def _move_handover(desk: Desk, handover_id: str, *steps: HandoverStatus) -> None:
    async with desk.services.db.transaction() as session:
        handover = await session.get(Handover, handover_id)
        assert handover is not None
        for step in steps:
            await handover_state.move(session, desk.clock, handover, step, actor="system")


async def _write(desk: Desk, case_id: str, sender: Sender, text: str, staff_id: str | None) -> None:
    async with desk.services.db.transaction() as session:
        await service.post_message(
            session,
            desk.services.keyring,
            desk.clock,
            case_id=case_id,
            sender=sender,
            text=text,
            client_id=new_id(),
            staff_id=staff_id,
        )


async def load(desk: Desk) -> Loaded:
    clock = desk.clock
    clock.set(at(10, 12))
    supervisor = await desk.staff("sam", Role.supervisor)
    loaded = Loaded(supervisor)
    alpha = await _platform(desk, "Alpha Video", "alpha")
    beta = await _platform(desk, "Beta Social", "beta")
    loaded.platforms = {"Alpha Video": alpha, "Beta Social": beta}
    loaded.identifiers += [alpha, beta, supervisor.id]

    # week 1
    c1 = await desk.victim(topic="sextortion")
    c2 = await desk.victim(topic="doxxing")
    c3 = await desk.victim()
    async with desk.services.db.transaction() as session:
        e1 = await open_email_case(session, clock, language="nl")
    for receipt in (c1, c2, c3):
        loaded.identifiers += [receipt["case_id"], receipt["reference"]]
    loaded.identifiers += [e1.id, e1.reference]
    await supervisor.act(c1["case_id"], "claim")
    await _write(desk, c1["case_id"], Sender.victim, VICTIM_TEXT, None)
    clock.advance(minutes=3)
    await _write(desk, c1["case_id"], Sender.staff, STAFF_TEXT, supervisor.id)
    clock.set(at(10, 12, 30))
    n1 = await _notice(desk, c1["case_id"], alpha, "sextortion")
    clock.set(at(10, 12, 40))
    async with desk.services.db.transaction() as session:
        partner = Partner(
            id=new_id(),
            name="Zedenpolitie (test)",
            kind="police",
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(partner)
        await session.flush()
        handover = Handover(
            id=new_id(),
            reference="H-TEST-0001",
            case_id=c2["case_id"],
            partner_id=partner.id,
            partner_kind="police",
            parts="summary",
            scope_sha256="0" * 64,
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(handover)
    loaded.identifiers += [n1.id, n1.reference, partner.id, handover.id, handover.reference]
    H = HandoverStatus
    await _move_handover(desk, handover.id, H.consented, H.approved, H.sealed, H.delivered)
    clock.set(at(10, 13))
    await supervisor.act(c1["case_id"], "close", {"outcome": "removal_requested"})
    await supervisor.act(c2["case_id"], "claim")
    await supervisor.act(c2["case_id"], "close", {"outcome": "referred"})
    ended = await desk.client().post(
        "/api/chat/end", headers={"Authorization": f"Bearer {c3['token']}"}
    )
    assert ended.status_code == 200, ended.text

    # week 2
    clock.set(at(17, 10))
    c4 = await desk.victim(topic="harassment")
    loaded.identifiers += [c4["case_id"], c4["reference"]]
    n2 = await _notice(desk, c4["case_id"], beta, "harassment")
    loaded.identifiers += [n2.id, n2.reference]
    clock.set(at(17, 14, 30))
    await _move_notice(desk, n1.id, "honoured")
    await _move_handover(desk, handover.id, H.downloaded)
    clock.set(at(18, 11))
    await _move_notice(desk, n2.id, "no_response")
    clock.set(at(18, 13))
    await _move_notice(desk, n2.id, "honoured")
    await supervisor.act(c4["case_id"], "claim")
    await supervisor.act(c4["case_id"], "close", {"outcome": "advice_only"})
    return loaded
