"""Staff apply the decision an e-mail reply states, in a real browser: the notices view shows
the platform's reply with a "confirm with the decision" form; an incomplete decision comes
back as the schema's readable error and changes nothing; a complete one (URL 1 removed, URL 2
declined) is applied as the platform's answer by e-mail and the reply is marked read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, expect

from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.ids import new_id
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from helpline.takedown.answers import add_reply
from helpline.takedown.models import Notice, NoticeReply
from helpline.takedown.states import AnswerVia
from tests.e2e.conftest import browser  # noqa: F401  (the fixture)
from tests.e2e.test_console_e2e import PASSWORD, staff_logs_in, watch
from tests.live import free_port
from tests.takedown_platform.conftest import Desk, build_app

pytestmark = pytest.mark.slow

REPLY = "Hello, we removed the first post; the second one does not break our rules. Kind regards"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings_for: Any, sqlite_url: str, port: int) -> Settings:
    """Once, on SQLite (a browser test is about the page), with the base URL staff log in at."""
    result: Settings = settings_for(
        sqlite_url, base_url=f"http://127.0.0.1:{port}", opening_hours="mo-su 00:00-24:00"
    )
    return result


@pytest.fixture
async def base(settings: Settings, clock: FrozenClock, desk: Desk, port: int) -> AsyncIterator[str]:
    config = uvicorn.Config(
        build_app(settings, clock),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def test_a_reply_is_confirmed_with_its_decision(
    browser: Browser,  # noqa: F811
    base: str,
    desk: Desk,
) -> None:
    platform, _ = await desk.platform("fotoforum")
    sent = await desk.sent_notice(platform)
    first, second = sent.url_ids
    async with desk.services.db.transaction() as session:
        await create_staff(
            session,
            desk.clock,
            username="sam",
            password=PASSWORD,
            role=Role.supervisor,
            display_name="Sam",
        )
        notice = await session.get(Notice, sent.notice.id)
        assert notice is not None
        reply = await add_reply(
            session,
            desk.services,
            notice,
            via=AnswerVia.email,
            kind="reply",
            text=REPLY,
            reply_id=new_id(),
        )
        reply_id = reply.id

    class Server:  # what staff_logs_in needs of a live server
        url = base

    errors: list[str] = []
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = watch(await staff_logs_in(context, Server(), "sam", at=desk.clock.now()), errors)  # type: ignore[arg-type]
        await page.click("#view-btn-notices")
        listed = page.locator(
            f"#notices-list .notices-row:has(.notices-ref:text-is('{sent.notice.reference}'))"
        )
        await listed.locator(".notices-details").click()
        shown = page.locator("#notices-list .notices-detail-row .notice-detail")
        item = shown.locator(f".notice-reply[data-reply-id='{reply_id}']")
        await expect(item.locator(".notice-reply-text")).to_have_text(REPLY)
        await item.locator(".notice-decide-box > summary").click()
        form = item.locator(".notice-decide")
        urls = form.locator(".notice-decide-url")
        await expect(urls).to_have_count(2)
        one = form.locator(f".notice-decide-url[data-url-id='{first}']")
        two = form.locator(f".notice-decide-url[data-url-id='{second}']")
        # the removal fields show for a removal only
        await expect(one.locator(".notice-decide-removal")).to_be_hidden()
        await one.locator(".notice-decide-decision").select_option("removed")
        await expect(one.locator(".notice-decide-removal")).to_be_visible()
        await one.locator(".notice-decide-legal").fill("art. 139h Sr")
        await one.locator(".notice-decide-explanation").fill("Removed: intimate image.")
        await one.locator(".notice-decide-scope").fill("nl, be")
        await two.locator(".notice-decide-decision").select_option("declined")
        await expect(two.locator(".notice-decide-decline")).to_be_visible()
        await two.locator(".notice-decide-reason").select_option("not_against_terms")
        await two.locator(".notice-decide-explanation").fill("Does not break our rules.")
        # no puid yet: the server's readable error, and nothing changes
        await form.locator(".notice-decide-save").click()
        await expect(form.locator(".notice-decide-error")).to_contain_text("puid")
        assert [u.status for u in await desk.urls(sent.notice.id)] == ["sent", "sent"]
        await one.locator(".notice-decide-puid").fill("post-4711")
        await form.locator(".notice-decide-save").click()
        # decided now (partly honoured): it leaves the view's active notices
        await expect(listed).to_have_count(0)
        assert errors == []
    finally:
        await context.close()

    rows = {u.id: u for u in await desk.urls(sent.notice.id)}
    assert rows[first].status == "honoured" and rows[first].answered_via == "email"
    assert rows[first].territorial_scope == "NL,BE" and rows[first].puid == "post-4711"
    assert rows[second].status == "declined"
    assert rows[second].decision_ground == "DECLINED_NOT_AGAINST_TERMS"
    assert (await desk.notice(sent.notice.id)).status == "partly_honoured"
    async with desk.services.db.transaction() as session:
        stored = await session.get(NoticeReply, reply_id)
        assert stored is not None and stored.confirmed_at is not None
