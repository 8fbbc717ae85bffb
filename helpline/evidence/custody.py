"""Chain of custody: every event on an evidence item, hash-chained and signed.

Each entry's `hash` is SHA-256 over the canonical JSON (`crypto.canonical_json`) of
`[item_id, seq, at, actor, event, details, prev_hash]`, with `at` in UTC ISO 8601 and `details`
an object; `prev_hash` is the hash of the item's previous entry (`GENESIS` for the first). The
`signature` is Ed25519 over the ASCII bytes of that hex hash, base64url without padding, by the
key named in `kid`. Anyone with the public key can check a log without the database:
`check_chain` works on rows and on the plain dicts of an export manifest alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import Clock, as_utc
from helpline.core.crypto import Signer, b64url, canonical_json, verify_signature
from helpline.core.errors import NotFound
from helpline.core.ids import new_id
from helpline.evidence.models import CustodyEntry, EvidenceItem

GENESIS = "0" * 64
EVENTS = frozenset(
    {
        "captured",
        "previewed",
        "revealed",
        "exported",
        "noticed",
        "packaged",
        "destroyed",
        "marked_minor",
    }
)
Detail = str | int | bool | None


def entry_hash(
    item_id: str,
    seq: int,
    at: str,
    actor: str,
    event: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hash of one entry; `at` is the UTC ISO 8601 text (`as_utc(at).isoformat()`)."""
    body = canonical_json([item_id, seq, at, actor, event, dict(details), prev_hash])
    return hashlib.sha256(body).hexdigest()


def _check_details(details: Mapping[str, Detail]) -> None:
    # Floats are refused: other languages' JSON may print them differently, and the hash must
    # be recomputable anywhere.
    for key, value in details.items():
        if not isinstance(key, str):
            raise TypeError(f"custody detail names are text, not {type(key).__name__}")
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"custody detail {key!r}: {type(value).__name__} is not allowed")


async def append(
    session: AsyncSession,
    signer: Signer,
    clock: Clock,
    *,
    item_id: str,
    actor: str,
    event: str,
    details: dict[str, Detail] | None = None,
) -> CustodyEntry:
    """Add the next entry to an item's chain of custody, in the caller's transaction.

    `actor` is `victim`, `staff:<id>`, `email` or `system`; details hold no personal data.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown custody event {event!r}")
    values = dict(details or {})
    _check_details(values)
    # Locking the item row serialises appends for one item (FOR UPDATE on PostgreSQL; SQLite
    # already holds the write lock, its transactions begin IMMEDIATE), so two entries never
    # claim the same predecessor.
    locked = await session.execute(
        select(col(EvidenceItem.id)).where(col(EvidenceItem.id) == item_id).with_for_update()
    )
    if locked.first() is None:
        raise NotFound(f"no evidence item {item_id}")
    last = (
        await session.execute(
            select(CustodyEntry)
            .where(col(CustodyEntry.item_id) == item_id)
            .order_by(col(CustodyEntry.seq).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    seq = last.seq + 1 if last is not None else 1
    prev_hash = last.hash if last is not None else GENESIS
    # SQLite keeps only the wall-clock digits of a timestamp: store UTC, or the hash of an entry
    # written with a non-UTC clock would not match what is read back.
    at = as_utc(clock.now())
    digest = entry_hash(item_id, seq, at.isoformat(), actor, event, values, prev_hash)
    entry = CustodyEntry(
        id=new_id(),
        item_id=item_id,
        seq=seq,
        at=at,
        actor=actor,
        event=event,
        details=canonical_json(values).decode("utf-8"),
        prev_hash=prev_hash,
        hash=digest,
        kid=signer.kid,
        signature=b64url(signer.sign(digest.encode("ascii"))),
    )
    session.add(entry)
    await session.flush()
    return entry


async def entries(session: AsyncSession, item_id: str) -> list[CustodyEntry]:
    """An item's chain of custody, oldest first."""
    rows = await session.execute(
        select(CustodyEntry)
        .where(col(CustodyEntry.item_id) == item_id)
        .order_by(col(CustodyEntry.seq))
    )
    return list(rows.scalars().all())


def entry_document(entry: CustodyEntry) -> dict[str, Any]:
    """An entry as a plain JSON object (as in an export manifest); `check_chain` accepts it."""
    return {
        "item_id": entry.item_id,
        "seq": entry.seq,
        "at": as_utc(entry.at).isoformat(),
        "actor": entry.actor,
        "event": entry.event,
        "details": json.loads(entry.details),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "kid": entry.kid,
        "signature": entry.signature,
    }


# ---------------------------------------------------------------- checking a chain


@dataclass(frozen=True)
class _Link:
    item_id: str
    seq: int
    at: str
    actor: str
    event: str
    details: Mapping[str, Any] | None  # None: the stored text is not a JSON object
    prev_hash: str
    hash: str
    kid: str
    signature: str


class _Malformed(ValueError):
    pass


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise _Malformed(f"{name} is missing or not text")
    return value


def _link(entry: CustodyEntry | Mapping[str, Any]) -> _Link:
    if isinstance(entry, CustodyEntry):
        try:
            details = json.loads(entry.details)
        except ValueError:
            details = None
        return _Link(
            item_id=entry.item_id,
            seq=entry.seq,
            at=as_utc(entry.at).isoformat(),
            actor=entry.actor,
            event=entry.event,
            details=details if isinstance(details, dict) else None,
            prev_hash=entry.prev_hash,
            hash=entry.hash,
            kid=entry.kid,
            signature=entry.signature,
        )
    seq = entry.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise _Malformed("seq is missing or not a number")
    details = entry.get("details")
    return _Link(
        item_id=_text(entry, "item_id"),
        seq=seq,
        at=_text(entry, "at"),
        actor=_text(entry, "actor"),
        event=_text(entry, "event"),
        details=details if isinstance(details, dict) else None,
        prev_hash=_text(entry, "prev_hash"),
        hash=_text(entry, "hash"),
        kid=_text(entry, "kid"),
        signature=_text(entry, "signature"),
    )


def _b64url_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _span(first: int, last: int) -> str:
    return f"entry {first} is missing" if first == last else f"entries {first}-{last} are missing"


def _check_item(item_id: str, links: list[_Link], keys: Mapping[str, bytes]) -> list[str]:
    problems: list[str] = []
    prev: _Link | None = None
    prev_bad = False
    for link in sorted(links, key=lambda each: each.seq):
        name = f"item {item_id} entry {link.seq}"
        if prev is not None and link.seq == prev.seq:
            problems.append(f"{name}: appears more than once")
            continue
        bad = False
        if link.details is None:
            problems.append(f"{name}: details are not a JSON object")
            bad = True
        elif link.hash != entry_hash(
            link.item_id, link.seq, link.at, link.actor, link.event, link.details, link.prev_hash
        ):
            problems.append(f"{name}: hash does not match its content")
            bad = True
        public_key = keys.get(link.kid)
        signature = _b64url_decode(link.signature)
        if public_key is None:
            problems.append(f"{name}: signed with key {link.kid!r}, which is not a known key")
            bad = True
        elif signature is None or not verify_signature(
            public_key, link.hash.encode("utf-8"), signature
        ):
            problems.append(f"{name}: signature does not verify")
            bad = True
        expected = prev.seq + 1 if prev is not None else 1
        if link.seq < 1:
            problems.append(f"{name}: numbered before the first entry")
        elif link.seq > expected:
            problems.append(f"{name}: {_span(expected, link.seq - 1)}")
        elif prev is None:
            if link.prev_hash != GENESIS:
                problems.append(f"{name}: does not start the chain")
                bad = True
        elif link.prev_hash != prev.hash and not (bad or prev_bad):
            # After an entry already named as bad, a broken link adds nothing: whoever
            # rewrote that entry changed its hash, so its successor no longer follows it.
            problems.append(f"{name}: does not follow entry {prev.seq}")
        prev, prev_bad = link, bad
    return problems


def check_chain(
    entries: Sequence[CustodyEntry | Mapping[str, Any]], keys: Mapping[str, bytes]
) -> list[str]:
    """Problems with chains of custody, each naming item and entry; `[]` if all is intact.

    `entries` are rows or their `entry_document` dicts (from an untrusted file, say), of one
    item or several; `keys` maps key ids to raw Ed25519 public keys. Recomputes every hash,
    verifies every signature, and finds entries missing, duplicated or out of chain. An entry
    removed from the end of a chain leaves no trace here: compare with an anchor that is
    signed separately (an export manifest names its own "exported" entries).
    """
    problems: list[str] = []
    by_item: dict[str, list[_Link]] = {}
    for position, entry in enumerate(entries, start=1):
        try:
            link = _link(entry)
        except _Malformed as exc:
            problems.append(f"custody entry #{position} in the list: malformed ({exc})")
            continue
        by_item.setdefault(link.item_id, []).append(link)
    for item_id, links in by_item.items():
        problems.extend(_check_item(item_id, links, keys))
    return problems
