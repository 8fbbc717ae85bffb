"""The platform API: a platform's key lists and opens its own delivered notices only, confirms
receipt and posts outcomes in the statement-of-reasons shape, validated against the published
JSON schema with clear errors."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from helpline.core.crypto import canonical_json
from helpline.core.ids import new_id
from helpline.takedown import codes, service
from helpline.takedown.answers import (
    DECLINE_REASONS,
    AutomatedCode,
    CountryCode,
    GroundCode,
    RestrictionCode,
    answer_schema,
    schema_text,
)
from helpline.takedown.builder import verify_detached
from helpline.takedown.models import Notice, Platform
from helpline.takedown.platforms import revoke_api_key
from tests.takedown_platform.conftest import Desk, bearer, declined, removed

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMA_FILE = ROOT / "docs" / "schemas" / "notice-answer.schema.json"


async def test_the_published_schema_is_the_one_enforced(desk: Desk) -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "docs/schemas/notice-answer.schema.json is out of date: write "
        "helpline.takedown.answers.schema_text() to it"
    )
    served = await desk.http.get("/api/platform/schema/answer.json")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/schema+json")
    base = desk.services.settings.base_url
    assert served.json() == answer_schema(base)
    assert served.json()["$id"] == f"{base}/api/platform/schema/answer.json"
    schema = served.json()
    decisions = {
        definition["properties"]["decision"]["const"]
        for definition in schema["$defs"].values()
        if "decision" in definition.get("properties", {})
    }
    assert decisions == {"removed", "access_disabled", "restricted", "declined", "more_information"}


def test_the_vocabulary_is_the_transparency_databases() -> None:
    """The codes an answer may use are the builder's statement-of-reasons vocabulary."""
    restrictions = set(RestrictionCode.__args__)  # type: ignore[attr-defined]
    removals = {"DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED"}
    assert restrictions | removals == set(codes.DECISION_VISIBILITY)
    assert set(GroundCode.__args__) == set(codes.DECISION_GROUNDS)  # type: ignore[attr-defined]
    assert set(AutomatedCode.__args__) == set(codes.AUTOMATED_DECISIONS)  # type: ignore[attr-defined]
    assert len(CountryCode.__args__) == 30  # type: ignore[attr-defined]
    assert "not_illegal" in DECLINE_REASONS


async def test_a_key_sees_its_own_delivered_notices_only(desk: Desk) -> None:
    ours, key = await desk.platform("fotoforum")
    theirs, other_key = await desk.platform("clipsite")
    assert key and other_key
    first = await desk.sent_notice(ours)
    desk.clock.advance(minutes=5)  # oldest first
    second = await desk.sent_notice(ours)
    elsewhere = await desk.sent_notice(theirs)

    me = await desk.http.get("/api/platform/me", headers=bearer(key))
    assert me.json()["slug"] == "fotoforum" and me.json()["flagger_reference"] == "TF-FOTOFORUM-7"

    listed = await desk.http.get("/api/platform/notices", headers=bearer(key))
    assert listed.status_code == 200
    body = listed.json()
    assert [n["reference"] for n in body["notices"]] == [
        first.notice.reference,
        second.notice.reference,
    ]
    assert body["total"] == 2
    assert body["notices"][0]["url_count"] == 2 and body["notices"][0]["open_url_count"] == 2

    paged = await desk.http.get("/api/platform/notices?limit=1&offset=1", headers=bearer(key))
    assert [n["id"] for n in paged.json()["notices"]] == [second.notice.id]

    # by id or by the reference the e-mail carries
    for wanted in (first.notice.id, first.notice.reference, first.notice.reference.lower()):
        one = await desk.http.get(f"/api/platform/notices/{wanted}", headers=bearer(key))
        assert one.status_code == 200, wanted
        assert one.json()["id"] == first.notice.id
    # another platform's notice does not exist for this key
    hidden = await desk.http.get(
        f"/api/platform/notices/{elsewhere.notice.id}", headers=bearer(key)
    )
    assert hidden.status_code == 404
    answer = await desk.http.post(
        f"/api/platform/notices/{elsewhere.notice.id}/answers",
        headers=bearer(key),
        json={"answers": [removed(elsewhere.url_ids[0])]},
    )
    assert answer.status_code == 404
    assert [u.status for u in await desk.urls(elsewhere.notice.id)] == ["sent", "sent"]


async def test_an_answer_through_the_api(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform)
    first, second = sent.url_ids
    path = f"/api/platform/notices/{sent.notice.reference}"

    receipt = await desk.http.post(f"{path}/receipt", headers=bearer(key))
    assert receipt.status_code == 200 and receipt.json()["status"] == "receipt_confirmed"

    restricted = removed(
        first,
        decision="restricted",
        decision_visibility="DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
        decision_ground="DECISION_GROUND_INCOMPATIBLE_CONTENT",
        ground="Community guidelines, section 4.2 (adult nudity)",
    )
    answered = await desk.http.post(
        f"{path}/answers",
        headers=bearer(key),
        json={"answers": [restricted, removed(second, decision="access_disabled")]},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "partly_honoured"
    assert sorted(answered.json()["changed"]) == sorted([first, second])
    rows = {u.id: u for u in await desk.urls(sent.notice.id)}
    assert rows[first].status == "partly_honoured"
    assert rows[first].decision_visibility == "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"
    assert rows[first].decision_ground == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert rows[second].status == "honoured"
    assert rows[second].decision_visibility == "DECISION_VISIBILITY_CONTENT_DISABLED"
    assert {u.answered_via for u in rows.values()} == {"api"}

    # decided notices leave the open list, and show under `all`
    assert (await desk.http.get("/api/platform/notices", headers=bearer(key))).json()["total"] == 0
    everything = await desk.http.get("/api/platform/notices?status=all", headers=bearer(key))
    assert [n["status"] for n in everything.json()["notices"]] == ["partly_honoured"]

    # after an internal complaint (DSA art. 20) the restriction becomes a removal
    revised = await desk.http.post(
        f"{path}/answers", headers=bearer(key), json={"answers": [removed(first)]}
    )
    assert revised.status_code == 200 and revised.json()["status"] == "honoured"
    notice = await desk.notice(sent.notice.id)
    assert notice.status == "honoured" and notice.closed_at is not None


async def test_one_bad_answer_refuses_the_whole_set(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform)
    first, second = sent.url_ids
    path = f"/api/platform/notices/{sent.notice.id}/answers"
    assert (
        await desk.http.post(path, headers=bearer(key), json={"answers": [removed(first)]})
    ).status_code == 200
    refused = await desk.http.post(
        path, headers=bearer(key), json={"answers": [removed(second), declined(first)]}
    )
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "answer_refused"
    assert error["details"]["problems"] == [
        {"at": "answers[1]", "message": "this URL is honoured: it cannot become declined"}
    ]
    assert [u.status for u in await desk.urls(sent.notice.id)] == ["honoured", "receipt_confirmed"]


def _problems(answer: Any) -> list[tuple[str, str]]:
    error = answer.json()["error"]
    assert error["code"] == "invalid"
    assert error["details"]["schema"] == "/api/platform/schema/answer.json"
    return [(p["at"], p["message"]) for p in error["details"]["problems"]]


async def test_schema_errors_are_clear(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform)
    first, second = sent.url_ids
    path = f"/api/platform/notices/{sent.notice.id}/answers"

    async def post(body: Any) -> Any:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = await desk.http.post(
            path, headers={**bearer(key), "Content-Type": "application/json"}, content=content
        )
        assert answer.status_code == 422, answer.text
        return answer

    incomplete = await post({"answers": [{"url_id": first, "decision": "removed"}]})
    assert incomplete.json()["error"]["message"] == (
        "answers[0].decision_ground: Field required (and 5 more)"
    )
    assert [at for at, _ in _problems(incomplete)] == [
        "answers[0].decision_ground",
        "answers[0].ground",
        "answers[0].explanation",
        "answers[0].automated_decision",
        "answers[0].territorial_scope",
        "answers[0].puid",
    ]
    assert _problems(await post({"answers": [{"url_id": first, "decision": "gone"}]})) == [
        (
            "answers[0]",
            "decision must be one of access_disabled, declined, more_information, removed, "
            "restricted",
        )
    ]
    assert _problems(await post({"answers": [removed(first, territorial_scope=["NL", "US"])]})) == [
        ("answers[0].territorial_scope[1]", "'US' is not an EEA country code")
    ]
    assert _problems(await post({"answers": [removed(first, territorial_scope=["NL", "NL"])]})) == [
        ("answers[0].territorial_scope", "names a country twice")
    ]
    assert _problems(await post({"answers": [removed(first, colour="red")]})) == [
        ("answers[0].colour", "is not a field of this answer")
    ]
    other = removed(
        first,
        decision="restricted",
        decision_visibility="DECISION_VISIBILITY_OTHER",
    )
    assert _problems(await post({"answers": [other]})) == [
        ("answers[0]", "decision_visibility_other is required with OTHER")
    ]
    assert _problems(await post({"answers": [removed(first), declined(first)]})) == [
        ("answers", "a URL is answered twice")
    ]
    assert _problems(await post({"answers": []}))[0][0] == "answers"
    assert _problems(await post({"answers": [declined(second, reason="too_busy")]}))[0] == (
        "answers[0].reason",
        "Input should be 'not_illegal', 'not_against_terms', 'content_not_found', "
        "'not_our_service', 'insufficient_information' or 'other'",
    )
    assert _problems(await post(b"{not json"))[0][0] == "body"
    assert _problems(await post({"answers": [removed(new_id())]})) == [
        ("answers[0].url_id", "is not a URL of this notice")
    ]
    # nothing changed on the way
    assert [u.status for u in await desk.urls(sent.notice.id)] == ["sent", "sent"]


async def test_keys_that_do_not_work(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    for headers in (
        {},
        bearer("hlk_" + "x" * 43),
        bearer(key[4:]),
        {"Authorization": f"Basic {key}"},
    ):
        answer = await desk.http.get("/api/platform/notices", headers=headers)
        assert answer.status_code == 401
    # a revoked key, and the key of a platform made inactive
    async with desk.services.db.transaction() as session:
        row = await session.get(Platform, platform.id)
        assert row is not None
        await revoke_api_key(session, desk.clock, row)
    assert (await desk.http.get("/api/platform/me", headers=bearer(key))).status_code == 401
    second, other_key = await desk.platform("clipsite")
    assert other_key
    async with desk.services.db.transaction() as session:
        row = await session.get(Platform, second.id)
        assert row is not None
        row.active = False
    assert (await desk.http.get("/api/platform/me", headers=bearer(other_key))).status_code == 401


async def test_bad_list_parameters_get_a_clear_error(desk: Desk) -> None:
    _, key = await desk.platform("fotoforum")
    assert key
    for query, message in (
        ("status=closed", "status must be open or all"),
        ("limit=0", "limit must be a whole number from 1 to 200"),
        ("limit=abc", "limit must be a whole number from 1 to 200"),
        ("offset=-1", "offset must be a whole number from 0 to 10000000"),
    ):
        answer = await desk.http.get(f"/api/platform/notices?{query}", headers=bearer(key))
        assert answer.status_code == 422
        assert answer.json()["error"]["message"] == message


async def test_a_withdrawn_notice_takes_no_answers(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform)
    async with desk.services.db.transaction() as session:
        notice = await session.get(Notice, sent.notice.id)
        assert notice is not None
        await service.withdraw(session, desk.services, notice, staff_id=desk.staff_id)
    path = f"/api/platform/notices/{sent.notice.id}"
    shown = await desk.http.get(path, headers=bearer(key))
    assert shown.json()["status"] == "withdrawn" and shown.json()["answerable"] is False
    refused = await desk.http.post(
        f"{path}/answers", headers=bearer(key), json={"answers": [removed(sent.url_ids[0])]}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_answerable"
    receipt = await desk.http.post(f"{path}/receipt", headers=bearer(key))
    assert receipt.json()["confirmed"] is False
    # the portal shows it too, without the answer form
    portal = await desk.http.get("/api/portal/notice", headers=bearer(sent.token))
    assert portal.json()["status"] == "withdrawn" and portal.json()["answerable"] is False


async def test_a_question_then_a_decision(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform, urls=1)
    [url_id] = sent.url_ids
    path = f"/api/platform/notices/{sent.notice.id}/answers"
    question = {"url_id": url_id, "decision": "more_information", "question": "Which account?"}
    asked = await desk.http.post(path, headers=bearer(key), json={"answers": [question]})
    assert asked.json() == {
        "status": "more_info_requested",
        "changed": [url_id],
        "unchanged": [],
        "questions": 1,
    }
    # asked again: the URL does not move, the question is kept once more
    again = await desk.http.post(path, headers=bearer(key), json={"answers": [question]})
    assert again.json()["unchanged"] == [url_id] and again.json()["questions"] == 1
    decided = await desk.http.post(path, headers=bearer(key), json={"answers": [removed(url_id)]})
    assert decided.json()["status"] == "honoured"
    notice = await desk.notice(sent.notice.id)
    assert notice.receipt_confirmed_at is not None and notice.decided_at is not None


async def test_a_platform_can_verify_what_it_fetched(desk: Desk) -> None:
    """The document and the readable HTML a platform fetches verify against the published
    keys, as the bytes that were delivered; a changed byte does not."""
    platform, key = await desk.platform("fotoforum")
    assert key
    sent = await desk.sent_notice(platform)
    fetched = await desk.http.get(
        f"/api/platform/notices/{sent.notice.id}?html=1", headers=bearer(key)
    )
    body = fetched.json()
    keys = (await desk.http.get("/.well-known/helpline-keys.json")).json()["keys"]
    signature = body["signature"]
    data = canonical_json(body["document"])
    assert hashlib.sha256(data).hexdigest() == body["document_sha256"]
    assert verify_detached(keys, signature["kid"], data, signature["signature"])
    html = base64.b64decode(body["html"]["base64"])
    assert verify_detached(keys, body["html"]["kid"], html, body["html"]["signature"])
    tampered = canonical_json(
        {**body["document"], "explanation": body["document"]["explanation"] + "."}
    )
    assert not verify_detached(keys, signature["kid"], tampered, signature["signature"])
