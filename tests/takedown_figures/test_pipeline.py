"""The figures of notices that went the real way: built and queued by the notice builder,
delivered through the outbox to an SMTP sink, answered by the platform (statement of reasons)
or left to run out by the notice clock. The figures read what that flow wrote: the statuses,
`sent_at` / `due_at` and the append-only history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpline.cases.models import Case
from helpline.cases.service import start_chat
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from helpline.takedown import sla
from helpline.takedown.answers import AnswerSet, apply_answers
from helpline.takedown.builder import NoticeRequest, UrlChoice, create_notice
from helpline.takedown.delivery import queue_notice, register_delivery
from helpline.takedown.models import Notice, Platform
from helpline.takedown.platforms import PlatformFields, create_platform
from helpline.takedown.states import AnswerVia
from tests.email.conftest import Sink, start_sink
from tests.takedown_figures.conftest import build_app
from tests.triage.kit import Desk

PLATFORM = "dsa@video.example"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


@pytest.fixture
async def mail_desk(
    settings_for: Any, database_url: str, clock: Any, sink: Sink
) -> AsyncIterator[Desk]:
    settings = settings_for(
        database_url,
        timezone="Europe/Amsterdam",
        smtp_out_host="127.0.0.1",
        smtp_out_port=sink.port,
        smtp_out_security="none",
        mail_from="notices@helpline.test",
        notice_reminder_before_hours=0,
        notice_escalation_after_hours=1000,
    )
    app = build_app(settings, clock)
    async with app.router.lifespan_context(app) as state:
        running = Desk(app, state, clock)
        register_delivery(running.services)
        try:
            yield running
        finally:
            await running.close()


async def send_notice(desk: Desk, platform_id: str, staff_id: str, urls: list[str]) -> str:
    services = desk.services
    async with services.db.transaction() as session:
        receipt = await start_chat(session, desk.clock, language="nl", topic=None)
        case = await session.get(Case, receipt.case.id)
        assert case is not None
        notice = await create_notice(
            session,
            services,
            case,
            staff_id=staff_id,
            request=NoticeRequest(
                platform_id=platform_id,
                category="intimate_images",
                urls=[UrlChoice(url=u, content_type="CONTENT_TYPE_IMAGE") for u in urls],
            ),
        )
        target = await session.get(Platform, platform_id)
        assert target is not None
        await queue_notice(session, services, notice, target, actor=f"staff:{staff_id}")
        notice_id: str = notice.id
    assert await services.outbox.run_once() >= 1
    return notice_id


async def answer(desk: Desk, notice_id: str, answers: list[dict[str, Any]]) -> None:
    services = desk.services
    async with services.db.transaction() as session:
        notice = await session.get(Notice, notice_id, with_for_update=True)
        assert notice is not None
        await apply_answers(
            session,
            services,
            notice,
            AnswerSet.model_validate({"answers": answers}),
            via=AnswerVia.api,
            actor="platform:test",
        )


async def url_ids(desk: Desk, notice_id: str) -> list[str]:
    from helpline.takedown.state import urls_of

    async with desk.services.db.transaction() as session:
        return [row.id for row in await urls_of(session, notice_id)]


async def test_figures_of_notices_built_delivered_and_answered(mail_desk: Desk, sink: Sink) -> None:
    desk = mail_desk
    services = desk.services
    async with services.db.transaction() as session:
        platform = await create_platform(
            session,
            desk.clock,
            services.settings,
            PlatformFields(
                name="Video Example", slug="video", delivery="email", contact_email=PLATFORM
            ),
        )
        staff = await create_staff(
            session, desk.clock, username="gijs", password="a long staff password", role=Role.agent
        )
    urls = ["https://video.example/v/1", "https://video.example/v/2"]
    first = await send_notice(desk, platform.id, staff.id, urls)
    assert len(sink.received) == 1 and sink.received[0].rcpt_tos == [PLATFORM]

    # three hours later the platform removes one URL and declines the other
    desk.clock.advance(hours=3)
    removed, declined = await url_ids(desk, first)
    await answer(
        desk,
        first,
        [
            {
                "url_id": removed, "decision": "removed",
                "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT", "ground": "art. 139h Sr",
                "explanation": "Non-consensual intimate image.",
                "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
                "territorial_scope": ["NL"], "puid": "video-1",
            },
            {
                "url_id": declined, "decision": "declined", "reason": "not_illegal",
                "explanation": "We could not see that this is unlawful.",
                "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
            },
        ],
    )  # fmt: skip

    # a second notice nobody answers: 25 hours later the clock marks it no response
    second = await send_notice(desk, platform.id, staff.id, ["https://video.example/v/3"])
    desk.clock.advance(hours=25)
    await sla.tick(services, desk.clock.now())
    async with services.db.transaction() as session:
        overdue = await session.get(Notice, second)
        assert overdue is not None and overdue.status == "no_response"

    supervisor = await desk.staff("sanne", Role.supervisor)
    answer_ = await supervisor.get("/api/staff/takedown/figures", params={"platform": "video"})
    assert answer_.status_code == 200, answer_.text
    figures = answer_.json()["overall"]
    assert figures["notices"] == {
        "sent": 2, "honoured": 0, "partly_honoured": 1, "declined": 0,
        "more_info_requested": 0, "no_response": 1, "awaiting": 0, "withdrawn": 0,
        "concluded": 2,
    }  # fmt: skip
    assert figures["honour_rate"] == 0.0
    assert figures["partly_honoured_rate"] == 0.5
    assert figures["no_response_rate"] == 0.5
    assert figures["urls"]["removed"] == 1 and figures["urls"]["declined"] == 1
    assert figures["urls"]["no_response"] == 1
    assert figures["declined_reasons"] == [{"reason": "not_illegal", "urls": 1}]
    # sent when the outbox delivered it, removed three hours later (the history's moment)
    assert figures["time_to_removal"]["median_seconds"] == 3 * 3600
    assert figures["within_24h"]["removed_urls"] == 1
    assert figures["overdue_now"] == 1
    assert figures["actions"] == {
        "DECISION_VISIBILITY_CONTENT_REMOVED": 1, "declined": 1, "no_response": 1,
    }  # fmt: skip
    for text in urls:
        assert text not in answer_.text
