"""Victims' chat endpoints, in-process: start, come back, lockout, end, delete, info."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from helpline.core.clock import FrozenClock


async def start(client: httpx.AsyncClient, **body: object) -> dict[str, str]:
    answer = await client.post("/api/chat/start", json={"language": "nl", **body})
    assert answer.status_code == 201, answer.text
    result: dict[str, str] = answer.json()
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_start_gives_a_receipt_and_no_cookie(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/chat/start", json={"language": "en", "topic": "deepfake"})
    assert answer.status_code == 201
    assert set(answer.json()) == {"reference", "passphrase", "token"}
    assert "set-cookie" not in answer.headers
    assert answer.headers["cache-control"] == "no-store"


async def test_unknown_fields_and_values_are_refused(client: httpx.AsyncClient) -> None:
    extra = await client.post("/api/chat/start", json={"language": "nl", "email": "x@y.z"})
    assert extra.status_code == 422 and extra.json()["error"]["code"] == "invalid"
    topic = await client.post("/api/chat/start", json={"topic": "weather"})
    assert topic.status_code == 422


async def test_wrong_passphrases_lock_the_reference_and_say_so(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    receipt = await start(client)
    wrong = {"reference": receipt["reference"], "passphrase": "niet goed"}
    for _ in range(5):  # HELPLINE_VICTIM_MAX_FAILED_LOGINS
        answer = await client.post("/api/chat/resume", json=wrong)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "wrong_passphrase"
    right = {"reference": receipt["reference"], "passphrase": receipt["passphrase"]}
    locked = await client.post("/api/chat/resume", json=right)
    assert locked.status_code == 423
    assert locked.json()["error"]["code"] == "locked"
    assert 0 < locked.json()["error"]["details"]["retry_after"] <= 30 * 60 + 1
    clock.advance(minutes=31)
    assert (await client.post("/api/chat/resume", json=right)).status_code == 200


async def test_a_token_only_ends_its_own_case_and_delete_forgets_everything(
    client: httpx.AsyncClient,
) -> None:
    receipt = await start(client)
    assert (await client.post("/api/chat/end")).status_code == 401
    assert (await client.post("/api/chat/end", headers=bearer("forged"))).status_code == 401
    ended = await client.post("/api/chat/end", headers=bearer(receipt["token"]))
    assert ended.json() == {"status": "ended"}

    unconfirmed = await client.post("/api/chat/delete", headers=bearer(receipt["token"]), json={})
    assert unconfirmed.status_code == 422
    deleted = await client.post(
        "/api/chat/delete", headers=bearer(receipt["token"]), json={"confirm": True}
    )
    assert deleted.json() == {"deleted": True}
    again = {"reference": receipt["reference"], "passphrase": receipt["passphrase"]}
    assert (await client.post("/api/chat/resume", json=again)).status_code == 401
    assert (await client.post("/api/chat/end", headers=bearer(receipt["token"]))).status_code == 401


async def test_logout_forgets_the_tab_token(client: httpx.AsyncClient) -> None:
    receipt = await start(client)
    assert (
        await client.post("/api/chat/logout", headers=bearer(receipt["token"]))
    ).status_code == 204
    assert (await client.post("/api/chat/end", headers=bearer(receipt["token"]))).status_code == 401


async def test_info_tells_when_staff_are_back(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))  # a Sunday: closed by default
    closed = (await client.get("/api/chat/info")).json()
    assert closed["open"] is False
    assert closed["opens_at"].startswith("2026-11-30T09:00:00+01:00")
    assert "sextortion" in closed["topics"]
    clock.set(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))  # Monday 11:00 in Amsterdam
    opened = (await client.get("/api/chat/info")).json()
    assert opened["open"] is True and opened["opens_at"] is None


async def test_pages_are_served_with_the_strict_policy(client: httpx.AsyncClient) -> None:
    for path in ("/", "/safe-browsing", "/console/"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text  # only external modules: CSP forbids inline script
    script = await client.get("/static/chat/chat.js")
    assert script.status_code == 200
    assert "default-src 'self'" in script.headers["content-security-policy"]
