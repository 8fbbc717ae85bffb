"""Private notes through the real app: written, read back, encrypted at rest, audited,
announced to consoles, refused to those who may not see the case, and never shown to the
victim in any endpoint or chat frame."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from helpline.cases.models import CaseNote
from helpline.cases.service import ACTIVITY_CHANNEL
from helpline.core.clock import FrozenClock
from helpline.core.crypto import Keyring, MasterKeys, case_scope
from helpline.core.db import Database
from helpline.staff.models import Role
from tests.casework.conftest import audit_lines, bus_of, case_id_of
from tests.conftest import TEST_MASTER_KEY
from tests.intake.chatkit import ChatClient, StaffMember, Victim
from tests.live import LiveServer


async def test_an_agent_writes_notes_and_reads_them_back(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "anouk")
    try:
        case_id = await agent.claim(victim.reference)
        first = await agent.post(
            f"/api/staff/cases/{case_id}/notes", json={"text": "  Dreigt morgen te publiceren.  "}
        )
        assert first.status_code == 201, first.text
        note = first.json()
        assert note["text"] == "Dreigt morgen te publiceren."  # trimmed
        assert note["by"] == {"id": agent.id, "name": "anouk"}
        assert note["at"] == clock.now().isoformat()
        clock.advance(seconds=5)
        await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": "Wil aangifte doen."})

        listed = await agent.http.get(f"/api/staff/cases/{case_id}/notes")
        assert listed.status_code == 200
        notes = listed.json()["notes"]
        assert [n["text"] for n in notes] == ["Dreigt morgen te publiceren.", "Wil aangifte doen."]
        assert notes[0]["id"] == note["id"]
        assert set(notes[0]) == {"id", "text", "by", "at"}
    finally:
        await agent.close()


async def test_a_note_is_encrypted_at_rest_and_audited_without_its_text(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "bram")
    try:
        case_id = await agent.claim(victim.reference)
        secret = f"Naam dader: Jan {uuid.uuid4().hex}"
        answer = await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": secret})
        note_id = answer.json()["id"]
        await agent.http.get(f"/api/staff/cases/{case_id}/notes")
    finally:
        await agent.close()

    async with db.transaction() as session:
        row = (await session.execute(select(CaseNote))).scalar_one()
        assert secret.encode() not in row.body and b"Jan" not in row.body
        keyring = Keyring(MasterKeys.from_keys([TEST_MASTER_KEY]))
        cipher = await keyring.cipher(session, case_scope(case_id), create=False)
        opened = cipher.decrypt_text(row.body, table="case_notes", row_id=note_id, field="body")
        assert opened == secret
        assert (row.case_id, row.staff_id) == (case_id, agent.id)

    [written] = await audit_lines(db, "case.note")
    assert (written.actor, written.target) == (f"staff:{agent.id}", f"case:{case_id}")
    assert json.loads(written.details) == {"note": note_id}
    opened_lines = await audit_lines(db, "case.open")
    assert [json.loads(line.details) for line in opened_lines] == [{"via": "notes"}]
    assert opened_lines[0].actor == f"staff:{agent.id}"


async def test_consoles_hear_that_the_case_changed_after_a_note(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "carla")
    try:
        case_id = await agent.claim(victim.reference)
        async with bus_of(server).subscribe(ACTIVITY_CHANNEL) as heard:
            refused = await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": " "})
            assert refused.status_code == 422
            await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": "Gebeld."})
            # the refused note announced nothing: the first frame is the stored one's
            assert await heard.get(timeout=5) == {"type": "case_changed", "case_id": case_id}
            with pytest.raises(TimeoutError):
                await heard.get(timeout=0.3)
    finally:
        await agent.close()


async def test_a_console_hears_about_the_note_over_its_websocket(
    server: LiveServer, db: Database
) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "ilse")
    supervisor = await StaffMember.create(db, server.url, "joost", Role.supervisor)
    cookies = "; ".join(f"{k}={v}" for k, v in supervisor.http.cookies.items())
    try:
        case_id = await agent.claim(victim.reference)
        async with connect(
            f"{server.ws_url}/ws/console",
            additional_headers={"Cookie": cookies, "Origin": server.url},
        ) as console:
            # a pong means the socket listens: it subscribed before it started reading
            await console.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(10):
                while json.loads(await console.recv()).get("type") != "pong":
                    pass
            await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": "Terugbellen."})
            async with asyncio.timeout(10):
                while True:
                    frame = json.loads(await console.recv())
                    if frame.get("type") == "case_changed":
                        break
            assert frame == {"type": "case_changed", "case_id": case_id}
    finally:
        await agent.close()
        await supervisor.close()


BAD_NOTES = [
    ({"text": ""}, "at least 1"),
    ({"text": " \n\t "}, "at least 1"),
    ({"text": "x" * 4001}, "at most 4000"),
    ({"text": "ok", "by": "someone"}, "by"),
    ({}, "text"),
    ({"text": 12}, "string"),
]


async def test_bad_notes_get_a_clear_error(server: LiveServer, db: Database) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "dirk")
    try:
        case_id = await agent.claim(victim.reference)
        path = f"/api/staff/cases/{case_id}/notes"
        for body, says in BAD_NOTES:
            answer = await agent.post(path, json=body)
            assert answer.status_code == 422, body
            assert answer.json()["error"]["code"] == "invalid"
            assert says in answer.json()["error"]["message"], body
        not_json = await agent.post(path, content=b"{text")
        assert not_json.status_code == 422
        longest = await agent.post(path, json={"text": "  " + "y" * 4000 + "  "})
        assert longest.status_code == 201 and longest.json()["text"] == "y" * 4000
        notes = (await agent.http.get(path)).json()["notes"]
        assert len(notes) == 1
    finally:
        await agent.close()


async def test_only_the_assigned_agent_and_supervisors_see_notes(
    server: LiveServer, db: Database, clock: FrozenClock
) -> None:
    victim = await Victim(server.url).start()
    waiting = await Victim(server.url).start()
    owner = await StaffMember.create(db, server.url, "eva")
    colleague = await StaffMember.create(db, server.url, "femke")
    supervisor = await StaffMember.create(db, server.url, "gijs", Role.supervisor)
    try:
        case_id = await owner.claim(victim.reference)
        await owner.post(f"/api/staff/cases/{case_id}/notes", json={"text": "Eerste notitie."})
        path = f"/api/staff/cases/{case_id}/notes"

        assert (await colleague.http.get(path)).status_code == 403
        written = await colleague.post(path, json={"text": "mag niet"})
        assert written.status_code == 403
        # nor a case in the queue that nobody has claimed yet
        unclaimed = await case_id_of(db, waiting.reference)
        assert (await colleague.http.get(f"/api/staff/cases/{unclaimed}/notes")).status_code == 403

        seen = await supervisor.http.get(path)
        assert seen.status_code == 200
        assert [n["text"] for n in seen.json()["notes"]] == ["Eerste notitie."]
        clock.advance(seconds=1)
        added = await supervisor.post(path, json={"text": "Supervisor kijkt mee."})
        assert added.status_code == 201
        assert (await owner.http.get(path)).json()["notes"][1]["by"]["name"] == "gijs"

        missing = await supervisor.http.get("/api/staff/cases/nosuchcase/notes")
        assert missing.status_code == 404
        # a write without the CSRF token is refused, whoever sends it
        no_csrf = await owner.http.post(path, json={"text": "x"}, headers={"Origin": server.url})
        assert (no_csrf.status_code, no_csrf.json()["error"]["code"]) == (403, "csrf")
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            assert (await anonymous.get(path)).status_code == 401
            assert (await anonymous.post(path, json={"text": "x"})).status_code == 401
        assert len((await owner.http.get(path)).json()["notes"]) == 2
    finally:
        for member in (owner, colleague, supervisor):
            await member.close()


async def drain(chat: ChatClient) -> None:
    """Read whatever else the socket has to say (into `chat.frames`) until it is quiet."""
    while True:
        try:
            await chat.next_frame(timeout=0.3)
        except TimeoutError:
            return


async def test_a_note_never_reaches_the_victim(server: LiveServer, db: Database) -> None:
    victim = await Victim(server.url).start()
    agent = await StaffMember.create(db, server.url, "hanna")
    marker = f"PRIVENOTITIE-{uuid.uuid4().hex}"
    victim_chat = await victim.chat(server.ws_url)
    try:
        await victim_chat.say("Iemand chanteert me.")
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(server.ws_url, case_id)
        added = await agent.post(f"/api/staff/cases/{case_id}/notes", json={"text": marker})
        assert added.status_code == 201
        # the chat goes on: the victim's next frames end with the agent's reply, and none of
        # them (joined, the reply, anything else) carries the note
        await staff_chat.say("Ik ben er. Vertel maar.")
        await victim_chat.wait_for(lambda f: f["type"] == "message" and f["from"] == "staff")
        await drain(victim_chat)
        await staff_chat.close()
        live_frames = json.dumps(victim_chat.frames)

        # coming back: welcome and the whole history
        again = await victim.chat(server.ws_url, after=0)
        history = await again.messages(2)
        assert [m["from"] for m in history] == ["victim", "staff"]
        await drain(again)
        replay = json.dumps([again.welcome, *history, *again.frames])
        await again.close()

        bearer = {"Authorization": f"Bearer {victim.token}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            answers = [
                await http.get("/api/chat/evidence", headers=bearer),
                await http.get("/api/chat/info"),
                await http.post(
                    "/api/chat/resume",
                    json={"reference": victim.reference, "passphrase": victim.passphrase},
                ),
            ]
            # a victim's token does not open the notes, for reading or writing
            for method in ("GET", "POST"):
                refused = await http.request(
                    method,
                    f"/api/staff/cases/{case_id}/notes",
                    headers=bearer,
                    json={"text": "x"} if method == "POST" else None,
                )
                assert refused.status_code == 401
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        for text in (live_frames, replay, *(a.text for a in answers)):
            assert marker not in text

        # the note is there for staff (so its absence above means something)
        notes = (await agent.http.get(f"/api/staff/cases/{case_id}/notes")).json()["notes"]
        assert [n["text"] for n in notes] == [marker]
    finally:
        await victim_chat.close()
        await agent.close()
