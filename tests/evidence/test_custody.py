"""Chain of custody: entries chain and verify, and every change behind the app's back is named.

Tampering is done with raw SQL, as someone with database access would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import DateTime, bindparam, text

from helpline.cases.service import start_chat
from helpline.core.clock import FrozenClock, as_utc
from helpline.core.crypto import MasterKeys, Signer, b64url, ensure_signing_key
from helpline.core.db import Database
from helpline.core.errors import NotFound
from helpline.core.ids import new_id
from helpline.evidence import custody
from helpline.evidence.custody import GENESIS, append, check_chain, entry_document, entry_hash
from helpline.evidence.models import CustodyEntry, EvidenceItem, ItemKind, ItemStatus

EVENTS = ["captured", "previewed", "revealed", "noticed", "packaged"]


async def new_item(db: Database, clock: FrozenClock) -> str:
    async with db.transaction() as session:
        receipt = await start_chat(session, clock, language="nl", topic=None)
        item = EvidenceItem(
            id=new_id(),
            case_id=receipt.case.id,
            kind=ItemKind.file.value,
            status=ItemStatus.stored.value,
            media_type="image/png",
            size=10,
            sha256="a" * 64,
            captured_at=clock.now(),
            captured_by="victim",
            channel="chat",
        )
        session.add(item)
    return item.id


async def signer_of(db: Database, master: MasterKeys, clock: FrozenClock) -> Signer:
    async with db.transaction() as session:
        return await ensure_signing_key(session, master, clock)


def keys_of(*signers: Signer) -> dict[str, bytes]:
    return {signer.kid: signer.public_key.public_bytes_raw() for signer in signers}


async def write_chain(
    db: Database, signer: Signer, clock: FrozenClock, item_id: str, count: int = 5
) -> None:
    for n in range(count):
        clock.advance(minutes=3)
        async with db.transaction() as session:
            await append(
                session,
                signer,
                clock,
                item_id=item_id,
                actor=f"staff:{n:032x}" if n else "victim",
                event=EVENTS[n % len(EVENTS)],
                details={"n": n, "blurred": n % 2 == 0, "note": None, "ref": "notice-7"},
            )


async def stored(db: Database, item_id: str) -> list[CustodyEntry]:
    async with db.transaction() as session:
        return await custody.entries(session, item_id)


async def problems(db: Database, item_id: str, keys: dict[str, bytes]) -> list[str]:
    return check_chain(await stored(db, item_id), keys)


async def execute(db: Database, sql: str, **params: Any) -> None:
    statement = text(sql).bindparams(
        *(
            bindparam(name, type_=DateTime(timezone=True))
            for name, value in params.items()
            if isinstance(value, datetime)
        )
    )
    async with db.transaction() as session:
        await session.execute(statement, params)


@pytest.fixture
async def chain(db: Database, master: MasterKeys, clock: FrozenClock) -> tuple[str, Signer]:
    item_id = await new_item(db, clock)
    signer = await signer_of(db, master, clock)
    await write_chain(db, signer, clock, item_id)
    return item_id, signer


async def test_entries_chain_and_verify(
    db: Database, chain: tuple[str, Signer], clock: FrozenClock
) -> None:
    item_id, signer = chain
    rows = await stored(db, item_id)
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(row.prev_hash == before.hash for before, row in zip(rows, rows[1:], strict=False))
    assert {row.kid for row in rows} == {signer.kid}
    assert as_utc(rows[0].at) == datetime(2026, 1, 1, 9, 3, tzinfo=UTC)
    assert check_chain(rows, keys_of(signer)) == []
    # the same check, offline, from the plain dicts of a manifest
    documents = [entry_document(row) for row in rows]
    assert documents[1]["details"] == {"n": 1, "blurred": False, "note": None, "ref": "notice-7"}
    assert check_chain(documents, keys_of(signer)) == []
    # the hash is what the module documents, recomputable by anyone
    first = documents[0]
    assert first["hash"] == entry_hash(
        item_id,
        1,
        "2026-01-01T09:03:00+00:00",
        "victim",
        "captured",
        {"n": 0, "blurred": True, "note": None, "ref": "notice-7"},
        GENESIS,
    )


async def test_an_entry_written_with_a_non_utc_clock_verifies_when_read_back(
    db: Database, master: MasterKeys
) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=2))))
    item_id = await new_item(db, clock)
    signer = await signer_of(db, master, clock)
    await write_chain(db, signer, clock, item_id, count=2)
    assert await problems(db, item_id, keys_of(signer)) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", '{"blurred":false,"n":1,"note":null,"ref":"notice-8"}'),
        ("details", "not json"),
        ("actor", "staff:someone-else"),
        ("event", "destroyed"),
        ("at", "2026-01-01 09:07:00"),
    ],
)
async def test_a_changed_entry_is_named(
    db: Database, chain: tuple[str, Signer], column: str, value: str
) -> None:
    item_id, signer = chain
    await execute(
        db,
        f"UPDATE evidence_custody SET {column} = :value WHERE item_id = :item AND seq = 2",
        value=value if column != "at" else datetime.fromisoformat(value).replace(tzinfo=UTC),
        item=item_id,
    )
    expected = "details are not a JSON object" if value == "not json" else "hash does not match"
    found = await problems(db, item_id, keys_of(signer))
    assert len(found) == 1, found
    assert found[0].startswith(f"item {item_id} entry 2: {expected}")


async def test_a_deleted_entry_is_named(db: Database, chain: tuple[str, Signer]) -> None:
    item_id, signer = chain
    await execute(
        db, "DELETE FROM evidence_custody WHERE item_id = :item AND seq = 3", item=item_id
    )
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 4: entry 3 is missing"
    ]
    await execute(
        db, "DELETE FROM evidence_custody WHERE item_id = :item AND seq = 1", item=item_id
    )
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 2: entry 1 is missing",
        f"item {item_id} entry 4: entry 3 is missing",
    ]


async def test_a_forged_signature_is_named(db: Database, chain: tuple[str, Signer]) -> None:
    item_id, signer = chain
    rows = await stored(db, item_id)
    await execute(
        db,
        "UPDATE evidence_custody SET signature = :signature WHERE item_id = :item AND seq = 3",
        signature=rows[1].signature,
        item=item_id,
    )
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 3: signature does not verify"
    ]
    await execute(
        db,
        "UPDATE evidence_custody SET signature = 'not base64!' WHERE item_id = :item AND seq = 3",
        item=item_id,
    )
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 3: signature does not verify"
    ]


async def resign(db: Database, row: CustodyEntry, forger: Signer, kid: str, **changes: Any) -> None:
    """Rewrite an entry so that it is consistent in itself: a new hash, signed by `forger`."""
    document = entry_document(row) | changes
    digest = entry_hash(
        row.item_id,
        row.seq,
        document["at"],
        document["actor"],
        document["event"],
        document["details"],
        row.prev_hash,
    )
    await execute(
        db,
        "UPDATE evidence_custody SET actor = :actor, event = :event, details = :details, "
        "hash = :hash, kid = :kid, signature = :signature WHERE id = :id",
        actor=document["actor"],
        event=document["event"],
        details='{"n":99}' if "details" in changes else row.details,
        hash=digest,
        kid=kid,
        signature=b64url(forger.sign(digest.encode())),
        id=row.id,
    )


async def test_an_entry_re_signed_with_another_key_is_named(
    db: Database, chain: tuple[str, Signer]
) -> None:
    item_id, signer = chain
    forger = Signer("forger0000000000", Ed25519PrivateKey.generate())
    rows = await stored(db, item_id)

    # under the service's key id: its signature does not verify (the broken link after it
    # says nothing more and is not reported)
    await resign(db, rows[1], forger, signer.kid, details={"n": 99})
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 2: signature does not verify"
    ]
    # under its own key id: a key that is not known
    await resign(db, rows[1], forger, forger.kid, details={"n": 99})
    assert await problems(db, item_id, keys_of(signer)) == [
        f"item {item_id} entry 2: signed with key 'forger0000000000', which is not a known key"
    ]
    # even if that key were trusted, the next entry does not follow the forged one
    assert await problems(db, item_id, keys_of(signer, forger)) == [
        f"item {item_id} entry 3: does not follow entry 2"
    ]


async def test_an_inserted_first_entry_is_named(db: Database, chain: tuple[str, Signer]) -> None:
    item_id, signer = chain
    documents = [entry_document(row) for row in await stored(db, item_id)]
    documents[0]["prev_hash"] = "1" * 64
    documents[0]["hash"] = entry_hash(
        item_id, 1, documents[0]["at"], "victim", "captured", documents[0]["details"], "1" * 64
    )
    documents[0]["signature"] = b64url(signer.sign(documents[0]["hash"].encode()))
    assert check_chain(documents, keys_of(signer)) == [
        f"item {item_id} entry 1: does not start the chain",
    ]
    duplicate = dict(documents[3])
    assert check_chain([*documents[1:], duplicate], keys_of(signer)) == [
        f"item {item_id} entry 2: entry 1 is missing",
        f"item {item_id} entry 4: appears more than once",
    ]
    assert check_chain([{"item_id": item_id, "seq": "x"}], keys_of(signer)) == [
        "custody entry #1 in the list: malformed (seq is missing or not a number)"
    ]


async def test_concurrent_appends_for_one_item_are_serialised(
    db: Database, master: MasterKeys, clock: FrozenClock
) -> None:
    item_id = await new_item(db, clock)
    signer = await signer_of(db, master, clock)

    async def one(n: int) -> None:
        async with db.transaction() as session:
            await append(
                session, signer, clock, item_id=item_id, actor="system", event="previewed",
                details={"n": n},
            )  # fmt: skip

    await asyncio.gather(*(one(n) for n in range(10)))
    rows = await stored(db, item_id)
    assert [row.seq for row in rows] == list(range(1, 11))
    assert sorted(entry_document(row)["details"]["n"] for row in rows) == list(range(10))
    assert check_chain(rows, keys_of(signer)) == []


async def test_bad_calls_are_refused(db: Database, master: MasterKeys, clock: FrozenClock) -> None:
    item_id = await new_item(db, clock)
    signer = await signer_of(db, master, clock)
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await append(session, signer, clock, item_id=new_id(), actor="x", event="captured")
        with pytest.raises(ValueError, match="unknown custody event"):
            await append(session, signer, clock, item_id=item_id, actor="x", event="lost")
        with pytest.raises(TypeError, match="float"):
            await append(
                session,
                signer,
                clock,
                item_id=item_id,
                actor="x",
                event="captured",
                details={"ratio": 0.5},  # type: ignore[dict-item]
            )
    assert await stored(db, item_id) == []
