"""Canned responses through the real app: supervisors write them (validated, audited),
agents list them raw and get them filled in for a case, the case's language first."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from helpline.core.clock import FrozenClock
from helpline.core.db import Database
from helpline.staff.canned_defaults import DEFAULTS, seed_canned_responses
from helpline.staff.models import Role, Staff
from tests.casework.conftest import audit_lines, case_id_of
from tests.intake.chatkit import StaffMember, Victim
from tests.live import LiveServer

GREETING = {
    "language": "nl",
    "title": "Begroeting",
    "body": "Hoi, ik ben {agent_name} van {helpline_name}. Je code is {reference}.",
}


@pytest.fixture
async def supervisor(server: LiveServer, db: Database) -> Any:
    member = await StaffMember.create(db, server.url, "sanne", Role.supervisor)
    yield member
    await member.close()


@pytest.fixture
async def agent(server: LiveServer, db: Database) -> Any:
    member = await StaffMember.create(db, server.url, "gijs")
    yield member
    await member.close()


async def test_a_supervisor_writes_and_agents_read_canned_responses(
    server: LiveServer, db: Database, clock: FrozenClock, supervisor: Any, agent: Any
) -> None:
    created = await supervisor.post("/api/staff/canned", json=GREETING)
    assert created.status_code == 201, created.text
    response = created.json()
    assert {k: response[k] for k in ("language", "title", "body")} == GREETING
    assert response["updated_at"] == clock.now().isoformat()

    listed = (await agent.http.get("/api/staff/canned")).json()
    assert listed["responses"] == [response]
    assert listed["placeholders"] == ["reference", "agent_name", "helpline_name", "opening_hours"]

    clock.advance(minutes=5)
    changed = {"language": "en", "title": "  Greeting ", "body": "Hi, I'm {agent_name}."}
    updated = await supervisor.http.put(
        f"/api/staff/canned/{response['id']}", json=changed, headers=supervisor.headers()
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["title"] == "Greeting"  # trimmed
    assert updated.json()["updated_at"] == clock.now().isoformat()
    [shown] = (await agent.http.get("/api/staff/canned")).json()["responses"]
    assert (shown["language"], shown["body"]) == ("en", "Hi, I'm {agent_name}.")

    deleted = await supervisor.http.delete(
        f"/api/staff/canned/{response['id']}", headers=supervisor.headers()
    )
    assert deleted.status_code == 200
    assert (await agent.http.get("/api/staff/canned")).json()["responses"] == []
    again = await supervisor.http.delete(
        f"/api/staff/canned/{response['id']}", headers=supervisor.headers()
    )
    assert again.status_code == 404

    for action in ("canned.create", "canned.update", "canned.delete"):
        [line] = await audit_lines(db, action)
        assert (line.actor, line.target) == (f"staff:{supervisor.id}", f"canned:{response['id']}")
        assert "Hi" not in line.details and "Hoi" not in line.details


async def test_agents_and_outsiders_cannot_change_canned_responses(
    server: LiveServer, supervisor: Any, agent: Any
) -> None:
    existing = (await supervisor.post("/api/staff/canned", json=GREETING)).json()
    path = f"/api/staff/canned/{existing['id']}"
    assert (await agent.post("/api/staff/canned", json=GREETING)).status_code == 403
    assert (await agent.http.put(path, json=GREETING, headers=agent.headers())).status_code == 403
    assert (await agent.http.delete(path, headers=agent.headers())).status_code == 403
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert (await anonymous.get("/api/staff/canned")).status_code == 401
        assert (await anonymous.post("/api/staff/canned", json=GREETING)).status_code == 401
        assert (await anonymous.delete(path)).status_code == 401
    # a supervisor's write without the CSRF token is refused too
    forged = await supervisor.http.post(
        "/api/staff/canned", json=GREETING, headers={"Origin": server.url}
    )
    assert forged.status_code == 403
    [still] = (await agent.http.get("/api/staff/canned")).json()["responses"]
    assert still == existing
    missing = await supervisor.http.put(
        "/api/staff/canned/nope", json=GREETING, headers=supervisor.headers()
    )
    assert missing.status_code == 404


BAD = [
    ({"body": "Hoi {naam}"}, 400, "unknown_placeholder", "{naam}"),
    ({"body": "{reference.__class__}"}, 400, "unknown_placeholder", "{reference.__class__}"),
    ({"body": "{reference[0]}"}, 400, "unknown_placeholder", "{reference[0]}"),
    ({"body": "{0} en {}"}, 400, "unknown_placeholder", "{0}"),
    ({"body": "{reference:>40}"}, 400, "bad_template", "without a format"),
    ({"body": "{reference!r}"}, 400, "bad_template", "without a format"),
    ({"body": "een } los"}, 400, "bad_template", "{{ or }}"),
    ({"body": "een { los"}, 400, "bad_template", "{{ or }}"),
    ({"language": "de"}, 422, "invalid", "language"),
    ({"title": "  "}, 422, "invalid", "title"),
    ({"title": "t" * 121}, 422, "invalid", "title"),
    ({"body": ""}, 422, "invalid", "body"),
    ({"body": "b" * 4001}, 422, "invalid", "body"),
    ({"updated_by": "staff:x"}, 422, "invalid", "updated_by"),
]


async def test_bad_canned_responses_are_refused_clearly(supervisor: Any) -> None:
    existing = (await supervisor.post("/api/staff/canned", json=GREETING)).json()
    for change, status, code, says in BAD:
        body = {**GREETING, **change}
        created = await supervisor.post("/api/staff/canned", json=body)
        updated = await supervisor.http.put(
            f"/api/staff/canned/{existing['id']}", json=body, headers=supervisor.headers()
        )
        for answer in (created, updated):
            assert answer.status_code == status, (change, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, change
            assert says in error["message"], change
            if code == "unknown_placeholder":
                assert "{" + error["details"]["placeholder"] + "}" == says
    listed = (await supervisor.http.get("/api/staff/canned")).json()["responses"]
    assert listed == [existing]  # nothing was stored or changed
    fine = {**GREETING, "body": "Letterlijk {{reference}}, en {reference}."}
    assert (await supervisor.post("/api/staff/canned", json=fine)).status_code == 201


async def test_canned_responses_are_filled_in_for_the_case(
    server: LiveServer, db: Database, supervisor: Any, agent: Any
) -> None:
    async with db.transaction() as session:
        member = await session.get(Staff, agent.id)
        assert member is not None
        member.display_name = "Gijs {reference}"  # a value is never read as a template
    written = [
        GREETING,
        {"language": "en", "title": "Hours", "body": "We're open {opening_hours}. {{sic}}"},
        {"language": "en", "title": "Code", "body": "Your code: {reference} ({helpline_name})"},
    ]
    for body in written:
        assert (await supervisor.post("/api/staff/canned", json=body)).status_code == 201
    victim = await Victim(server.url).start(language="en")
    case_id = await agent.claim(victim.reference)

    answer = await agent.http.get(f"/api/staff/cases/{case_id}/canned")
    assert answer.status_code == 200, answer.text
    responses = answer.json()["responses"]
    assert [(r["language"], r["title"]) for r in responses] == [
        ("en", "Code"),
        ("en", "Hours"),
        ("nl", "Begroeting"),
    ]
    assert set(responses[0]) == {"id", "language", "title", "text"}
    code, hours, greeting = (r["text"] for r in responses)
    assert code == f"Your code: {victim.reference} (Helpline)"
    assert hours == "We're open Mon–Sun 00:00–24:00. {sic}"
    assert (
        greeting == f"Hoi, ik ben Gijs {{reference}} van Helpline. Je code is {victim.reference}."
    )

    # the colleague who does not have the case gets nothing for it
    other = await StaffMember.create(db, server.url, "femke")
    try:
        assert (await other.http.get(f"/api/staff/cases/{case_id}/canned")).status_code == 403
    finally:
        await other.close()
    # a Dutch case gets the Dutch ones first
    dutch = await Victim(server.url).start(language="nl")
    dutch_id = await case_id_of(db, dutch.reference)
    firsts = (await supervisor.http.get(f"/api/staff/cases/{dutch_id}/canned")).json()
    assert [r["language"] for r in firsts["responses"]] == ["nl", "en", "en"]


async def test_the_seeded_defaults_fill_in_completely(
    server: LiveServer, db: Database, clock: FrozenClock, agent: Any
) -> None:
    async with db.transaction() as session:
        assert await seed_canned_responses(session, clock) == len(DEFAULTS)
    victim = await Victim(server.url).start()
    case_id = await agent.claim(victim.reference)
    responses = (await agent.http.get(f"/api/staff/cases/{case_id}/canned")).json()["responses"]
    assert len(responses) == len(DEFAULTS)
    assert [r["language"] for r in responses] == ["nl"] * 7 + ["en"] * 7
    for response in responses:
        assert "{" not in response["text"] and "}" not in response["text"], response["title"]
    closing = next(r["text"] for r in responses if r["title"] == "Afsluiting")
    assert victim.reference in closing and "ma–zo 00:00–24:00" in closing
    assert json.dumps(responses).count("gijs") == 2  # the two greetings
