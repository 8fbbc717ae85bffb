"""Callback endpoints: the victim files a request (from the start page, or inside their chat),
sees or withdraws it; staff see it, call, record each attempt, and can give the victim a
passphrase to continue in the chat. Contract: docs/api/callback.md.

Only the staff member the case is assigned to gets the number and the code word; everyone
else who may open the case sees the number masked. Every reveal is audited.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field
from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases import service as cases
from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Forbidden, NotFound
from helpline.core.http import (
    PUBLIC,
    Schema,
    parse_body,
    publish_after_commit,
    route,
    services,
)
from helpline.core.services import Services
from helpline.intake.callback import service
from helpline.intake.callback.models import AttemptOutcome, CallbackRequest, CallbackState
from helpline.intake.callback.validation import (
    MAX_CODE_WORD,
    MAX_NUMBER_INPUT,
    MAX_WINDOW,
    MAX_WINDOWS,
    MIN_WINDOW,
    display_number,
    mask_number,
    windows_from_json,
)
from helpline.intake.chat.routes import VICTIM
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff, staff_names
from helpline.staff.models import Role
from helpline.triage.service import CONSOLE_CHANNEL

AGENT = staff(Role.agent)
# a bound on what is parsed at all; the real limit (MAX_WINDOWS) answers with its own code
WINDOWS_PARSED = 50
START_LIMIT = "30/minute"  # callback requests from the start page, all victims together
PER_NUMBER_LIMIT = "3/day"  # requests for one number (a keyed hash of it): no call bombing


class WindowBody(Schema):
    start: datetime
    end: datetime


class CallbackBody(Schema):
    phone: str = Field(max_length=MAX_NUMBER_INPUT * 2)
    windows: list[WindowBody] = Field(max_length=WINDOWS_PARSED)
    voicemail_safe: bool
    may_say_name: bool
    code_word: str = Field(max_length=MAX_CODE_WORD * 4)
    urgent: bool = False


class StartCallbackBody(CallbackBody):
    language: Literal["nl", "en"] = "nl"
    topic: str | None = Field(default=None, max_length=40)
    continue_in_chat: bool = False


class AttemptBody(Schema):
    outcome: AttemptOutcome
    note: str | None = Field(default=None, max_length=service.MAX_NOTE_CHARS * 2)


def _details(found: Services, body: CallbackBody) -> service.CallbackDetails:
    return service.check_request(
        found.settings,
        found.clock.now(),
        phone=body.phone,
        code_word=body.code_word,
        windows=[(w.start, w.end) for w in body.windows],
        urgent=body.urgent,
        voicemail_safe=body.voicemail_safe,
        may_say_name=body.may_say_name,
    )


def _zone(found: Services) -> ZoneInfo:
    return ZoneInfo(found.settings.timezone)


def _windows_json(found: Services, request: CallbackRequest) -> list[dict[str, str]]:
    zone = _zone(found)
    return [w.as_json(zone) for w in windows_from_json(request.windows)]


def _when(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def _announce(request: Request, case_id: str) -> None:
    publish_after_commit(request, cases.QUEUE_CHANNEL, {"type": "queue_changed"})
    publish_after_commit(request, CONSOLE_CHANNEL, {"type": "case_changed", "case_id": case_id})


# ---------------------------------------------------------------- victims


def _opening_days(found: Services) -> list[dict[str, Any]]:
    """The days a victim can pick, each with its opening hours, in the helpline's time zone."""
    settings = found.settings
    zone = _zone(found)
    today = found.clock.now().astimezone(zone).date()
    days = []
    for offset in range(settings.retention_callback_days):
        day: date = today + timedelta(days=offset)
        spans = sorted(
            (s for s in settings.hours.spans if s.day == day.weekday()), key=lambda s: s.start
        )
        days.append(
            {
                "date": day.isoformat(),
                "hours": [
                    {
                        "start": s.start.strftime("%H:%M"),
                        "end": "24:00" if s.end == time.max else s.end.strftime("%H:%M"),
                    }
                    for s in spans
                ],
            }
        )
    return days


async def info(request: Request) -> Response:
    """What the form needs: the days and hours to choose from and the limits."""
    found = services(request)
    return JSONResponse(
        {
            "timezone": found.settings.timezone,
            "now": found.clock.now().astimezone(_zone(found)).isoformat(),
            "days": _opening_days(found),
            "region": found.settings.callback_region,
            "max_windows": MAX_WINDOWS,
            "min_minutes": int(MIN_WINDOW.total_seconds() // 60),
            "max_minutes": int(MAX_WINDOW.total_seconds() // 60),
            "topics": list(cases.TOPICS),
        }
    )


def _victim_view(found: Services, request: CallbackRequest, number: str | None) -> dict[str, Any]:
    return {
        "state": request.state,
        "windows": _windows_json(found, request),
        "urgent": request.urgent,
        "voicemail_safe": request.voicemail_safe,
        "may_say_name": request.may_say_name,
        "number_masked": mask_number(number) if number else None,
        "created_at": _when(request.created_at),
    }


async def file_from_start(request: Request) -> Response:
    found = services(request)
    await found.limiter.check("callback-start", START_LIMIT)
    body = await parse_body(request, StartCallbackBody)
    details = _details(found, body)
    await found.limiter.check("callback-number", PER_NUMBER_LIMIT, details.number)
    filed = await service.file_new_case(
        request.state.session,
        found.keyring,
        found.clock,
        details,
        language=body.language,
        topic=body.topic,
        with_chat=body.continue_in_chat,
    )
    if filed.request.announced:  # urgent, or the window is open: in the queue now
        publish_after_commit(request, cases.QUEUE_CHANNEL, {"type": "queue_changed"})
    answer: dict[str, Any] = {
        "reference": filed.case.reference,
        # the victim's own number, back once to check for typos; never stored in the browser
        "number": display_number(details.number),
        **_victim_view(found, filed.request, details.number),
    }
    if filed.passphrase is not None:
        answer.update(passphrase=filed.passphrase, token=filed.token)
    return JSONResponse(answer, status_code=201)


async def _victim_case(request: Request) -> Case:
    case = await request.state.session.get(Case, request.state.principal.id)
    if case is None:
        raise NotFound("this conversation no longer exists")
    assert isinstance(case, Case)
    return case


async def file_from_chat(request: Request) -> Response:
    found = services(request)
    body = await parse_body(request, CallbackBody)
    case = await _victim_case(request)
    details = _details(found, body)
    await found.limiter.check("callback-number", PER_NUMBER_LIMIT, details.number)
    filed = await service.file_in_chat(
        request.state.session, found.keyring, found.clock, case, details
    )
    _announce(request, case.id)
    return JSONResponse(
        {
            "reference": case.reference,
            "number": display_number(details.number),
            **_victim_view(found, filed.request, details.number),
        },
        status_code=201,
    )


async def victim_callback(request: Request) -> Response:
    found = services(request)
    case = await _victim_case(request)
    latest = await service.latest_request(request.state.session, case.id)
    if latest is None:
        return JSONResponse({"callback": None})
    contact = await service.read_contact(request.state.session, found.keyring, latest)
    return JSONResponse(
        {"callback": _victim_view(found, latest, contact.number if contact else None)}
    )


async def withdraw(request: Request) -> Response:
    found = services(request)
    case = await _victim_case(request)
    withdrawn = await service.withdraw(request.state.session, found.clock, case)
    _announce(request, case.id)
    return JSONResponse({"callback": _victim_view(found, withdrawn, None)})


# ---------------------------------------------------------------- staff


def _is_assignee(request: Request, case: Case) -> bool:
    return case.assigned_staff_id is not None and case.assigned_staff_id == _staff_id(request)


def _staff_id(request: Request) -> str:
    staff_id: str = request.state.principal.id
    return staff_id


async def _staff_view(
    request: Request, case: Case, callback: CallbackRequest, *, reveal: bool
) -> dict[str, Any]:
    found = services(request)
    session = request.state.session
    contact = await service.read_contact(session, found.keyring, callback)
    attempts = await service.attempts_of(session, found.keyring, callback)
    names = await staff_names(session, [a.staff_id for a in attempts])
    revealed = reveal and contact is not None
    if revealed:
        await record(
            session,
            found.clock,
            actor=f"staff:{_staff_id(request)}",
            action="callback.reveal",
            target=f"case:{case.id}",
            details={"request": callback.id},
        )
    return {
        "case_id": case.id,
        "reference": case.reference,
        "id": callback.id,
        "state": callback.state,
        "source": callback.source,
        "timezone": found.settings.timezone,
        "windows": _windows_json(found, callback),
        "urgent": callback.urgent,
        "safety": {
            "voicemail_safe": callback.voicemail_safe,
            "may_say_name": callback.may_say_name,
        },
        "revealed": revealed,
        "number": contact.number if revealed and contact else None,
        "number_display": display_number(contact.number) if revealed and contact else None,
        "number_masked": mask_number(contact.number) if contact else None,
        "code_word": contact.code_word if revealed and contact else None,
        "contact_deleted_at": _when(callback.contact_deleted_at),
        "in_queue_from": _when(case.queued_at),
        "expires_at": _when(callback.last_window_end),
        "created_at": _when(callback.created_at),
        "attempts": [
            {
                "at": a.at.isoformat(),
                "outcome": a.outcome,
                "by": {"id": a.staff_id, "name": names.get(a.staff_id, "")} if a.staff_id else None,
                "note": a.note,
            }
            for a in attempts
        ],
    }


async def _callback_of(
    request: Request, case: Case, *, for_update: bool = False
) -> CallbackRequest:
    found = await service.latest_request(request.state.session, case.id, for_update=for_update)
    if found is None:
        raise service.NoCallback("this case has no callback request")
    return found


async def staff_callback(request: Request) -> Response:
    case = await case_for_staff(request)
    callback = await _callback_of(request, case)
    await record(
        request.state.session,
        services(request).clock,
        actor=f"staff:{_staff_id(request)}",
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "callback"},
    )
    return JSONResponse(
        await _staff_view(request, case, callback, reveal=_is_assignee(request, case))
    )


async def add_attempt(request: Request) -> Response:
    found = services(request)
    body = await parse_body(request, AttemptBody)
    case = await case_for_staff(request, for_update=True)
    callback = await _callback_of(request, case, for_update=True)
    await service.record_attempt(
        request.state.session,
        found.keyring,
        found.clock,
        case,
        callback,
        staff_id=_staff_id(request),
        outcome=body.outcome,
        note=body.note,
    )
    _announce(request, case.id)
    view = await _staff_view(request, case, callback, reveal=False)
    return JSONResponse(view, status_code=201)


async def new_passphrase(request: Request) -> Response:
    case = await case_for_staff(request, for_update=True)
    if not _is_assignee(request, case):
        raise Forbidden("only the staff member who has the case can do this")
    await _callback_of(request, case)
    passphrase = await service.issue_passphrase(
        request.state.session, services(request).clock, case, staff_id=_staff_id(request)
    )
    publish_after_commit(request, CONSOLE_CHANNEL, {"type": "case_changed", "case_id": case.id})
    return JSONResponse({"reference": case.reference, "passphrase": passphrase})


async def waiting_callbacks(request: Request) -> Response:
    """Every waiting callback request (no number, no code word): for the queue's row labels
    and the list of calls to come, including those whose window has not opened yet."""
    found = services(request)
    now = found.clock.now()
    rows = await request.state.session.execute(
        select(CallbackRequest, Case)
        .join(Case, col(Case.id) == col(CallbackRequest.case_id))
        .where(col(CallbackRequest.state) == CallbackState.pending)
        .order_by(col(CallbackRequest.first_window_start), col(CallbackRequest.id))
    )
    listed = rows.all()
    names = await staff_names(request.state.session, [c.assigned_staff_id for _, c in listed])
    return JSONResponse(
        {
            "now": now.isoformat(),
            "callbacks": [
                {
                    "case_id": case.id,
                    "reference": case.reference,
                    "status": case.status,
                    "priority": case.priority,
                    "assigned_to": {
                        "id": case.assigned_staff_id,
                        "name": names.get(case.assigned_staff_id, ""),
                    }
                    if case.assigned_staff_id
                    else None,
                    "id": callback.id,
                    "source": callback.source,
                    "windows": _windows_json(found, callback),
                    "urgent": callback.urgent,
                    "safety": {
                        "voicemail_safe": callback.voicemail_safe,
                        "may_say_name": callback.may_say_name,
                    },
                    "in_queue": as_utc(case.queued_at) <= now,
                    "in_queue_from": _when(case.queued_at),
                    "attempts": callback.attempts,
                }
                for callback, case in listed
            ],
        }
    )


def callback_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}/callback"
    return [
        route("/api/callback/info", info, access=PUBLIC),
        route("/api/callback/request", file_from_start, access=PUBLIC, methods=["POST"]),
        route("/api/chat/callback", victim_callback, access=VICTIM),
        route("/api/chat/callback", file_from_chat, access=VICTIM, methods=["POST"]),
        route("/api/chat/callback/withdraw", withdraw, access=VICTIM, methods=["POST"]),
        route("/api/staff/callbacks", waiting_callbacks, access=AGENT),
        route(case, staff_callback, access=AGENT),
        route(f"{case}/attempts", add_attempt, access=AGENT, methods=["POST"]),
        route(f"{case}/passphrase", new_passphrase, access=AGENT, methods=["POST"]),
    ]
