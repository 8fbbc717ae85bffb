"""The life of a case: start, come back, write, read, claim, end, delete.

Plain functions on a session; they know nothing of HTTP or websockets. Callers commit, then
ring the bus (see `channel()`), so that listeners only ever look for rows that exist.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from helpline.cases.models import (
    OPEN_STATUSES,
    Case,
    CaseStatus,
    Channel,
    Message,
    Sender,
    VictimSession,
)
from helpline.cases.receipts import (
    LANGUAGES,
    check_passphrase,
    hash_passphrase,
    new_passphrase,
    new_reference,
    normalise_reference,
)
from helpline.core.audit import record
from helpline.core.clock import Clock, as_utc
from helpline.core.crypto import FieldCipher, Keyring, case_scope
from helpline.core.errors import (
    Conflict,
    Forbidden,
    HelplineError,
    Invalid,
    NotFound,
    Unauthorized,
)
from helpline.core.ids import new_id, new_token
from helpline.stats import counters
from helpline.triage.events import add_event
from helpline.triage.rules import compute_priority
from helpline.triage.vocabulary import CATEGORIES, POSSIBLE_MINOR

MAX_MESSAGE_CHARS = 4000
VICTIM_SESSION_HOURS = 12
QUEUE_CHANNEL = "queue"  # queue positions changed (a case came, was claimed, ended, left)
ACTIVITY_CHANNEL = "activity"  # something happened in a case (a message): for the console only
# what a victim may pick when starting: every category but "possible minor depicted", which
# only staff judge; the topic becomes the case's first category
TOPICS = tuple(code for code in CATEGORIES if code != POSSIBLE_MINOR)


def channel(case_id: str) -> str:
    """The bus channel on which a case's listeners are told that something changed."""
    return f"case:{case_id}"


class Locked(HelplineError):
    status = 423
    code = "locked"


class WrongPassphrase(Unauthorized):
    code = "wrong_passphrase"


class AlreadyClaimed(Conflict):
    code = "already_claimed"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- victims


@dataclass(frozen=True)
class Receipt:
    case: Case
    reference: str
    passphrase: str
    token: str


async def start_chat(
    session: AsyncSession, clock: Clock, *, language: str, topic: str | None
) -> Receipt:
    if language not in LANGUAGES:
        raise Invalid(f"language must be one of {', '.join(LANGUAGES)}")
    if topic is not None and topic not in TOPICS:
        raise Invalid("unknown topic")
    passphrase = new_passphrase(language)
    passphrase_hash = await asyncio.to_thread(hash_passphrase, passphrase)
    now = clock.now()
    for _ in range(5):  # a reference collision is rare (40 bits); try another
        reference = new_reference()
        exists = await session.execute(select(col(Case.id)).where(col(Case.reference) == reference))
        if exists.first() is None:
            break
    else:  # pragma: no cover - astronomically unlikely
        raise Conflict("could not allocate a case reference")
    case = Case(
        id=new_id(),
        reference=reference,
        channel=Channel.chat.value,
        language=language,
        topic=topic,
        category=topic,
        priority=int(compute_priority(topic, ())),
        passphrase_hash=passphrase_hash,
        created_at=now,
        queued_at=now,
        last_activity_at=now,
    )
    session.add(case)
    await session.flush()
    await counters.count_contact(session, None, case)
    token = await _open_victim_session(session, case, now)
    await record(
        session,
        clock,
        actor="victim",
        action="case.start",
        target=f"case:{case.id}",
        details={"channel": case.channel, "language": language},
    )
    return Receipt(case, reference, passphrase, token)


async def _open_victim_session(session: AsyncSession, case: Case, now: datetime) -> str:
    token = new_token()
    session.add(
        VictimSession(
            token_hash=_token_hash(token),
            case_id=case.id,
            created_at=now,
            expires_at=now + timedelta(hours=VICTIM_SESSION_HOURS),
        )
    )
    await session.flush()
    return token


async def resume(
    session: AsyncSession,
    clock: Clock,
    *,
    reference: str,
    passphrase: str,
    max_failures: int,
    lockout: timedelta,
) -> tuple[Case, str] | HelplineError:
    """Reference + passphrase → a new victim session. Wrong attempts count against the
    reference; after `max_failures` in a row it is locked for `lockout`.

    A refusal is returned, not raised, so that the caller still commits the failure count
    (raising would roll it back and make guessing free)."""
    now = clock.now()
    normalised = normalise_reference(reference)
    case = None
    if normalised is not None:
        case = (
            await session.execute(select(Case).where(col(Case.reference) == normalised))
        ).scalar_one_or_none()
    if case is not None and case.locked_until is not None and as_utc(case.locked_until) > now:
        retry_after = int((as_utc(case.locked_until) - now).total_seconds()) + 1
        return Locked(
            "too many wrong attempts; this reference is locked for now", retry_after=retry_after
        )
    stored = case.passphrase_hash if case is not None else None
    if not await asyncio.to_thread(check_passphrase, stored, passphrase) or case is None:
        if case is not None:
            case.failed_logins += 1
            if case.failed_logins >= max_failures:
                case.locked_until, case.failed_logins = now + lockout, 0
                await record(
                    session, clock, actor="victim", action="case.locked", target=f"case:{case.id}"
                )
            await session.flush()
        return WrongPassphrase("that reference and passphrase do not match")
    case.failed_logins, case.locked_until = 0, None
    token = await _open_victim_session(session, case, now)
    return case, token


async def find_case(session: AsyncSession, reference_or_id: str) -> Case:
    """A case by its reference (as a victim would type it) or its id."""
    reference = normalise_reference(reference_or_id)
    if reference is not None:
        found = (
            await session.execute(select(Case).where(col(Case.reference) == reference))
        ).scalar_one_or_none()
        if found is not None:
            return found
    case = await session.get(Case, reference_or_id)
    if case is None:
        raise NotFound("no case with that reference or id")
    return case


async def case_for_token(session: AsyncSession, clock: Clock, token: str) -> Case | None:
    row = await session.get(VictimSession, _token_hash(token))
    if row is None or as_utc(row.expires_at) <= clock.now():
        return None
    return await session.get(Case, row.case_id)


async def forget_token(session: AsyncSession, token: str) -> None:
    await session.execute(
        delete(VictimSession).where(col(VictimSession.token_hash) == _token_hash(token))
    )


def in_queue_by(now: datetime) -> ColumnElement[bool]:
    """Cases staff see in the queue at `now`: all but a callback whose first window has not
    opened yet (its `queued_at` lies ahead), unless the victim has written in the meantime or
    someone has the case already."""
    return or_(
        col(Case.queued_at) <= now,
        col(Case.awaiting_since).is_not(None),
        col(Case.assigned_staff_id).is_not(None),
    )


async def queue_position(
    session: AsyncSession, case: Case, *, now: datetime | None = None
) -> int | None:
    """1 for the next case staff will see; None if the case is not waiting. The queue's order:
    priority (most urgent first), then time in the queue (see `open_cases`). With `now`,
    cases not in the queue yet (`in_queue_by`) are not counted, and have no position."""
    if case.status != CaseStatus.new:
        return None
    if (
        now is not None
        and as_utc(case.queued_at) > now
        and case.awaiting_since is None
        and case.assigned_staff_id is None
    ):
        return None
    ahead = await session.execute(
        select(func.count())
        .select_from(Case)
        .where(
            in_queue_by(now) if now is not None else true(),
            col(Case.status) == CaseStatus.new,
            col(Case.id) != case.id,
            or_(
                col(Case.priority) < case.priority,
                and_(col(Case.priority) == case.priority, col(Case.queued_at) < case.queued_at),
                and_(
                    col(Case.priority) == case.priority,
                    col(Case.queued_at) == case.queued_at,
                    col(Case.id) < case.id,
                ),
            ),
        )
    )
    return int(ahead.scalar_one()) + 1


# ---------------------------------------------------------------- messages

_CASES = cast(Table, Case.__table__)  # type: ignore[attr-defined]  # set by SQLModel
_MESSAGES = cast(Table, Message.__table__)  # type: ignore[attr-defined]
_MESSAGE_COLUMNS = ("id", "case_id", "seq", "client_id", "sender", "staff_id", "body", "created_at")
# the chat's hot path runs prebuilt Core statements: building one costs more than running it
_STORE_STATEMENTS: dict[tuple[Sender, bool, bool], _StoreStatement] = {}


class CaseClosed(Conflict):
    code = "ended"


class NotAssigned(Forbidden):
    """Staff write only in a case they have: one released or transferred is no longer theirs."""

    code = "not_assigned"


async def post_message(
    session: AsyncSession | AsyncConnection,
    keyring: Keyring,
    clock: Clock,
    *,
    case_id: str,
    sender: Sender,
    text: str,
    client_id: str,
    staff_id: str | None = None,
    cipher: FieldCipher | None = None,
    if_open: bool = False,
    writer: str | None = None,
) -> tuple[Message, bool]:
    """Store a message under the next sequence number of its case, encrypted, and update the
    case's service-level bookkeeping in the same transaction. A message whose `client_id` the
    case already has is not stored again: the existing one is returned with `False`, so a
    retried send is acknowledged with the same number. With `if_open`, nothing is stored in a
    closed case (`CaseClosed`), so a caller need not read the case first. With `writer` (a
    staff id), nothing is stored unless the case is assigned to that staff member
    (`NotAssigned`): checked in the same statement, so a case released or transferred a moment
    ago takes no more messages from its former holder.

    This is the chat's hot path, so it runs Core statements, not the unit of work. On
    PostgreSQL one statement does it all: it locks the case row (so two senders never share a
    number, and the numbers commit in order), inserts under `last_seq + 1` unless the
    (case_id, client_id) constraint says the message is there already, and only then bumps the
    case. So on PostgreSQL the store needs no transaction around it: a connection in
    autocommit mode (and a `cipher`) will do, one round trip. On SQLite the transaction holds
    the write lock from its start (`BEGIN IMMEDIATE`), so looking for the client_id first
    cannot race."""
    text = text.strip()
    if not text:
        raise Invalid("a message cannot be empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise Invalid(f"a message can have at most {MAX_MESSAGE_CHARS} characters")
    if not client_id or len(client_id) > 64:
        raise Invalid("client_id must be 1-64 characters")
    if isinstance(session, AsyncSession):
        if session.new or session.dirty or session.deleted:
            await session.flush()  # Core statements do not flush the caller's pending changes
        cipher = cipher or await keyring.cipher(session, case_scope(case_id))
        dialect = session.get_bind().dialect.name
    elif cipher is None:
        raise ValueError("storing over a bare connection needs the case's cipher")
    else:
        dialect = session.dialect.name
    message_id, now = new_id(), clock.now()
    values: dict[str, Any] = {
        "id": message_id,
        "case_id": case_id,
        "client_id": client_id,
        "sender": sender.value,
        "staff_id": staff_id,
        "body": cipher.encrypt(text, table="messages", row_id=message_id, field="body"),
        "created_at": now,
    }
    seq: int | None
    if dialect == "postgresql":
        key = (sender, if_open, writer is not None)
        store = _STORE_STATEMENTS.get(key)
        if store is None:
            store = _STORE_STATEMENTS[key] = _StoreStatement.build(*key)
        # parameters named like no column: an UPDATE would take those as values to SET
        parameters = {f"m_{name}": value for name, value in values.items()}
        if writer is not None:
            parameters["m_writer"] = writer
        seq = await store.run(session, parameters)
    else:
        seq = None
        if (await _message_by_client_id(session, case_id, client_id)) is None:
            bumped = update(_CASES).where(_CASES.c.id == case_id)
            if if_open:
                bumped = bumped.where(_CASES.c.status != CaseStatus.closed.value)
            if writer is not None:
                bumped = bumped.where(_CASES.c.assigned_staff_id == writer)
            seq = (
                await session.execute(
                    bumped.values(
                        last_seq=_CASES.c.last_seq + 1,
                        last_activity_at=now,
                        **_service_level_values(sender, now),
                    ).returning(_CASES.c.last_seq)
                )
            ).scalar_one_or_none()
            if seq is not None:
                await session.execute(insert(_MESSAGES).values(seq=seq, **values))
    if seq is not None:
        return Message(seq=seq, **values), True
    # nothing stored: a retry (perhaps one that raced its original), or no open case
    existing = await _message_by_client_id(session, case_id, client_id)
    if existing is not None:
        return existing, False
    found = (
        await session.execute(
            select(_CASES.c.status, _CASES.c.assigned_staff_id).where(_CASES.c.id == case_id)
        )
    ).first()
    if found is None:
        raise NotFound("no such case")
    status, assigned = found
    if if_open and status == CaseStatus.closed:
        raise CaseClosed("this conversation has ended")
    if writer is not None and assigned != writer:
        raise NotAssigned("this case is no longer yours: claim it, or ask who has it")
    raise Conflict("the message could not be stored; send it again")  # pragma: no cover


async def _message_by_client_id(
    session: AsyncSession | AsyncConnection, case_id: str, client_id: str
) -> Message | None:
    row = (
        await session.execute(
            select(*(_MESSAGES.c[name] for name in _MESSAGE_COLUMNS)).where(
                _MESSAGES.c.case_id == case_id, _MESSAGES.c.client_id == client_id
            )
        )
    ).first()
    return Message(**row._asdict()) if row is not None else None


@dataclass(frozen=True)
class _StoreStatement:
    """The PostgreSQL store statement, and the same compiled once for asyncpg itself."""

    statement: Select[Any]
    sql: str | None  # None: run it through SQLAlchemy only
    order: tuple[str, ...]
    defaults: dict[str, Any]

    @classmethod
    def build(cls, sender: Sender, if_open: bool, assigned: bool) -> _StoreStatement:
        statement = _store_statement(sender, if_open, assigned)
        placeholders = {f"m_{name}": None for name in _MESSAGE_COLUMNS if name != "seq"}
        if assigned:
            placeholders["m_writer"] = None
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        expanded = statement.compile(dialect=dialect).construct_expanded_state(placeholders)
        plain = not expanded.processors and expanded.positiontup is not None
        return cls(
            statement,
            expanded.statement if plain else None,
            tuple(expanded.positiontup or ()),
            dict(expanded.parameters),
        )

    async def run(
        self, session: AsyncSession | AsyncConnection, parameters: dict[str, Any]
    ) -> int | None:
        if self.sql is not None and isinstance(session, AsyncConnection):
            raw = await session.get_raw_connection()
            if getattr(raw.dbapi_connection, "autocommit", False):
                # one statement in autocommit mode (the chat's lane): straight to the driver,
                # which saves SQLAlchemy's execution overhead on every message
                arguments = [parameters.get(name, self.defaults[name]) for name in self.order]
                driver = raw.driver_connection
                assert driver is not None
                seq: int | None = await driver.fetchval(self.sql, *arguments)
                return seq
        seq = (await session.execute(self.statement, parameters)).scalar_one_or_none()
        return seq


def _store_statement(sender: Sender, if_open: bool, assigned: bool) -> Select[Any]:
    """PostgreSQL: lock the case, insert the message under the next number unless its
    client_id is known, then bump the case; returns the new number, or no row if nothing was
    stored. (The three parts share one snapshot, so the bump reads the number the insert got
    from the insert's RETURNING; the lock taken first makes that number the case's next.)"""
    now = bindparam("m_created_at", type_=_CASES.c.last_activity_at.type)
    locked = select((_CASES.c.last_seq + 1).label("seq")).where(
        _CASES.c.id == bindparam("m_case_id", type_=_CASES.c.id.type)
    )
    if if_open:
        locked = locked.where(_CASES.c.status != CaseStatus.closed.value)
    if assigned:
        writer = bindparam("m_writer", type_=_CASES.c.assigned_staff_id.type)
        locked = locked.where(_CASES.c.assigned_staff_id == writer)
    locked_cte = locked.with_for_update().cte("locked")
    row = [
        locked_cte.c.seq if name == "seq" else bindparam(f"m_{name}", type_=_MESSAGES.c[name].type)
        for name in _MESSAGE_COLUMNS
    ]
    stored = (
        pg_insert(_MESSAGES)
        .from_select(list(_MESSAGE_COLUMNS), select(*row))
        .on_conflict_do_nothing(index_elements=[_MESSAGES.c.case_id, _MESSAGES.c.client_id])
        .returning(_MESSAGES.c.seq, _MESSAGES.c.case_id)
        .cte("stored")
    )
    bumped = (
        update(_CASES)
        .where(_CASES.c.id == stored.c.case_id)  # no row stored, nothing bumped
        .values(last_seq=stored.c.seq, last_activity_at=now, **_service_level_values(sender, now))
        .returning(_CASES.c.last_seq)
        .cte("bumped")
    )
    return select(bumped.c.last_seq)


def _service_level_values(
    sender: Sender, now: datetime | ColumnElement[datetime]
) -> dict[str, Any]:
    """What a new message changes in the case's service-level bookkeeping: a victim's message
    starts the wait for an answer (unless one is already waiting) and brings a case that was
    waiting for the victim back into the conversation; a staff message answers everything
    waiting and may be the first response. For Core updates of the cases table."""
    if sender == Sender.victim:
        return {
            "awaiting_since": func.coalesce(_CASES.c.awaiting_since, now),
            "status": sql_case(
                (_CASES.c.status == CaseStatus.waiting_victim, CaseStatus.in_conversation.value),
                else_=_CASES.c.status,
            ),
        }
    if sender == Sender.staff:
        return {
            "awaiting_since": None,
            "first_response_at": func.coalesce(_CASES.c.first_response_at, now),
        }
    return {}


async def messages_after(
    session: AsyncSession,
    keyring: Keyring,
    case_id: str,
    after: int,
    *,
    limit: int = 500,
    cipher: FieldCipher | None = None,
) -> list[dict[str, Any]]:
    """The case's messages with `seq > after` (at most `limit`), decrypted, as `message`
    frames (with the case's cipher if the caller holds it already)."""
    rows = (
        await session.execute(
            select(
                _MESSAGES.c.id,
                _MESSAGES.c.seq,
                _MESSAGES.c.client_id,
                _MESSAGES.c.sender,
                _MESSAGES.c.body,
                _MESSAGES.c.created_at,
            )
            .where(_MESSAGES.c.case_id == case_id, _MESSAGES.c.seq > after)
            .order_by(_MESSAGES.c.seq)
            .limit(limit)
        )
    ).all()
    if not rows:
        return []
    cipher = cipher or await keyring.cipher(session, case_scope(case_id), create=False)
    return [
        {
            "type": "message",
            "seq": row.seq,
            "client_id": row.client_id,
            "from": row.sender,
            "text": cipher.decrypt_text(row.body, table="messages", row_id=row.id, field="body"),
            "at": as_utc(row.created_at).isoformat(),
        }
        for row in rows
    ]


async def mark_read(
    session: AsyncSession | AsyncConnection, case_id: str, side: Sender, seq: int
) -> bool:
    """Record that `side` has seen everything up to `seq`; False if that was known. (One
    statement: a connection in autocommit mode will do.)"""
    column = _CASES.c.victim_read_seq if side == Sender.victim else _CASES.c.staff_read_seq
    result = await session.execute(
        update(_CASES)
        .where(_CASES.c.id == case_id, column < seq, _CASES.c.last_seq >= seq)
        .values({column: seq})
    )
    return bool(result.rowcount) if isinstance(result, CursorResult) else False


# ---------------------------------------------------------------- staff


async def claim(session: AsyncSession, clock: Clock, case_id: str, staff_id: str) -> Case:
    """Give a waiting case to one staff member; a second claimant gets `Conflict`."""
    result = await session.execute(
        update(Case)
        .where(
            col(Case.id) == case_id,
            col(Case.status) == CaseStatus.new,
            col(Case.assigned_staff_id).is_(None),
        )
        .values(
            assigned_staff_id=staff_id,
            status=CaseStatus.in_conversation.value,
            claimed_at=clock.now(),
        )
    )
    if not (isinstance(result, CursorResult) and result.rowcount):
        if await session.get(Case, case_id) is None:
            raise NotFound("no such case")
        raise AlreadyClaimed("someone else has this case already")
    case = await session.get(Case, case_id, populate_existing=True)
    assert case is not None
    await add_event(
        session,
        clock,
        case,
        actor=f"staff:{staff_id}",
        kind="claim",
        action="case.claim",
        details={"to": staff_id},
    )
    return case


async def end(session: AsyncSession, clock: Clock, case: Case, *, by: str) -> None:
    """The victim ends their own chat (staff close a case with an outcome instead:
    `helpline.triage.service.close`). No outcome: staff may still set one later."""
    if case.status == CaseStatus.closed:
        return
    case.status, case.ended_at, case.outcome = CaseStatus.closed.value, clock.now(), None
    case.awaiting_since = None  # nothing is waiting for an answer in a closed case
    await counters.count_case_closed(session, None, case, now=clock.now(), reason="ended")
    await session.flush()
    await add_event(
        session, clock, case, actor=by, kind="end", action="case.end", details={"by": by}
    )


async def reopen(session: AsyncSession, clock: Clock, case: Case) -> None:
    """A victim who writes to an ended conversation is back in the queue."""
    await counters.count_case_reopened(session, None, case, now=clock.now())
    case.status, case.assigned_staff_id, case.ended_at = CaseStatus.new.value, None, None
    case.claimed_at, case.outcome, case.awaiting_since = None, None, None
    case.queued_at = clock.now()  # in the queue from the moment they came back
    await session.flush()
    await add_event(session, clock, case, actor="victim", kind="reopen", action="case.reopen")


async def delete_case(session: AsyncSession, keyring: Keyring, clock: Clock, case: Case) -> None:
    """Crypto-shred the case (its data key is destroyed), then delete its rows."""
    await counters.count_case_closed(session, None, case, now=clock.now(), reason="deleted")
    await keyring.shred(session, case_scope(case.id))
    await session.execute(delete(Message).where(col(Message.case_id) == case.id))
    await session.execute(delete(VictimSession).where(col(VictimSession.case_id) == case.id))
    await session.delete(case)
    await session.flush()
    await record(session, clock, actor="victim", action="case.delete", target=f"case:{case.id}")


async def open_cases(
    session: AsyncSession,
    *,
    channel: str | None = None,
    category: str | None = None,
    language: str | None = None,
    status: str | None = None,
    assigned_to: str | None = None,
    unassigned: bool = False,
    now: datetime | None = None,
) -> list[Case]:
    """The queue: open cases, most urgent priority first, then longest in the queue first.
    Each filter given narrows it (`assigned_to` a staff id, `unassigned` nobody's). With
    `now`, only the cases in the queue by then (`in_queue_by`: a callback joins it when its
    first window opens); without, every open case."""
    query = select(Case).where(col(Case.status).in_(OPEN_STATUSES))
    if now is not None:
        query = query.where(in_queue_by(now))
    if channel is not None:
        query = query.where(col(Case.channel) == channel)
    if category is not None:
        query = query.where(col(Case.category) == category)
    if language is not None:
        query = query.where(col(Case.language) == language)
    if status is not None:
        query = query.where(col(Case.status) == status)
    if assigned_to is not None:
        query = query.where(col(Case.assigned_staff_id) == assigned_to)
    if unassigned:
        query = query.where(col(Case.assigned_staff_id).is_(None))
    query = query.order_by(col(Case.priority), col(Case.queued_at), col(Case.id))
    return list((await session.execute(query)).scalars().all())
