"""Callback requests: filed by a victim (a new case, or inside their chat), called by the staff
member who has the case, and the number deleted as soon as it is not needed any more.

A new callback case joins the queue at the start of its first window (at once if the victim
marked it urgent): its `queued_at` is that moment, so the queue (`open_cases` with `now`), the
victim's queue position and the first-response SLA all count from there. Plain functions on a
session, in the caller's transaction; the caller rings the bus after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases import service
from helpline.cases.models import Case, CaseEvent, CaseStatus, Channel
from helpline.cases.receipts import LANGUAGES, hash_passphrase, new_passphrase, new_reference
from helpline.core.audit import record
from helpline.core.clock import Clock, as_utc
from helpline.core.config import Settings
from helpline.core.crypto import FieldCipher, Keyring, case_scope
from helpline.core.errors import Conflict, Invalid, NotFound
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.intake.callback.models import (
    FINISHING,
    AttemptOutcome,
    CallbackRequest,
    CallbackState,
)
from helpline.intake.callback.validation import (
    Window,
    check_code_word,
    check_windows,
    normalise_number,
    windows_to_json,
)
from helpline.stats import counters
from helpline.triage.events import add_event, event_details, event_text, staff_actor
from helpline.triage.rules import compute_priority

log = logging.getLogger("helpline.callback")

TABLE = "callback_requests"
JOB_NAME = "callback-sweep"
JOB_INTERVAL = timedelta(seconds=30)
MAX_NOTE_CHARS = 1000
# timeline entries (case_events kinds)
REQUESTED, ATTEMPT, CONTACT_DELETED, PASSPHRASE = (
    "callback_requested",
    "callback_attempt",
    "callback_contact_deleted",
    "passphrase_issued",
)


class CallbackPending(Conflict):
    code = "callback_pending"


class NoCallback(NotFound):
    code = "no_callback"


# ---------------------------------------------------------------- filing a request


@dataclass(frozen=True)
class CallbackDetails:
    """A request as checked: what gets stored."""

    number: str  # E.164
    code_word: str
    windows: list[Window]
    urgent: bool
    voicemail_safe: bool
    may_say_name: bool


def check_request(
    settings: Settings,
    now: datetime,
    *,
    phone: str,
    code_word: str,
    windows: list[tuple[datetime, datetime]],
    urgent: bool,
    voicemail_safe: bool,
    may_say_name: bool,
) -> CallbackDetails:
    """Everything the victim filled in, checked (`CallbackInvalid` says what is wrong)."""
    return CallbackDetails(
        number=normalise_number(phone, settings.callback_region),
        code_word=check_code_word(code_word),
        windows=check_windows(
            windows,
            now=now,
            zone=ZoneInfo(settings.timezone),
            hours=settings.hours,
            horizon=timedelta(days=settings.retention_callback_days),
        ),
        urgent=urgent,
        voicemail_safe=voicemail_safe,
        may_say_name=may_say_name,
    )


@dataclass(frozen=True)
class Filed:
    case: Case
    request: CallbackRequest
    passphrase: str | None = None  # only when the victim asked to continue in the chat
    token: str | None = None


async def _free_reference(session: AsyncSession) -> str:
    for _ in range(5):  # a reference collision is rare (40 bits); try another
        reference = new_reference()
        exists = await session.execute(select(col(Case.id)).where(col(Case.reference) == reference))
        if exists.first() is None:
            return reference
    raise Conflict("could not allocate a case reference")  # pragma: no cover


async def file_new_case(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    details: CallbackDetails,
    *,
    language: str,
    topic: str | None,
    with_chat: bool,
) -> Filed:
    """A new case (channel `callback`) with the request. It joins the queue when its first
    window opens, or now if urgent. With `with_chat` the victim also gets a reference and
    passphrase (and a chat session) to continue in the chat, as at chat start."""
    if language not in LANGUAGES:
        raise Invalid(f"language must be one of {', '.join(LANGUAGES)}")
    if topic is not None and topic not in service.TOPICS:
        raise Invalid("unknown topic")
    now = clock.now()
    passphrase = new_passphrase(language) if with_chat else None
    passphrase_hash = (
        await asyncio.to_thread(hash_passphrase, passphrase) if passphrase is not None else None
    )
    in_queue_from = now if details.urgent else max(now, details.windows[0].start)
    case = Case(
        id=new_id(),
        reference=await _free_reference(session),
        channel=Channel.callback.value,
        language=language,
        topic=topic,
        category=topic,
        priority=int(compute_priority(topic, ())),
        passphrase_hash=passphrase_hash,
        created_at=now,
        queued_at=in_queue_from,
        last_activity_at=now,
    )
    session.add(case)
    await session.flush()
    await counters.count_contact(session, None, case)
    await record(
        session,
        clock,
        actor="victim",
        action="case.start",
        target=f"case:{case.id}",
        details={"channel": case.channel, "language": language},
    )
    request = await _add_request(
        session, keyring, clock, case, details, source="start", announced=in_queue_from <= now
    )
    token = None
    if with_chat:
        # the chat's own session opener: the same kind of token the chat start hands out
        token = await service._open_victim_session(session, case, now)
    return Filed(case, request, passphrase, token)


async def file_in_chat(
    session: AsyncSession, keyring: Keyring, clock: Clock, case: Case, details: CallbackDetails
) -> Filed:
    """A request from inside an open chat: attached to that case, which stays where it is in
    the queue (or with the staff member who has it)."""
    if case.status == CaseStatus.closed:
        raise service.CaseClosed("this conversation has ended")
    if await pending_request(session, case.id) is not None:
        raise CallbackPending("there is a callback request waiting already")
    request = await _add_request(session, keyring, clock, case, details, source="chat")
    case.last_activity_at = clock.now()
    await session.flush()
    return Filed(case, request)


async def _add_request(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    case: Case,
    details: CallbackDetails,
    *,
    source: str,
    announced: bool = True,
) -> CallbackRequest:
    now = clock.now()
    cipher = await keyring.cipher(session, case_scope(case.id))
    request_id = new_id()
    request = CallbackRequest(
        id=request_id,
        case_id=case.id,
        source=source,
        windows=windows_to_json(details.windows),
        first_window_start=details.windows[0].start,
        last_window_end=details.windows[-1].end,
        urgent=details.urgent,
        voicemail_safe=details.voicemail_safe,
        may_say_name=details.may_say_name,
        phone=cipher.encrypt(details.number, table=TABLE, row_id=request_id, field="phone"),
        code_word=cipher.encrypt(
            details.code_word, table=TABLE, row_id=request_id, field="code_word"
        ),
        announced=announced,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    await session.flush()
    await add_event(
        session,
        clock,
        case,
        actor="victim",
        kind=REQUESTED,
        action="callback.request",
        details={
            "request": request.id,
            "source": source,
            "windows": len(details.windows),
            "urgent": details.urgent,
            "voicemail_safe": details.voicemail_safe,
            "may_say_name": details.may_say_name,
        },
    )
    return request


# ---------------------------------------------------------------- reading


async def latest_request(
    session: AsyncSession, case_id: str, *, for_update: bool = False
) -> CallbackRequest | None:
    query = (
        select(CallbackRequest)
        .where(col(CallbackRequest.case_id) == case_id)
        .order_by(col(CallbackRequest.created_at).desc(), col(CallbackRequest.id).desc())
        .limit(1)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def pending_request(session: AsyncSession, case_id: str) -> CallbackRequest | None:
    found = await latest_request(session, case_id)
    return found if found is not None and found.state == CallbackState.pending else None


@dataclass(frozen=True)
class Contact:
    number: str  # E.164
    code_word: str


async def _cipher(session: AsyncSession, keyring: Keyring, case_id: str) -> FieldCipher:
    return await keyring.cipher(session, case_scope(case_id), create=False)


async def read_contact(
    session: AsyncSession, keyring: Keyring, request: CallbackRequest
) -> Contact | None:
    """The number and code word, decrypted; None once they are deleted."""
    if request.phone is None or request.code_word is None:
        return None
    cipher = await _cipher(session, keyring, request.case_id)
    return Contact(
        cipher.decrypt_text(request.phone, table=TABLE, row_id=request.id, field="phone"),
        cipher.decrypt_text(request.code_word, table=TABLE, row_id=request.id, field="code_word"),
    )


@dataclass(frozen=True)
class Attempt:
    at: datetime
    outcome: str
    staff_id: str | None
    note: str | None


async def attempts_of(
    session: AsyncSession, keyring: Keyring, request: CallbackRequest
) -> list[Attempt]:
    rows = await session.execute(
        select(CaseEvent)
        .where(col(CaseEvent.case_id) == request.case_id, col(CaseEvent.kind) == ATTEMPT)
        .order_by(col(CaseEvent.at), col(CaseEvent.id))
    )
    found: list[Attempt] = []
    for event in rows.scalars():
        details = event_details(event)
        if details.get("request") != request.id:
            continue
        staff_id = event.actor.removeprefix("staff:") if event.actor.startswith("staff:") else None
        found.append(
            Attempt(
                as_utc(event.at),
                str(details.get("outcome")),
                staff_id,
                await event_text(session, keyring, event),
            )
        )
    return found


# ---------------------------------------------------------------- calling, and forgetting


async def delete_contact(
    session: AsyncSession,
    clock: Clock,
    case: Case,
    request: CallbackRequest,
    *,
    state: CallbackState,
    reason: str,
    actor: str,
) -> None:
    """Delete the number and the code word: the columns are set to NULL and the row written
    again (SQLite overwrites the old content, `secure_delete`; PostgreSQL's old row version
    is vacuumed, and its content was encrypted under the case key all along)."""
    now = clock.now()
    request.state = state.value
    had_contact = request.phone is not None or request.code_word is not None
    request.phone, request.code_word = None, None
    request.updated_at = now
    if had_contact:
        request.contact_deleted_at = now
    await session.flush()
    if had_contact:
        await add_event(
            session,
            clock,
            case,
            actor=actor,
            kind=CONTACT_DELETED,
            action="callback.contact_deleted",
            details={"request": request.id, "reason": reason, "state": state.value},
        )


async def record_attempt(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    case: Case,
    request: CallbackRequest,
    *,
    staff_id: str,
    outcome: AttemptOutcome,
    note: str | None,
) -> None:
    """One call and how it went. A first call counts as the case's first response; after
    `reached` or `wrong_number` the number and code word are deleted."""
    if note is not None:
        note = note.strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise Invalid(f"note: at most {MAX_NOTE_CHARS} characters")
    now = clock.now()
    request.attempts += 1
    request.updated_at = now
    case.last_activity_at = now
    if case.first_response_at is None:
        case.first_response_at = now
    await session.flush()
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind=ATTEMPT,
        action="callback.attempt",
        details={"request": request.id, "outcome": outcome.value, "attempt": request.attempts},
        text=note,
        keyring=keyring,
    )
    finished = FINISHING.get(outcome)
    if finished is not None and request.state == CallbackState.pending:
        await delete_contact(
            session,
            clock,
            case,
            request,
            state=finished,
            reason=outcome.value,
            actor=staff_actor(staff_id),
        )


async def withdraw(session: AsyncSession, clock: Clock, case: Case) -> CallbackRequest:
    """The victim no longer wants to be called: the waiting request ends, the number goes."""
    request = await pending_request(session, case.id)
    if request is None:
        raise NoCallback("there is no callback request waiting")
    await delete_contact(
        session,
        clock,
        case,
        request,
        state=CallbackState.cancelled,
        reason="withdrawn",
        actor="victim",
    )
    return request


async def issue_passphrase(
    session: AsyncSession, clock: Clock, case: Case, *, staff_id: str
) -> str:
    """A new passphrase for the case (replacing any earlier one), for the staff member to read
    out on the phone: with it and the reference the victim continues in the chat."""
    passphrase = new_passphrase(case.language)
    case.passphrase_hash = await asyncio.to_thread(hash_passphrase, passphrase)
    case.failed_logins, case.locked_until = 0, None
    await session.flush()
    await add_event(
        session,
        clock,
        case,
        actor=staff_actor(staff_id),
        kind=PASSPHRASE,
        action="callback.passphrase",
    )
    return passphrase


# ---------------------------------------------------------------- the scheduled sweep


@dataclass
class Swept:
    finished: list[str] = field(default_factory=list)  # case ids whose request ended now
    joined_queue: list[str] = field(default_factory=list)  # case ids whose window opened

    def __bool__(self) -> bool:
        return bool(self.finished or self.joined_queue)


async def sweep(
    session: AsyncSession, clock: Clock, now: datetime, *, keep_for: timedelta
) -> Swept:
    """End every waiting request whose last window has passed (`expired`), whose case was
    closed, or that is older than `keep_for` (`cancelled`), deleting its number and code word;
    and note the callback cases that joined the queue since the last sweep. Idempotent."""
    swept = Swept()
    rows = await session.execute(
        select(CallbackRequest, Case)
        .join(Case, col(Case.id) == col(CallbackRequest.case_id))
        .where(
            col(CallbackRequest.state) == CallbackState.pending,
            or_(
                col(CallbackRequest.last_window_end) <= now,
                col(CallbackRequest.created_at) <= now - keep_for,
                col(Case.status) == CaseStatus.closed,
            ),
        )
        .with_for_update(of=CallbackRequest, skip_locked=True)
    )
    for request, case in rows.all():
        if case.status == CaseStatus.closed:
            state, reason = CallbackState.cancelled, "case_closed"
        elif as_utc(request.last_window_end) <= now:
            state, reason = CallbackState.expired, "windows_passed"
        else:
            state, reason = CallbackState.cancelled, "kept_too_long"
        await delete_contact(
            session, clock, case, request, state=state, reason=reason, actor="system"
        )
        swept.finished.append(case.id)
    opened = await session.execute(
        select(CallbackRequest)
        .join(Case, col(Case.id) == col(CallbackRequest.case_id))
        .where(
            col(CallbackRequest.state) == CallbackState.pending,
            col(CallbackRequest.announced).is_(False),
            col(Case.queued_at) <= now,
        )
        .with_for_update(of=CallbackRequest, skip_locked=True)
    )
    for request in opened.scalars():
        request.announced = True
        swept.joined_queue.append(request.case_id)
    await session.flush()
    return swept


def sweep_job(found: Services, console_channel: str) -> Callable[[datetime], Awaitable[None]]:
    """The scheduled job: sweep, then tell the consoles (and the victims in the queue)."""

    async def run(now: datetime) -> None:
        keep_for = timedelta(days=found.settings.retention_callback_days)
        async with found.db.transaction() as session:
            swept = await sweep(session, found.clock, now, keep_for=keep_for)
        if not swept:
            return
        await found.bus.publish(service.QUEUE_CHANNEL, {"type": "queue_changed"})
        for case_id in dict.fromkeys(swept.finished + swept.joined_queue):
            message: dict[str, Any] = {"type": "case_changed", "case_id": case_id}
            await found.bus.publish(console_channel, message)
        log.info(
            "callback sweep",
            extra={"finished": len(swept.finished), "joined_queue": len(swept.joined_queue)},
        )

    return run
