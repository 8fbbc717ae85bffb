"""Statistics: a proposal is counted (`handover`, status `proposed`), as every later status."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from helpline.stats.models import StatCounter
from tests.handover.conftest import Cast, Scene


async def _handover_counts(scene: Scene) -> dict[str, int]:
    async with scene.services.db.transaction() as session:
        rows = await session.execute(
            select(StatCounter).where(col(StatCounter.metric) == "handover")
        )
        return {row.dims: row.count for row in rows.scalars().all()}


async def test_a_proposal_is_counted(scene: Scene, cast: Cast) -> None:
    assert await _handover_counts(scene) == {}
    handover, victim = await scene.proposal(cast, kind="victim_support", name="Slachtofferhulp")
    kind = "partner_kind=victim_support"
    assert await _handover_counts(scene) == {f"{kind};status=proposed": 1}
    answer = await scene.victim_says(victim, handover["id"])
    assert answer.status_code == 200, answer.text
    assert await _handover_counts(scene) == {
        f"{kind};status=proposed": 1,
        f"{kind};status=consented": 1,
    }


async def test_a_refused_proposal_is_not_counted(scene: Scene, cast: Cast) -> None:
    partner, _ = await scene.partner(cast.admin)
    victim = await scene.start_victim()
    await cast.agent.act(victim.case_id, "claim")
    answer = await cast.agent.post(
        f"/api/staff/cases/{victim.case_id}/handovers",
        {"partner_id": partner["id"], "parts": ["summary"], "summary": " "},
    )
    assert answer.status_code == 400
    assert await _handover_counts(scene) == {}
