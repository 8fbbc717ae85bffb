"""The life of a case: start, come back, write, read, claim, end, delete.

Plain functions on a session; they know nothing of HTTP or websockets. Callers commit, then
ring the bus (see `channel()`), so that listeners only ever look for rows that exist.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
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
from helpline.core.errors import Conflict, HelplineError, Invalid, NotFound, Unauthorized
from helpline.core.ids import new_id, new_token

MAX_MESSAGE_CHARS = 4000
VICTIM_SESSION_HOURS = 12
QUEUE_CHANNEL = "queue"  # queue positions changed (a case came, was claimed, ended, left)
ACTIVITY_CHANNEL = "activity"  # something happened in a case (a message): for the console only
TOPICS = (
    "intimate_images",
    "sextortion",
    "deepfake",
    "doxxing",
    "impersonation",
    "harassment",
    "privacy",
    "grooming",
    "other",
)


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
        passphrase_hash=passphrase_hash,
        created_at=now,
        queued_at=now,
        last_activity_at=now,
    )
    session.add(case)
    await session.flush()
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


async def queue_position(session: AsyncSession, case: Case) -> int | None:
    """1 for the next case staff will see; None if the case is not waiting."""
    if case.status != CaseStatus.new:
        return None
    ahead = await session.execute(
        select(func.count())
        .select_from(Case)
        .where(col(Case.status) == CaseStatus.new, col(Case.queued_at) < case.queued_at)
    )
    return int(ahead.scalar_one()) + 1


# ---------------------------------------------------------------- messages


async def post_message(
    session: AsyncSession,
    keyring: Keyring,
    clock: Clock,
    *,
    case_id: str,
    sender: Sender,
    text: str,
    client_id: str,
    staff_id: str | None = None,
    cipher: FieldCipher | None = None,
) -> tuple[Message, bool]:
    """Store a message under the next sequence number of its case, encrypted. A message whose
    `client_id` the case already has is not stored again: the existing one is returned with
    `False`, so a retried send is acknowledged with the same number."""
    text = text.strip()
    if not text:
        raise Invalid("a message cannot be empty")
    if len(text) > MAX_MESSAGE_CHARS:
        raise Invalid(f"a message can have at most {MAX_MESSAGE_CHARS} characters")
    if not client_id or len(client_id) > 64:
        raise Invalid("client_id must be 1-64 characters")
    existing = (
        await session.execute(
            select(Message).where(
                col(Message.case_id) == case_id, col(Message.client_id) == client_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    # the increment takes the case row's lock (PostgreSQL) or the write lock (SQLite): two
    # senders never get the same number
    bumped = await session.execute(
        update(Case)
        .where(col(Case.id) == case_id)
        .values(
            last_seq=col(Case.last_seq) + 1,
            last_activity_at=clock.now(),
            **_service_level_values(sender, clock.now()),
        )
        .returning(col(Case.last_seq))
    )
    seq = bumped.scalar_one_or_none()
    if seq is None:
        raise NotFound("no such case")
    message_id = new_id()
    cipher = cipher or await keyring.cipher(session, case_scope(case_id))
    message = Message(
        id=message_id,
        case_id=case_id,
        seq=seq,
        client_id=client_id,
        sender=sender.value,
        staff_id=staff_id,
        body=cipher.encrypt(text, table="messages", row_id=message_id, field="body"),
        created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(message)
    except IntegrityError:  # the same client_id raced in on another connection
        raced = (
            await session.execute(
                select(Message).where(
                    col(Message.case_id) == case_id, col(Message.client_id) == client_id
                )
            )
        ).scalar_one()
        return raced, False
    return message, True


def _service_level_values(sender: Sender, now: datetime) -> dict[str, Any]:
    """What a new message changes in the case's service-level bookkeeping: a victim's message
    starts the wait for an answer (unless one is already waiting) and brings a case that was
    waiting for the victim back into the conversation; a staff message answers everything
    waiting and may be the first response."""
    if sender == Sender.victim:
        return {
            "awaiting_since": func.coalesce(col(Case.awaiting_since), now),
            "status": sql_case(
                (col(Case.status) == CaseStatus.waiting_victim, CaseStatus.in_conversation.value),
                else_=col(Case.status),
            ),
        }
    if sender == Sender.staff:
        return {
            "awaiting_since": None,
            "first_response_at": func.coalesce(col(Case.first_response_at), now),
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
    """The case's messages with `seq > after`, decrypted, as `message` frames (with the
    case's cipher if the caller holds it already)."""
    rows = (
        (
            await session.execute(
                select(Message)
                .where(col(Message.case_id) == case_id, col(Message.seq) > after)
                .order_by(col(Message.seq))
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
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


async def mark_read(session: AsyncSession, case_id: str, side: Sender, seq: int) -> bool:
    """Record that `side` has seen everything up to `seq`; False if that was known."""
    column = col(Case.victim_read_seq) if side == Sender.victim else col(Case.staff_read_seq)
    result = await session.execute(
        update(Case)
        .where(col(Case.id) == case_id, column < seq, col(Case.last_seq) >= seq)
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
    await record(
        session, clock, actor=f"staff:{staff_id}", action="case.claim", target=f"case:{case_id}"
    )
    case = await session.get(Case, case_id, populate_existing=True)
    assert case is not None
    return case


async def end(session: AsyncSession, clock: Clock, case: Case, *, by: str) -> None:
    if case.status == CaseStatus.closed:
        return
    case.status, case.ended_at = CaseStatus.closed.value, clock.now()
    await session.flush()
    await record(session, clock, actor=by, action="case.end", target=f"case:{case.id}")


async def reopen(session: AsyncSession, clock: Clock, case: Case) -> None:
    """A victim who writes to an ended conversation is back in the queue."""
    case.status, case.assigned_staff_id, case.ended_at = CaseStatus.new.value, None, None
    case.queued_at = clock.now()  # in the queue from the moment they came back
    await session.flush()


async def delete_case(session: AsyncSession, keyring: Keyring, clock: Clock, case: Case) -> None:
    """Crypto-shred the case (its data key is destroyed), then delete its rows."""
    await keyring.shred(session, case_scope(case.id))
    await session.execute(delete(Message).where(col(Message.case_id) == case.id))
    await session.execute(delete(VictimSession).where(col(VictimSession.case_id) == case.id))
    await session.delete(case)
    await session.flush()
    await record(session, clock, actor="victim", action="case.delete", target=f"case:{case.id}")


async def open_cases(session: AsyncSession) -> list[Case]:
    """Waiting cases first (longest waiting first), then active ones by last activity."""
    rows = (
        (await session.execute(select(Case).where(col(Case.status).in_(OPEN_STATUSES))))
        .scalars()
        .all()
    )
    waiting = sorted(
        (c for c in rows if c.status == CaseStatus.new), key=lambda c: as_utc(c.queued_at)
    )
    active = sorted(
        (c for c in rows if c.status != CaseStatus.new),
        key=lambda c: as_utc(c.last_activity_at),
        reverse=True,
    )
    return waiting + active
