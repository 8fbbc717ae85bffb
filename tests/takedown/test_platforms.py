"""The platform directory: admins edit it, agents read it, an API key is shown once and
stored hashed, the demo data has no real addresses."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlmodel import col

from helpline.staff.models import Role
from helpline.takedown.models import Platform
from helpline.takedown.platforms import (
    api_key_hash,
    demo_platforms,
    load_demo_platforms,
    platform_of_api_key,
)
from tests.takedown.kit import Office


async def test_admins_edit_the_directory_and_agents_read_it(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    boss = await office.staff("sam", Role.supervisor)
    agent = await office.staff("bea")
    body = {
        "name": "Photoshare",
        "slug": "photoshare",
        "delivery": "email",
        "contact_email": "dsa@photoshare.example.org",
    }
    assert (await boss.post("/api/staff/platforms", body)).status_code == 403
    created = await office.platform(admin, sla_hours=None)
    assert created["sla_hours"] == 24  # the setting's default
    assert created["api_key"] is None and created["languages"] == ["en", "nl"]
    listed = (await agent.get("/api/staff/platforms")).json()["platforms"]
    assert [p["slug"] for p in listed] == ["photoshare"]
    path = f"/api/staff/platforms/{created['id']}"
    changed = await office.put(admin, path, {**body, "sla_hours": 12, "active": False})
    assert changed.status_code == 200 and changed.json()["sla_hours"] == 12
    assert changed.json()["active"] is False
    assert (await office.put(agent, path, body)).status_code == 403
    taken = await admin.post("/api/staff/platforms", body)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slug_taken"
    gone = await office.delete(admin, path)
    assert gone.status_code == 200
    assert (await agent.get(path)).status_code == 404


async def test_bad_platforms_get_clear_422s(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    base = {"name": "X", "slug": "xx", "delivery": "email", "contact_email": "a@x.example.org"}
    for change, mentions in (
        ({"slug": "Not A Slug"}, "slug"),
        ({"delivery": "pigeon"}, "delivery"),
        ({"contact_email": None}, "contact_email"),
        ({"contact_email": "not-an-address"}, "contact_email"),
        ({"delivery": "api", "endpoint_url": None}, "endpoint_url"),
        ({"delivery": "web_form", "web_form_url": "http://x.test/form"}, "web_form_url"),
        ({"sla_hours": 0}, "sla_hours"),
        ({"languages": ["dutch"]}, "languages"),
        ({"escalation_email": "x"}, "escalation_email"),
        ({"api_key_hash": "x"}, "api_key_hash"),
    ):
        answer = await admin.post("/api/staff/platforms", {**base, **change})
        assert answer.status_code == 422, (change, answer.text)
        assert mentions in answer.json()["error"]["message"], (change, answer.text)


async def test_an_api_key_is_shown_once_and_stored_hashed(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    path = f"/api/staff/platforms/{platform['id']}/api-key"
    assert (await agent.post(path)).status_code == 403
    issued = await admin.post(path)
    assert issued.status_code == 201
    key = issued.json()["api_key"]
    assert key.startswith("hlk_") and len(key) > 40
    shown = (await admin.get(f"/api/staff/platforms/{platform['id']}")).json()
    assert shown["api_key"] == {"prefix": key[:12]}
    assert key not in str(shown)
    async with office.services.db.transaction() as session:
        row = (await session.execute(select(Platform))).scalar_one()
        assert row.api_key_hash == api_key_hash(key)
        assert (await platform_of_api_key(session, key)) is not None
        assert (await platform_of_api_key(session, key + "x")) is None
    replaced = (await admin.post(path)).json()["api_key"]
    revoked = await office.delete(admin, path)
    assert revoked.status_code == 200 and revoked.json()["api_key"] is None
    async with office.services.db.transaction() as session:
        assert await platform_of_api_key(session, key) is None
        assert await platform_of_api_key(session, replaced) is None
    assert "platform.api_key" in await office.audit_actions(f"platform:{platform['id']}")


async def test_a_platform_with_notices_cannot_be_deleted(office: Office) -> None:
    admin = await office.staff("ada", Role.admin)
    agent = await office.staff("bea")
    platform = await office.platform(admin)
    await office.notice(agent, await office.case(agent), platform["id"])
    answer = await office.delete(admin, f"/api/staff/platforms/{platform['id']}")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "in_use"


async def test_the_demo_platforms_load_once_and_use_no_real_addresses(office: Office) -> None:
    raw = (files("helpline.takedown") / "demo_platforms.toml").read_text()
    assert tomllib.loads(raw)["platforms"]
    hosts = set()
    for demo in demo_platforms():
        for address in (demo.contact_email, demo.escalation_email, demo.complaint_email):
            if address:
                hosts.add(address.rsplit("@", 1)[1])
        for url in (demo.endpoint_url, demo.web_form_url):
            if url:
                hosts.add(urlsplit(url).hostname or "")
    assert hosts and all(h.endswith((".example.org", ".example.net", ".test")) for h in hosts)
    services = office.services
    async with services.db.transaction() as session:
        added = await load_demo_platforms(session, services.clock, services.settings)
    async with services.db.transaction() as session:
        again = await load_demo_platforms(session, services.clock, services.settings)
        slugs = sorted((await session.execute(select(col(Platform.slug)))).scalars())
    assert added == len(demo_platforms()) and again == 0
    assert slugs == sorted(p.slug for p in demo_platforms())
    assert {p.delivery for p in demo_platforms()} == {"email", "api", "web_form"}
