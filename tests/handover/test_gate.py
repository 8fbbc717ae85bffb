"""Default deny, in code: `gate.authorise` refuses every handover whose consent does not cover
exactly what would be shared, with whom — each refusal reason, proven on real rows made
through the real endpoints (and then changed underneath, where an attacker or a bug would)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pyrage import x25519

from helpline.handover import gate
from helpline.handover.models import Handover, HandoverConsent, Partner
from tests.handover.conftest import Cast, Scene


async def refusal(scene: Scene, handover_id: str) -> str | None:
    """None if authorised, else the reason of the refusal."""
    async with scene.services.db.transaction() as session:
        handover = await session.get(Handover, handover_id)
        assert handover is not None
        try:
            authorised = await gate.authorise(session, handover, scene.clock.now())
        except gate.ConsentMissing as exc:
            assert exc.code == "consent_required" and exc.status == 409
            return exc.reason
        assert authorised.handover.id == handover_id
        return None


async def change(scene: Scene, model: Any, row_id: str, **values: Any) -> None:
    async with scene.services.db.transaction() as session:
        row = await session.get(model, row_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)


async def consented(scene: Scene, cast: Cast, **kwargs: Any) -> dict[str, Any]:
    handover, victim = await scene.proposal(cast, **kwargs)
    answer = await scene.victim_says(victim, handover["id"])
    assert answer.status_code == 200, answer.text
    return handover


async def test_a_valid_chat_consent_is_authorised(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast)
    assert await refusal(scene, handover["id"]) is None


async def test_a_delivered_handover_is_authorised_only_for_a_new_link(
    scene: Scene, cast: Cast
) -> None:
    handover = await consented(scene, cast)
    await change(scene, Handover, handover["id"], status="delivered")
    assert await refusal(scene, handover["id"]) == "status"  # never sent a second time
    [given] = await scene.consents(handover["id"])
    async with scene.services.db.transaction() as session:
        row = await session.get(Handover, handover["id"])
        assert row is not None
        relinked = await gate.authorise(session, row, scene.clock.now(), relink=True)
        assert relinked.handover is row  # the row itself, not a copy
        # and relinking still needs everything else: here, a withdrawn consent
        consent = await session.get(HandoverConsent, given.id)
        assert consent is not None
        consent.withdrawn_at = scene.clock.now()
        try:
            await gate.authorise(session, row, scene.clock.now(), relink=True)
        except gate.ConsentMissing as exc:
            assert exc.reason == "withdrawn"
        else:
            raise AssertionError("a withdrawn consent was authorised for a new link")


async def test_without_an_answer_nothing_is_authorised(scene: Scene, cast: Cast) -> None:
    handover, _ = await scene.proposal(cast)
    assert await refusal(scene, handover["id"]) == "status"
    # even if the status were changed underneath, there is no consent
    await change(scene, Handover, handover["id"], status="consented")
    assert await refusal(scene, handover["id"]) == "no_consent"


async def test_a_consent_for_fewer_evidence_items_than_proposed_is_refused(
    scene: Scene, cast: Cast
) -> None:
    handover = await consented(scene, cast, items=3)
    row = await scene.handover_row(handover["id"])
    [given] = await scene.consents(handover["id"])
    scope = json.loads(given.scope)
    assert len(scope["evidence"]) == 3
    # the consent says two items, its hash made to match: the proposal has three
    fewer = {**scope, "evidence": scope["evidence"][:2]}
    await change(
        scene,
        HandoverConsent,
        given.id,
        scope=gate.scope_bytes(fewer).decode(),
        scope_sha256=gate.scope_hash(fewer),
    )
    assert await refusal(scene, handover["id"]) == "scope"
    # and the other way round: the proposal grows an item after the consent
    await change(
        scene,
        HandoverConsent,
        given.id,
        scope=gate.scope_bytes(scope).decode(),
        scope_sha256=gate.scope_hash(scope),
    )
    assert await refusal(scene, handover["id"]) is None
    extra = await scene.start_victim()
    await cast.agent.act(extra.case_id, "claim")
    await change(
        scene, Handover, handover["id"], evidence_ids=row.evidence_ids + "," + await extra.upload()
    )
    assert await refusal(scene, handover["id"]) == "scope"


async def test_a_consent_for_another_partner_or_other_parts_is_refused(
    scene: Scene, cast: Cast
) -> None:
    handover = await consented(scene, cast)
    other, _ = await scene.partner(cast.admin, name="CSG")
    await change(scene, Handover, handover["id"], partner_id=other["id"])
    assert await refusal(scene, handover["id"]) == "scope"
    await change(scene, Handover, handover["id"], partner_id=handover["partner"]["id"])
    assert await refusal(scene, handover["id"]) is None
    await change(scene, Handover, handover["id"], parts="summary,categories,timeline,evidence")
    assert await refusal(scene, handover["id"]) == "scope"
    await change(
        scene, Handover, handover["id"], parts="summary,categories,timeline,contact,evidence"
    )
    await change(scene, Handover, handover["id"], contact_method="email")
    assert await refusal(scene, handover["id"]) == "scope"


async def test_a_withdrawn_or_declined_consent_is_refused(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast)
    [given] = await scene.consents(handover["id"])
    await change(scene, HandoverConsent, given.id, withdrawn_at=scene.clock.now())
    assert await refusal(scene, handover["id"]) == "withdrawn"
    await change(scene, HandoverConsent, given.id, withdrawn_at=None, decision="declined")
    assert await refusal(scene, handover["id"]) == "declined"

    other, victim = await scene.proposal(cast, name="CSG")
    assert (await scene.victim_says(victim, other["id"])).status_code == 200
    withdrawn = await victim.post(f"/api/chat/handovers/{other['id']}/withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    assert await refusal(scene, other["id"]) == "status"
    await change(scene, Handover, other["id"], status="consented")  # even then
    assert await refusal(scene, other["id"]) == "withdrawn"


async def test_an_expired_consent_is_refused(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast)
    hours = scene.services.settings.handover_consent_hours
    scene.clock.advance(timedelta(hours=hours) - timedelta(seconds=1))
    assert await refusal(scene, handover["id"]) is None
    scene.clock.advance(timedelta(seconds=1))
    assert await refusal(scene, handover["id"]) == "expired"


async def test_a_verbal_consent_counts_only_once_a_colleague_confirmed_it(
    scene: Scene, cast: Cast
) -> None:
    handover, _ = await scene.proposal(cast)
    shown = (await cast.agent.get(f"/api/staff/handovers/{handover['id']}")).json()
    recorded = await cast.agent.post(
        f"/api/staff/handovers/{handover['id']}/consent",
        {"method": "verbal", "decision": "accepted", "text_sha256": shown["consent_text_sha256"]},
    )
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["status"] == "proposed"
    assert recorded.json()["consent"]["confirmed"] is False
    assert await refusal(scene, handover["id"]) == "status"
    await change(scene, Handover, handover["id"], status="consented")  # skipping the colleague
    assert await refusal(scene, handover["id"]) == "unconfirmed"
    [given] = await scene.consents(handover["id"])
    await change(scene, HandoverConsent, given.id, confirmed_by=cast.agent.id)  # the recorder
    assert await refusal(scene, handover["id"]) == "unconfirmed"
    await change(scene, HandoverConsent, given.id, confirmed_by=None)
    await change(scene, Handover, handover["id"], status="proposed")

    own = await cast.agent.post(f"/api/staff/handovers/{handover['id']}/consent/confirm")
    assert own.status_code == 403 and own.json()["error"]["code"] == "same_person"
    assert await refusal(scene, handover["id"]) == "status"
    confirmed = await cast.colleague.post(f"/api/staff/handovers/{handover['id']}/consent/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "consented"
    assert confirmed.json()["consent"]["confirmed_by"]["id"] == cast.colleague.id
    assert await refusal(scene, handover["id"]) is None


async def test_the_police_needs_a_supervisors_approval(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast, kind="police", name="Zedenpolitie")
    assert handover["approval_required"] is True
    assert await refusal(scene, handover["id"]) == "approval"
    assert await scene.outbox() == []  # nothing queued before the approval
    refused = await cast.agent.post(f"/api/staff/handovers/{handover['id']}/approve")
    assert refused.status_code == 403
    approved = await cast.supervisor.post(f"/api/staff/handovers/{handover['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert await refusal(scene, handover["id"]) is None
    [entry] = await scene.outbox()
    assert entry.idempotency_key == f"handover:{handover['id']}"


async def test_a_key_changed_after_the_consent_is_refused(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast)
    partner_id = handover["partner"]["id"]
    path = f"/api/staff/partners/{partner_id}/key"
    new = str(x25519.Identity.generate().to_public())
    imported = await cast.admin.post(path, {"recipient": new})
    assert await refusal(scene, handover["id"]) == "partner_key"  # not confirmed yet
    words = imported.json()["key"]["fingerprint"]
    assert (await cast.admin.post(f"{path}/confirm", {"fingerprint": words})).status_code == 200
    # confirmed, but not the key the victim's consent was given for
    assert await refusal(scene, handover["id"]) == "scope"


async def test_an_inactive_partner_or_a_deleted_case_is_refused(scene: Scene, cast: Cast) -> None:
    handover = await consented(scene, cast)
    await change(scene, Partner, handover["partner"]["id"], active=False)
    assert await refusal(scene, handover["id"]) == "partner"
    await change(scene, Partner, handover["partner"]["id"], active=True)
    await change(scene, Handover, handover["id"], case_id=None)
    assert await refusal(scene, handover["id"]) == "case_gone"
