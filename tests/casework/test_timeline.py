"""The timeline of a case through the real app: messages, notes, evidence and events merged
oldest first, each with who did it; bounded by `?limit=`; audited; refused to outsiders."""

from __future__ import annotations

import json

import httpx

from helpline.cases.models import CaseEvent
from helpline.core.clock import FrozenClock
from helpline.core.crypto import Keyring, MasterKeys, case_scope
from helpline.core.db import Database
from helpline.core.ids import new_id
from helpline.staff.models import Role, Staff
from tests.casework.conftest import audit_lines, case_id_of
from tests.conftest import TEST_MASTER_KEY
from tests.intake.chatkit import StaffMember, Victim
from tests.live import LiveServer


async def add_event(
    db: Database,
    clock: FrozenClock,
    case_id: str,
    *,
    actor: str,
    kind: str,
    details: dict[str, object],
    text: str | None = None,
) -> str:
    """A case event as the triage code writes one (staff text encrypted under the case key)."""
    event_id = new_id()
    async with db.transaction() as session:
        sealed = None
        if text is not None:
            keyring = Keyring(MasterKeys.from_keys([TEST_MASTER_KEY]), clock)
            cipher = await keyring.cipher(session, case_scope(case_id))
            sealed = cipher.encrypt(text, table="case_events", row_id=event_id, field="text")
        session.add(
            CaseEvent(
                id=event_id,
                case_id=case_id,
                at=clock.now(),
                actor=actor,
                kind=kind,
                details=json.dumps(details),
                text=sealed,
            )
        )
    return event_id


async def rename(db: Database, staff_id: str, name: str) -> None:
    async with db.transaction() as session:
        member = await session.get(Staff, staff_id)
        assert member is not None
        member.display_name = name


async def test_the_timeline_merges_everything_oldest_first(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "anouk")
    await rename(db, agent.id, "Anouk")
    victim_chat = await victim.chat(server.ws_url)
    try:
        clock.advance(seconds=10)
        await victim_chat.say("Iemand dreigt mijn foto's te delen.")
        clock.advance(seconds=10)
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(server.ws_url, case_id)
        await staff_chat.say("Wat naar. Ik help je.")
        await staff_chat.close()
        clock.advance(seconds=10)
        note = await agent.post(
            f"/api/staff/cases/{case_id}/notes", json={"text": "Vraagt €500 in bitcoin."}
        )
        clock.advance(seconds=10)
        async with httpx.AsyncClient(base_url=server.url) as http:
            upload = await http.post(
                "/api/chat/evidence/files",
                files={"file": ("chat.txt", b"dader: betaal of ik post het\n")},
                headers={"Authorization": f"Bearer {victim.token}"},
            )
        assert upload.status_code == 201, upload.text
        clock.advance(seconds=10)
        status_event = await add_event(
            db,
            clock,
            case_id,
            actor=f"staff:{agent.id}",
            kind="transfer",
            details={"to": None, "warm": False},
            text="Slachtoffer is 16, zedenrecherche?",
        )
        clock.advance(seconds=10)
        breach = await add_event(
            db, clock, case_id, actor="system", kind="sla_breach", details={"kind": "next"}
        )

        answer = await agent.http.get(f"/api/staff/cases/{case_id}/timeline")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["truncated"] is False
        # besides the events the triage code writes itself (a claim, say)
        ours = {status_event, breach}
        entries = [e for e in body["entries"] if e["kind"] != "event" or e["id"] in ours]
        ats = [e["at"] for e in body["entries"]]
        assert ats == sorted(ats)
        assert [e["kind"] for e in entries] == [
            "message",
            "message",
            "note",
            "evidence",
            "event",
            "event",
        ]
        assert len({e["at"] for e in entries}) == len(entries)
        anouk = {"kind": "staff", "id": agent.id, "name": "Anouk"}

        said, answered, noted, item, transfer, system = entries
        assert (said["text"], said["seq"], said["actor"]) == (
            "Iemand dreigt mijn foto's te delen.",
            1,
            {"kind": "victim"},
        )
        assert (answered["text"], answered["seq"], answered["actor"]) == (
            "Wat naar. Ik help je.",
            2,
            anouk,
        )
        assert noted == {
            "kind": "note",
            "id": note.json()["id"],
            "text": "Vraagt €500 in bitcoin.",
            "at": note.json()["at"],
            "actor": anouk,
        }
        # evidence: what it is and who brought it, never its content or name
        assert item["id"] == upload.json()["id"]
        assert item["actor"] == {"kind": "victim"}
        assert (item["item_kind"], item["media_type"], item["status"]) == (
            "file",
            "text/plain; charset=utf-8",
            "stored",
        )
        assert "betaal" not in json.dumps(item) and "chat.txt" not in json.dumps(item)
        assert transfer == {
            "kind": "event",
            "id": status_event,
            "event": "transfer",
            "details": {"to": None, "warm": False},
            "text": "Slachtoffer is 16, zedenrecherche?",
            "at": transfer["at"],
            "actor": anouk,
        }
        assert (system["id"], system["actor"], system["text"]) == (
            breach,
            {"kind": "system"},
            None,
        )

        [opened] = [
            line
            for line in await audit_lines(db, "case.open")
            if json.loads(line.details) == {"via": "timeline"}
        ]
        assert (opened.actor, opened.target) == (f"staff:{agent.id}", f"case:{case_id}")
    finally:
        await victim_chat.close()
        await agent.close()


async def test_the_timeline_is_bounded_by_limit(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "bram", Role.supervisor)
    try:
        case_id = await case_id_of(db, victim.reference)  # unclaimed: no claim event
        for index in range(5):
            clock.advance(seconds=1)
            await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": f"n{index}"})
        path = f"/api/staff/cases/{case_id}/timeline"

        newest = (await agent.http.get(path, params={"limit": 2})).json()
        assert [e["text"] for e in newest["entries"]] == ["n3", "n4"]  # the newest, in order
        assert newest["truncated"] is True
        everything = (await agent.http.get(path, params={"limit": 5})).json()
        assert [e["text"] for e in everything["entries"]] == [f"n{i}" for i in range(5)]
        assert everything["truncated"] is False
        for bad in ("0", "-1", "abc", "5001", "2.5"):
            refused = await agent.http.get(path, params={"limit": bad})
            assert refused.status_code == 422, bad
            assert "limit" in refused.json()["error"]["message"]
    finally:
        await agent.close()


async def test_an_empty_case_has_an_empty_timeline(server: LiveServer, db: Database) -> None:
    victim = await Victim(server.url).start()
    supervisor = await StaffMember.create(db, server.url, "carla", Role.supervisor)
    try:
        case_id = await case_id_of(db, victim.reference)  # not claimed: a supervisor may look
        answer = await supervisor.http.get(f"/api/staff/cases/{case_id}/timeline")
        assert answer.json() == {"entries": [], "truncated": False}
    finally:
        await supervisor.close()


async def test_outsiders_do_not_see_the_timeline(server: LiveServer, db: Database) -> None:
    victim = await Victim(server.url).start()
    owner = await StaffMember.create(db, server.url, "dirk")
    colleague = await StaffMember.create(db, server.url, "eva")
    try:
        case_id = await owner.claim(victim.reference)
        path = f"/api/staff/cases/{case_id}/timeline"
        assert (await owner.http.get(path)).status_code == 200
        assert (await colleague.http.get(path)).status_code == 403
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            assert (await anonymous.get(path)).status_code == 401
            bearer = {"Authorization": f"Bearer {victim.token}"}
            assert (await anonymous.get(path, headers=bearer)).status_code == 401
        assert (await owner.http.get("/api/staff/cases/nope/timeline")).status_code == 404
    finally:
        await owner.close()
        await colleague.close()


async def test_messages_keep_their_sender_when_staff_change(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    """Two staff members wrote in one case: each message names its own author."""
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "femke")
    supervisor = await StaffMember.create(db, server.url, "gijs", Role.supervisor)
    try:
        case_id = await agent.claim(victim.reference)
        for member, text in ((agent, "eerst ik"), (supervisor, "nu ik")):
            clock.advance(seconds=1)
            chat = await member.chat(server.ws_url, case_id)
            await chat.say(text)
            await chat.close()
        entries = (await supervisor.http.get(f"/api/staff/cases/{case_id}/timeline")).json()
        messages = [e for e in entries["entries"] if e["kind"] == "message"]
        assert [(e["text"], e["actor"]["name"]) for e in messages] == [
            ("eerst ik", "femke"),
            ("nu ik", "gijs"),
        ]
    finally:
        await agent.close()
        await supervisor.close()
