"""Claiming is atomic: 20 agents race for 100 new cases through the real HTTP endpoint on a real
uvicorn server over PostgreSQL, and every case is claimed exactly once.

PostgreSQL only (SQLite serialises all writers, so it cannot show a race); skipped with a
message when HELPLINE_TEST_DATABASE_URL is unset, as CI sets it. Passwords and passphrases are
hashed at a tiny Argon2 cost (tests/triage/conftest.py); the logins and claims are the app's.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.models import Case, CaseStatus
from helpline.cases.service import start_chat
from helpline.core.audit import verify
from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.core.models import AuditEntry
from tests.intake.chatkit import StaffMember
from tests.live import free_port, live_server

CASES = 100
AGENTS = 20
IN_FLIGHT_PER_AGENT = 5  # each agent keeps several claims open at once, like several tabs


@dataclass(frozen=True)
class Attempt:
    case_id: str
    agent_id: str
    status: int
    body: dict[str, Any]


async def new_cases(db: Database, count: int) -> list[str]:
    clock = SystemClock()
    async with db.transaction() as session:
        made = [await start_chat(session, clock, language="nl", topic=None) for _ in range(count)]
        return [receipt.case.id for receipt in made]


async def race(agents: list[StaffMember], case_ids: list[str]) -> list[Attempt]:
    """Every agent claims every case, all at once: each case gets its 20 claims within moments
    of each other."""
    start = asyncio.Event()
    attempts: list[Attempt] = []

    async def agent_claims(agent: StaffMember) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT_PER_AGENT)

        async def claim(case_id: str) -> None:
            async with gate:
                # 2,000 requests to one in-process server on a busy machine: be patient
                answer = await agent.post(f"/api/staff/cases/{case_id}/claim", timeout=120)
            attempts.append(Attempt(case_id, agent.id, answer.status_code, answer.json()))

        await start.wait()
        await asyncio.gather(*(claim(case_id) for case_id in case_ids))

    racers = [asyncio.create_task(agent_claims(agent)) for agent in agents]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*racers)
    return attempts


@pytest.mark.slow  # 2,000 requests: ~12 s on a quiet machine
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_twenty_agents_racing_for_a_hundred_cases_claim_each_exactly_once(
    settings_for: Any, database_url: str, db: Database
) -> None:
    port = free_port()
    settings = settings_for(database_url, base_url=f"http://127.0.0.1:{port}")
    case_ids = await new_cases(db, CASES)
    async with live_server(settings, port=port) as server:
        agents = list(
            await asyncio.gather(
                *(StaffMember.create(db, server.url, f"racer-{i:02d}") for i in range(AGENTS))
            )
        )
        try:
            attempts = await race(agents, case_ids)
        finally:
            for agent in agents:
                await agent.close()

    # every claim was answered: one 200 per case, 409 already_claimed for all the others
    assert len(attempts) == CASES * AGENTS
    odd = [a for a in attempts if a.status not in (200, 409)]
    assert not odd, f"claims answered neither 200 nor 409: {odd[:5]}"
    assert {a.body["error"]["code"] for a in attempts if a.status == 409} == {"already_claimed"}
    wins = [a for a in attempts if a.status == 200]
    per_case = Counter(a.case_id for a in wins)
    assert set(per_case) == set(case_ids), "some cases were never claimed"
    doubled = {case_id: n for case_id, n in per_case.items() if n != 1}
    assert not doubled, (
        f"{len(doubled)} cases claimed more than once, e.g. {list(doubled.items())[:3]}"
    )
    winner = {a.case_id: a.agent_id for a in wins}
    for a in wins:
        assert a.body["assigned_to"]["id"] == a.agent_id
        assert a.body["status"] == CaseStatus.in_conversation.value
    tries = Counter(a.case_id for a in attempts)
    assert set(tries.values()) == {AGENTS}

    async with db.transaction() as session:
        # the database agrees: each case is with the agent whose claim succeeded
        cases = (
            (await session.execute(select(Case).where(col(Case.id).in_(case_ids)))).scalars().all()
        )
        assert {c.id: c.assigned_staff_id for c in cases} == winner
        assert {c.status for c in cases} == {CaseStatus.in_conversation.value}
        assert all(c.claimed_at is not None for c in cases)

        # and the audit log has one `case.claim` per case, by that agent, in an intact chain
        claims = (
            (
                await session.execute(
                    select(AuditEntry).where(col(AuditEntry.action) == "case.claim")
                )
            )
            .scalars()
            .all()
        )
        logged: dict[str, list[str]] = defaultdict(list)
        for line in claims:
            assert line.target is not None and line.target.startswith("case:")
            logged[line.target.removeprefix("case:")].append(line.actor)
        assert logged == {case_id: [f"staff:{winner[case_id]}"] for case_id in case_ids}
        assert await verify(session) == []
