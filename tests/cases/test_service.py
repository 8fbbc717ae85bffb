"""The case lifecycle on both databases: start, resume, messages, claim, delete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from helpline.cases import service
from helpline.cases.models import Case, CaseStatus, Message, Sender
from helpline.core.clock import FrozenClock
from helpline.core.crypto import Keyring, KeyShredded, case_scope
from helpline.core.db import Database
from helpline.core.errors import Invalid
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role

LOCKOUT = timedelta(minutes=30)


async def start(db: Database, clock: FrozenClock, language: str = "nl") -> service.Receipt:
    async with db.transaction() as session:
        return await service.start_chat(session, clock, language=language, topic="sextortion")


async def resume(db: Database, clock: FrozenClock, reference: str, passphrase: str) -> str:
    async with db.transaction() as session:
        result = await service.resume(
            session,
            clock,
            reference=reference,
            passphrase=passphrase,
            max_failures=3,
            lockout=LOCKOUT,
        )
    if isinstance(result, Exception):
        raise result
    return result[1]


async def test_starting_a_chat_gives_a_receipt_and_keeps_only_a_hash(
    db: Database, clock: FrozenClock
) -> None:
    receipt = await start(db, clock)
    async with db.transaction() as session:
        case = await session.get(Case, receipt.case.id)
        assert case is not None
        assert case.status == CaseStatus.new and case.channel == "chat"
        assert case.reference == receipt.reference
        assert case.passphrase_hash is not None and case.passphrase_hash.startswith("$argon2id$")
        assert await service.case_for_token(session, clock, receipt.token) is not None
        raw = (await session.execute(text("SELECT * FROM victim_sessions"))).all()
    assert receipt.token not in str(raw)  # only the token's hash is stored
    for word in receipt.passphrase.split():
        assert word not in (case.passphrase_hash or "")


async def test_coming_back_with_reference_and_passphrase(db: Database, clock: FrozenClock) -> None:
    receipt = await start(db, clock)
    typed_reference = receipt.reference.lower().replace("-", " ")
    typed_passphrase = receipt.passphrase.upper().replace(" ", "-")
    token = await resume(db, clock, typed_reference, typed_passphrase)
    async with db.transaction() as session:
        case = await service.case_for_token(session, clock, token)
    assert case is not None and case.id == receipt.case.id


async def test_wrong_passphrases_lock_the_reference_for_a_while(
    db: Database, clock: FrozenClock
) -> None:
    receipt = await start(db, clock)
    for _ in range(3):
        with pytest.raises(service.WrongPassphrase):
            await resume(db, clock, receipt.reference, "wrong words entirely here")
    with pytest.raises(service.Locked) as locked:  # even the right passphrase, for now
        await resume(db, clock, receipt.reference, receipt.passphrase)
    assert 0 < locked.value.details["retry_after"] <= LOCKOUT.total_seconds() + 1
    clock.advance(LOCKOUT + timedelta(seconds=1))
    assert await resume(db, clock, receipt.reference, receipt.passphrase)


async def test_an_unknown_reference_gets_the_same_answer(db: Database, clock: FrozenClock) -> None:
    with pytest.raises(service.WrongPassphrase):
        await resume(db, clock, "ZZZZ-ZZZZ", "appel boom")
    with pytest.raises(service.WrongPassphrase):
        await resume(db, clock, "not a reference", "appel boom")


async def test_tokens_expire(db: Database, clock: FrozenClock) -> None:
    receipt = await start(db, clock)
    clock.advance(hours=service.VICTIM_SESSION_HOURS, seconds=1)
    async with db.transaction() as session:
        assert await service.case_for_token(session, clock, receipt.token) is None


async def post(
    db: Database,
    keyring: Keyring,
    clock: FrozenClock,
    case_id: str,
    text_: str,
    client_id: str,
    sender: Sender = Sender.victim,
) -> tuple[int, bool]:
    async with db.transaction() as session:
        message, created = await service.post_message(
            session,
            keyring,
            clock,
            case_id=case_id,
            sender=sender,
            text=text_,
            client_id=client_id,
        )
        return message.seq, created


async def test_messages_are_numbered_encrypted_and_deduplicated(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    case_id = (await start(db, clock)).case.id
    assert await post(db, keyring, clock, case_id, "eerste bericht", "c-1") == (1, True)
    assert await post(db, keyring, clock, case_id, "antwoord", "s-1", Sender.staff) == (2, True)
    # a retried send (same client id) is acknowledged with its first number, not stored twice
    assert await post(db, keyring, clock, case_id, "eerste bericht", "c-1") == (1, False)
    async with db.transaction() as session:
        frames = await service.messages_after(session, keyring, case_id, 0)
        raw = (await session.execute(select(col(Message.body)))).scalars().all()
    assert [(f["seq"], f["from"], f["text"]) for f in frames] == [
        (1, "victim", "eerste bericht"),
        (2, "staff", "antwoord"),
    ]
    assert all(b"eerste" not in body and b"antwoord" not in body for body in raw)
    async with db.transaction() as session:
        assert [f["seq"] for f in await service.messages_after(session, keyring, case_id, 1)] == [2]


async def test_concurrent_senders_get_distinct_consecutive_numbers(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    case_id = (await start(db, clock)).case.id
    results = await asyncio.gather(
        *(post(db, keyring, clock, case_id, f"bericht {i}", f"c-{i}") for i in range(15))
    )
    assert sorted(seq for seq, _ in results) == list(range(1, 16))


async def test_empty_and_oversized_messages_are_refused(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    case_id = (await start(db, clock)).case.id
    with pytest.raises(Invalid):
        await post(db, keyring, clock, case_id, "   ", "c-1")
    with pytest.raises(Invalid):
        await post(db, keyring, clock, case_id, "x" * (service.MAX_MESSAGE_CHARS + 1), "c-2")


async def test_two_agents_never_get_the_same_case(
    db: Database, database_url: str, clock: FrozenClock
) -> None:
    case_id = (await start(db, clock)).case.id
    agents = []
    async with db.transaction() as session:
        for i in range(8):
            account = await create_staff(
                session,
                clock,
                username=f"agent{i}",
                password="long enough password",
                role=Role.agent,
            )
            agents.append(account.id)
    pools = [Database(database_url) for _ in range(4)]  # several app instances

    async def try_claim(index: int, agent: str) -> str | None:
        try:
            async with pools[index % len(pools)].transaction() as session:
                await service.claim(session, clock, case_id, agent)
            return agent
        except service.AlreadyClaimed:
            return None

    try:
        winners = [
            w for w in await asyncio.gather(*(try_claim(i, a) for i, a in enumerate(agents))) if w
        ]
    finally:
        for pool in pools:
            await pool.dispose()
    assert len(winners) == 1
    async with db.transaction() as session:
        case = await session.get(Case, case_id)
    assert case is not None and case.assigned_staff_id == winners[0]
    assert case.status == CaseStatus.in_conversation


async def test_queue_positions_follow_waiting_time(db: Database, clock: FrozenClock) -> None:
    first = (await start(db, clock)).case
    clock.advance(seconds=5)
    second = (await start(db, clock)).case
    async with db.transaction() as session:
        cases = {c.id: c for c in await service.open_cases(session)}
        assert await service.queue_position(session, cases[first.id]) == 1
        assert await service.queue_position(session, cases[second.id]) == 2
        assert [c.id for c in await service.open_cases(session)] == [first.id, second.id]


async def test_a_victim_writing_after_the_end_is_back_in_the_queue(
    db: Database, clock: FrozenClock
) -> None:
    receipt = await start(db, clock)
    async with db.transaction() as session:
        case = await session.get(Case, receipt.case.id)
        assert case is not None
        await service.end(session, clock, case, by="victim")
        assert case.status == CaseStatus.closed
        await service.reopen(session, clock, case)
        assert case.status == CaseStatus.new and case.assigned_staff_id is None


async def test_deleting_a_case_shreds_it(
    db: Database, keyring: Keyring, clock: FrozenClock
) -> None:
    receipt = await start(db, clock)
    case_id = receipt.case.id
    await post(db, keyring, clock, case_id, "geheim", "c-1")
    async with db.transaction() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        await service.delete_case(session, keyring, clock, case)
    async with db.transaction() as session:
        assert await session.get(Case, case_id) is None
        assert (await session.execute(select(Message))).first() is None
        assert await service.case_for_token(session, clock, receipt.token) is None
        with pytest.raises(KeyShredded):
            await keyring.cipher(session, case_scope(case_id), create=False)
