"""The consent text and the consent records: what the victim reads (in their language, plain
words, deterministic), what a consent row keeps, recorded answers and their confirmation,
and withdrawal until delivery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from helpline.core.clock import as_utc
from helpline.core.crypto import canonical_json
from helpline.handover import consent, gate
from helpline.handover.consent import EvidenceLine, Proposal, build_text, text_hash
from helpline.handover.models import Handover, handover_scope
from helpline.handover.states import Part
from tests.handover.conftest import Cast, Scene

WHEN = datetime(2026, 3, 3, 13, 5, tzinfo=UTC)


def proposal(language: str = "en", parts: list[Part] | None = None) -> Proposal:
    return Proposal(
        language=language,
        partner_name="Fier",
        parts=list(Part) if parts is None else parts,
        summary="Her ex shares her  photos\nin a group chat.",
        category="intimate_images",
        flags=["spreading_now", "minor_involved"],
        contact_method="phone",
        evidence=[
            EvidenceLine("b", "url", None, None, "https://pics.example.org/p/1", WHEN),
            EvidenceLine("a", "file", "image/jpeg", "me.jpg", None, WHEN - timedelta(days=1)),
        ],
        consent_hours=72,
        timezone="Europe/Amsterdam",
    )


def test_the_text_says_what_the_partner_will_and_will_not_receive() -> None:
    text = build_text(proposal())
    assert text.text.splitlines()[0] == "Sharing your information with Fier"
    assert "Fier will receive:" in text.text and "Fier will not receive:" in text.text
    assert text.will_receive == [
        'A short summary we wrote for Fier: "Her ex shares her photos in a group chat."',
        "What happened, in short: intimate images of you that were shared, or are threatened "
        "to be shared, without your consent. Important to know: the images are being spread "
        "right now; someone under 18 is involved.",
        "A list of what happened on your case and when (no chat messages).",
        "How you would like to be contacted: by phone.",
        'Evidence: the picture "me.jpg", saved on 2 March 2026 at 14:05.',
        "Evidence: the link https://pics.example.org/p/1, saved on 3 March 2026 at 14:05.",
    ]
    assert text.will_not_receive == [
        "Any other evidence you sent us.",
        "Our chat conversation: none of your messages.",
        "Notes our team wrote.",
        "Your conversation code and passphrase.",
    ]
    for line in text.will_receive + text.will_not_receive:
        assert f"- {line}" in text.text
    assert "72 hours" in text.text
    assert text.sha256 == text_hash(text.text)


def test_parts_not_chosen_are_listed_as_not_received_in_dutch() -> None:
    text = build_text(proposal("nl", [Part.contact]))
    assert text.title == "Jouw gegevens delen met Fier"
    assert "Fier krijgt:" in text.text and "Fier krijgt niet:" in text.text
    assert text.will_receive == ["Hoe je benaderd wilt worden: telefonisch."]
    assert text.will_not_receive == [
        "Een samenvatting van je verhaal.",
        "Wat er met je is gebeurd en waar we ons zorgen over maken.",
        "Een lijst van wat er met je melding is gebeurd.",
        "Je bewijs (afbeeldingen, bestanden, links).",
        "Ons chatgesprek: geen van je berichten.",
        "Notities van ons team.",
        "Je gesprekscode en wachtwoord.",
    ]
    assert "me.jpg" not in text.text and "photos" not in text.text


def test_the_same_proposal_gives_the_same_text() -> None:
    assert build_text(proposal()).text == build_text(proposal()).text
    assert build_text(proposal()).sha256 != build_text(proposal("nl")).sha256


async def test_a_chat_consent_keeps_the_text_the_scope_and_who_when(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast, language="nl")
    [shown] = await victim.handovers()
    assert shown["text"].startswith("Jouw gegevens delen met Fier")
    assert "screenshot-0.jpg" in shown["text"]  # the evidence items, by name
    answer = await scene.victim_says(victim, handover["id"], contact_details="06 12345678")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "consented"
    [given] = await scene.consents(handover["id"])
    row = await scene.handover_row(handover["id"])
    assert (given.method, given.decision, given.recorded_by) == ("chat", "accepted", "victim")
    assert given.language == "nl" and row.consent_id == given.id
    async with scene.services.db.transaction() as session:
        partner = await session.get(gate.Partner, row.partner_id)
        assert partner is not None
        scope = gate.scope_of(row, partner)
        stored = await consent.read_consent_text(session, scene.services, given)
        details = await consent.read_contact_details(session, scene.services, row)
    assert given.scope == canonical_json(scope).decode() and json.loads(given.scope) == scope
    assert given.scope_sha256 == gate.scope_hash(scope) == row.scope_sha256
    # the exact text shown, then the line with the details the victim typed
    assert stored == shown["text"] + "\n\nJe contactgegevens voor Fier: 06 12345678"
    assert given.text_sha256 == text_hash(stored)
    assert b"06 12345678" not in given.text and b"Fier" not in given.text  # encrypted
    assert details == "06 12345678" and row.contact_details and b"0612" not in row.contact_details
    assert as_utc(given.recorded_at) == scene.clock.now()
    hours = scene.services.settings.handover_consent_hours
    assert as_utc(given.expires_at) == scene.clock.now() + timedelta(hours=hours)
    # under the handover's own key, not the case's
    async with scene.services.db.transaction() as session:
        own = await scene.services.keyring.cipher(session, handover_scope(row.id), create=False)
        assert own.decrypt_text(
            given.text, table="handover_consents", row_id=given.id, field="text"
        )


async def test_an_answer_to_an_old_text_or_a_second_answer_is_refused(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast)
    path = f"/api/chat/handovers/{handover['id']}/consent"
    old = await victim.post(path, {"decision": "accepted", "text_sha256": "0" * 64})
    assert old.status_code == 409 and old.json()["error"]["code"] == "text_changed"
    # the case's category changes the text: the victim must see it again
    [before] = await victim.handovers()
    triaged = await cast.agent.post(
        f"/api/staff/cases/{victim.case_id}/triage",
        {"category": "sextortion", "risk_flags": ["extortion_deadline"]},
    )
    assert triaged.status_code == 200, triaged.text
    stale = await victim.post(path, {"decision": "accepted", "text_sha256": before["text_sha256"]})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "text_changed"
    [after] = await victim.handovers()
    assert "someone gave you a deadline" in after["text"]
    assert (await scene.victim_says(victim, handover["id"], "declined")).status_code == 200
    assert (await scene.handover_row(handover["id"])).status == "declined"
    again = await scene.victim_says(victim, handover["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_open"
    assert await scene.outbox() == []


async def test_contact_details_only_for_a_handover_that_asks_them(scene: Scene, cast: Cast) -> None:
    handover, victim = await scene.proposal(cast, parts=["summary"])
    answer = await scene.victim_says(victim, handover["id"], contact_details="me@example.org")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "contact_not_asked"
    assert await scene.consents(handover["id"]) == []


async def test_a_recorded_answer_needs_a_colleague_before_it_expires(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast)
    shown = (await cast.agent.get(f"/api/staff/handovers/{handover['id']}")).json()
    body = {
        "method": "written",
        "decision": "accepted",
        "text_sha256": shown["consent_text_sha256"],
    }
    assert (
        await cast.agent.post(f"/api/staff/handovers/{handover['id']}/consent", body)
    ).is_success
    [given] = await scene.consents(handover["id"])
    assert given.recorded_by == f"staff:{cast.agent.id}" and given.method == "written"
    # the victim cannot answer over it, nor can staff record a second one
    assert (await scene.victim_says(victim, handover["id"])).json()["error"]["code"] == "not_open"
    second = await cast.agent.post(f"/api/staff/handovers/{handover['id']}/consent", body)
    assert second.status_code == 409
    # the colleague (who does not hold the case) can see what was read out, and confirm
    seen = await cast.colleague.get(f"/api/staff/handovers/{handover['id']}")
    assert seen.status_code == 200 and seen.json()["consent_text"] == shown["consent_text"]
    scene.clock.advance(timedelta(hours=scene.services.settings.handover_consent_hours))
    late = await cast.colleague.post(f"/api/staff/handovers/{handover['id']}/consent/confirm")
    assert late.status_code == 409 and late.json()["error"]["code"] == "consent_expired"
    assert await scene.outbox() == []


async def test_a_recorded_no_is_final_without_a_colleague(scene: Scene, cast: Cast) -> None:
    handover, _ = await scene.proposal(cast)
    shown = (await cast.agent.get(f"/api/staff/handovers/{handover['id']}")).json()
    answer = await cast.agent.post(
        f"/api/staff/handovers/{handover['id']}/consent",
        {"method": "verbal", "decision": "declined", "text_sha256": shown["consent_text_sha256"]},
    )
    assert answer.status_code == 200 and answer.json()["status"] == "declined"


async def test_the_victim_withdraws_until_delivered_and_the_delivery_stops(
    scene: Scene, cast: Cast
) -> None:
    handover, victim = await scene.proposal(cast)
    path = f"/api/chat/handovers/{handover['id']}/withdraw"
    nothing = await victim.post(path)
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "not_open"
    assert (await scene.victim_says(victim, handover["id"])).status_code == 200
    [entry] = await scene.outbox()
    assert entry.status == "pending"
    assert (await scene.handover_row(handover["id"])).outbox_id == entry.id
    withdrawn = await victim.post(path)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn" and withdrawn.json()["can_withdraw"] is False
    [entry] = await scene.outbox()
    assert entry.status == "cancelled"
    [given] = await scene.consents(handover["id"])
    assert given.withdrawn_at and as_utc(given.withdrawn_at) == scene.clock.now()
    assert given.withdrawn_by == "victim"

    other, victim = await scene.proposal(cast, name="CSG")
    assert (await scene.victim_says(victim, other["id"])).status_code == 200
    async with scene.services.db.transaction() as session:  # as the delivery would
        row = await session.get(Handover, other["id"])
        assert row is not None
        row.status = "delivered"
    late = await victim.post(f"/api/chat/handovers/{other['id']}/withdraw")
    assert late.status_code == 409 and late.json()["error"]["code"] == "already_delivered"
