"""Working a case in the console: private notes, the timeline, canned responses.

Notes are for staff only: encrypted under the case key like messages, read by no victim
endpoint, and announced only on the console's activity channel, never on the case's chat
channel. Canned responses are templates with `{placeholders}`; they are filled in by name
only (no attribute access, indexing, conversions or format specs), so a template cannot reach
into the objects behind the values.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases.models import Case, CaseEvent, CaseNote, Message, Sender
from helpline.cases.service import ACTIVITY_CHANNEL
from helpline.core.audit import record
from helpline.core.clock import Clock, as_utc
from helpline.core.config import Settings
from helpline.core.crypto import DecryptionError, FieldCipher, Keyring, case_scope
from helpline.core.errors import HelplineError, Invalid, NotFound
from helpline.core.hours import DAYS
from helpline.core.http import Schema, parse_body, publish_after_commit, route, services
from helpline.core.ids import new_id
from helpline.evidence.models import EvidenceItem
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff, staff_names
from helpline.staff.models import Role, Staff
from helpline.triage.events import event_text
from helpline.triage.models import CannedResponse

log = logging.getLogger("helpline.casework")

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)

MAX_NOTE_CHARS = 4000
MAX_TITLE_CHARS = 120
MAX_BODY_CHARS = 4000
TIMELINE_LIMIT = 1000  # entries per request unless `?limit=` says otherwise
TIMELINE_MAX = 5000
PLACEHOLDERS = ("reference", "agent_name", "helpline_name", "opening_hours")
HELPLINE_NAME = "Helpline"  # there is no setting for the service's name (yet)
DAY_NAMES = {
    "nl": dict(zip(DAYS, ("ma", "di", "wo", "do", "vr", "za", "zo"), strict=True)),
    "en": dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True)),
}


# ---------------------------------------------------------------- who did it


def staff_id_of(actor: str) -> str | None:
    return actor.removeprefix("staff:") if actor.startswith("staff:") else None


def actor_json(actor: str, names: Mapping[str, str]) -> dict[str, str]:
    """`staff:<id>`, `victim` (or `email`: the victim wrote in), anything else: the system."""
    staff_id = staff_id_of(actor)
    if staff_id is not None:
        return {"kind": "staff", "id": staff_id, "name": names.get(staff_id, "")}
    if actor in ("victim", "email"):
        return {"kind": "victim"}
    return {"kind": "system"}


async def _case_cipher(session: AsyncSession, keyring: Keyring, case_id: str) -> FieldCipher:
    # reading never makes a key: a case with encrypted rows has one
    return await keyring.cipher(session, case_scope(case_id), create=False)


# ---------------------------------------------------------------- private notes


async def add_note(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    *,
    case_id: str,
    staff_id: str,
    text: str,
) -> CaseNote:
    """Store a note, encrypted under the case key; audited as `case.note` (the id only)."""
    text = text.strip()
    if not text:
        raise Invalid("text: a note cannot be empty")
    if len(text) > MAX_NOTE_CHARS:
        raise Invalid(f"text: a note can have at most {MAX_NOTE_CHARS} characters")
    note_id = new_id()
    cipher = await keyring.cipher(session, case_scope(case_id))
    note = CaseNote(
        id=note_id,
        case_id=case_id,
        staff_id=staff_id,
        body=cipher.encrypt(text, table="case_notes", row_id=note_id, field="body"),
        created_at=clock.now(),
    )
    session.add(note)
    await session.flush()
    await record(
        session,
        clock,
        actor=f"staff:{staff_id}",
        action="case.note",
        target=f"case:{case_id}",
        details={"note": note_id},
    )
    return note


def note_json(note: CaseNote, text: str, names: Mapping[str, str]) -> dict[str, Any]:
    by = {"id": note.staff_id, "name": names.get(note.staff_id, "")} if note.staff_id else None
    return {"id": note.id, "text": text, "by": by, "at": as_utc(note.created_at).isoformat()}


def _note_text(cipher: FieldCipher, note: CaseNote) -> str:
    return cipher.decrypt_text(note.body, table="case_notes", row_id=note.id, field="body")


async def read_notes(session: AsyncSession, keyring: Keyring, case_id: str) -> list[dict[str, Any]]:
    """The case's notes, oldest first, decrypted."""
    notes = (
        (
            await session.execute(
                select(CaseNote)
                .where(col(CaseNote.case_id) == case_id)
                .order_by(col(CaseNote.created_at), col(CaseNote.id))
            )
        )
        .scalars()
        .all()
    )
    if not notes:
        return []
    cipher = await _case_cipher(session, keyring, case_id)
    names = await staff_names(session, (n.staff_id for n in notes))
    return [note_json(n, _note_text(cipher, n), names) for n in notes]


# ---------------------------------------------------------------- the timeline


async def _newest(session: AsyncSession, query: Any, limit: int) -> list[Any]:
    """The first `limit` rows of a newest-first query, oldest first."""
    return list(reversed((await session.execute(query.limit(limit))).scalars().all()))


async def timeline(
    session: AsyncSession, keyring: Keyring, case_id: str, *, limit: int = TIMELINE_LIMIT
) -> tuple[list[dict[str, Any]], bool]:
    """Everything on the case, oldest first: messages, notes, evidence, events. At most
    `limit` entries, the newest ones; the flag says whether older ones were left out."""
    # the newest `limit + 1` of each kind hold the newest `limit + 1` of all of them
    fetch = limit + 1
    messages: list[Message] = await _newest(
        session,
        select(Message).where(col(Message.case_id) == case_id).order_by(col(Message.seq).desc()),
        fetch,
    )
    notes: list[CaseNote] = await _newest(
        session,
        select(CaseNote)
        .where(col(CaseNote.case_id) == case_id)
        .order_by(col(CaseNote.created_at).desc(), col(CaseNote.id).desc()),
        fetch,
    )
    items: list[EvidenceItem] = await _newest(
        session,
        select(EvidenceItem)
        .where(col(EvidenceItem.case_id) == case_id)
        .order_by(col(EvidenceItem.captured_at).desc(), col(EvidenceItem.id).desc()),
        fetch,
    )
    events: list[CaseEvent] = await _newest(
        session,
        select(CaseEvent)
        .where(col(CaseEvent.case_id) == case_id)
        .order_by(col(CaseEvent.at).desc(), col(CaseEvent.id).desc()),
        fetch,
    )
    names = await staff_names(
        session,
        [
            *(m.staff_id for m in messages),
            *(n.staff_id for n in notes),
            *(staff_id_of(i.captured_by) for i in items),
            *(staff_id_of(e.actor) for e in events),
        ],
    )
    cipher = await _case_cipher(session, keyring, case_id) if messages or notes else None
    event_texts = [await _event_text(session, keyring, e) for e in events]

    # sorted by moment, then kind (for entries of the same moment), then order within a kind
    entries: list[tuple[tuple[datetime, int, int], dict[str, Any]]] = []

    def add(moment: datetime, rank: int, actor: str, fields: dict[str, Any]) -> None:
        shown = {**fields, "at": as_utc(moment).isoformat(), "actor": actor_json(actor, names)}
        entries.append(((as_utc(moment), rank, len(entries)), shown))

    for message in messages:
        assert cipher is not None
        text = cipher.decrypt_text(message.body, table="messages", row_id=message.id, field="body")
        actor = f"staff:{message.staff_id}" if message.sender == Sender.staff else message.sender
        fields = {"kind": "message", "id": message.id, "seq": message.seq, "text": text}
        add(message.created_at, 0, actor, fields)
    for item in items:
        fields = {
            "kind": "evidence",
            "id": item.id,
            "item_kind": item.kind,
            "status": item.status,
            "media_type": item.media_type,
            "channel": item.channel,
            "possible_minor": item.possible_minor,
        }
        add(item.captured_at, 1, item.captured_by, fields)
    for note in notes:
        assert cipher is not None
        actor = f"staff:{note.staff_id}" if note.staff_id else "system"
        fields = {"kind": "note", "id": note.id, "text": _note_text(cipher, note)}
        add(note.created_at, 2, actor, fields)
    for event, written in zip(events, event_texts, strict=True):
        fields = {
            "kind": "event",
            "id": event.id,
            "event": event.kind,
            "details": _details(event.details),
            "text": written,
        }
        add(event.at, 3, event.actor, fields)
    entries.sort(key=lambda entry: entry[0])
    return [shown for _, shown in entries[-limit:]], len(entries) > limit


def _details(text: str) -> dict[str, Any]:
    try:
        details = json.loads(text)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


async def _event_text(session: AsyncSession, keyring: Keyring, event: CaseEvent) -> str | None:
    try:
        return await event_text(session, keyring, event)
    except DecryptionError:
        # one unreadable line must not hide the rest of the case from the staff member
        log.warning("case event text does not decrypt", extra={"event": event.id})
        return None


# ---------------------------------------------------------------- canned responses


class TemplateError(HelplineError):
    status = 400
    code = "bad_template"


class UnknownPlaceholder(TemplateError):
    code = "unknown_placeholder"


def placeholders_in(body: str) -> list[str]:
    """The placeholders a template uses. Refuses (`TemplateError`) anything but `{name}` with a
    known name, and lone braces: a literal brace is written `{{` or `}}`."""
    try:
        parts = list(string.Formatter().parse(body))
    except ValueError as exc:
        raise TemplateError(
            f"body: {exc}; write a literal brace as {{{{ or }}}}", field="body"
        ) from None
    used: list[str] = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}"
            raise UnknownPlaceholder(
                f"body: unknown placeholder {shown}; the placeholders are "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                + "; write a literal brace as {{ or }}",
                field="body",
                placeholder=name,
            )
        if spec or conversion:
            raise TemplateError(
                f"body: write the placeholder as {{{name}}}, without a format or conversion",
                field="body",
                placeholder=name,
            )
        used.append(name)
    return used


def render(body: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders replaced by `values`, by name only. Anything that is
    not a valid known placeholder (stored before a rule changed) is left as written."""
    try:
        parts = list(string.Formatter().parse(body))
    except ValueError:
        return body
    out: list[str] = []
    for literal, name, spec, conversion in parts:
        out.append(literal)
        if name is None:
            continue
        if name in values and not spec and not conversion:
            out.append(values[name])
        else:
            out.append(
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
    return "".join(out)


def opening_hours_text(settings: Settings, language: str) -> str:
    """The opening hours setting in words of `language`: `mo-fr 09:00-21:00; sa 12:00-17:00`
    becomes `ma–vr 09:00–21:00, za 12:00–17:00` (or `Mon–Fri …` in English)."""
    names = DAY_NAMES.get(language, DAY_NAMES["en"])
    parts = []
    for part in filter(None, (p.strip().lower() for p in settings.opening_hours.split(";"))):
        days, _, times = part.partition(" ")
        shown = "–".join(names.get(day, day) for day in days.split("-"))
        parts.append(f"{shown} {times.strip().replace('-', '–')}")
    return ", ".join(parts)


def canned_json(response: CannedResponse) -> dict[str, Any]:
    return {
        "id": response.id,
        "language": response.language,
        "title": response.title,
        "body": response.body,
        "updated_at": as_utc(response.updated_at).isoformat(),
    }


async def all_canned(session: AsyncSession) -> list[CannedResponse]:
    rows = await session.execute(
        select(CannedResponse).order_by(
            col(CannedResponse.language), col(CannedResponse.title), col(CannedResponse.id)
        )
    )
    return list(rows.scalars().all())


def rendered_for_case(
    responses: Iterable[CannedResponse], case: Case, agent_name: str, settings: Settings
) -> list[dict[str, str]]:
    """Each response filled in for `case`, the case's language first."""
    result = []
    for response in sorted(responses, key=lambda r: (r.language != case.language, r.language)):
        values = {
            "reference": case.reference,
            "agent_name": agent_name,
            "helpline_name": HELPLINE_NAME,
            "opening_hours": opening_hours_text(settings, response.language),
        }
        result.append(
            {
                "id": response.id,
                "language": response.language,
                "title": response.title,
                "text": render(response.body, values),
            }
        )
    return result


# ---------------------------------------------------------------- endpoints


class NoteBody(Schema):
    model_config = ConfigDict(str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


class CannedBody(Schema):
    model_config = ConfigDict(str_strip_whitespace=True)

    language: Literal["nl", "en"]
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)


def _actor(request: Request) -> str:
    return f"staff:{request.state.principal.id}"


async def _audit_open(request: Request, case: Case, via: str) -> None:
    await record(
        request.state.session,
        services(request).clock,
        actor=_actor(request),
        action="case.open",
        target=f"case:{case.id}",
        details={"via": via},
    )


async def list_notes(request: Request) -> Response:
    case = await case_for_staff(request)
    await _audit_open(request, case, "notes")
    notes = await read_notes(request.state.session, services(request).keyring, case.id)
    return JSONResponse({"notes": notes})


async def create_note(request: Request) -> Response:
    case = await case_for_staff(request)
    body = await parse_body(request, NoteBody)
    found = services(request)
    session = request.state.session
    note = await add_note(
        session,
        found.keyring,
        found.clock,
        case_id=case.id,
        staff_id=request.state.principal.id,
        text=body.text,
    )
    names = await staff_names(session, [note.staff_id])
    publish_after_commit(request, ACTIVITY_CHANNEL, {"type": "case_changed", "case_id": case.id})
    return JSONResponse(note_json(note, body.text, names), status_code=201)


def _limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return TIMELINE_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= TIMELINE_MAX:
        raise Invalid(f"limit: a whole number from 1 to {TIMELINE_MAX}")
    return int(text)


async def case_timeline(request: Request) -> Response:
    limit = _limit(request)
    case = await case_for_staff(request)
    await _audit_open(request, case, "timeline")
    entries, truncated = await timeline(
        request.state.session, services(request).keyring, case.id, limit=limit
    )
    return JSONResponse({"entries": entries, "truncated": truncated})


async def case_canned(request: Request) -> Response:
    case = await case_for_staff(request)
    session = request.state.session
    me = await session.get(Staff, request.state.principal.id)
    agent_name = me.display_name if me is not None else ""
    responses = rendered_for_case(
        await all_canned(session), case, agent_name, services(request).settings
    )
    return JSONResponse({"responses": responses})


async def list_canned(request: Request) -> Response:
    responses = await all_canned(request.state.session)
    return JSONResponse(
        {"responses": [canned_json(r) for r in responses], "placeholders": list(PLACEHOLDERS)}
    )


async def _canned_body(request: Request) -> CannedBody:
    body = await parse_body(request, CannedBody)
    placeholders_in(body.body)
    return body


async def _audit_canned(request: Request, action: str, response: CannedResponse) -> None:
    await record(
        request.state.session,
        services(request).clock,
        actor=_actor(request),
        action=action,
        target=f"canned:{response.id}",
        details={"language": response.language},
    )


async def create_canned(request: Request) -> Response:
    body = await _canned_body(request)
    now = services(request).clock.now()
    response = CannedResponse(
        id=new_id(),
        language=body.language,
        title=body.title,
        body=body.body,
        updated_by=_actor(request),
        created_at=now,
        updated_at=now,
    )
    request.state.session.add(response)
    await request.state.session.flush()
    await _audit_canned(request, "canned.create", response)
    return JSONResponse(canned_json(response), status_code=201)


async def _canned(request: Request) -> CannedResponse:
    response = await request.state.session.get(CannedResponse, request.path_params["canned_id"])
    if response is None:
        raise NotFound("no such canned response")
    assert isinstance(response, CannedResponse)
    return response


async def update_canned(request: Request) -> Response:
    response = await _canned(request)
    body = await _canned_body(request)
    response.language, response.title, response.body = body.language, body.title, body.body
    response.updated_by, response.updated_at = _actor(request), services(request).clock.now()
    await request.state.session.flush()
    await _audit_canned(request, "canned.update", response)
    return JSONResponse(canned_json(response))


async def delete_canned(request: Request) -> Response:
    response = await _canned(request)
    await request.state.session.delete(response)
    await request.state.session.flush()
    await _audit_canned(request, "canned.delete", response)
    return JSONResponse({"deleted": True})


def casework_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}"
    canned = "/api/staff/canned"
    return [
        route(f"{case}/notes", list_notes, access=AGENT),
        route(f"{case}/notes", create_note, access=AGENT, methods=["POST"]),
        route(f"{case}/timeline", case_timeline, access=AGENT),
        route(f"{case}/canned", case_canned, access=AGENT),
        route(canned, list_canned, access=AGENT),
        route(canned, create_canned, access=SUPERVISOR, methods=["POST"]),
        route(f"{canned}/{{canned_id}}", update_canned, access=SUPERVISOR, methods=["PUT"]),
        route(f"{canned}/{{canned_id}}", delete_canned, access=SUPERVISOR, methods=["DELETE"]),
    ]
