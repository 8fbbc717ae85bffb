"""A case's timeline entries besides messages, notes and evidence (`case_events`), each written
together with its audit line.

`details` holds values only (codes, statuses, staff ids); anything staff wrote (a reason, a
handover note) goes into `text`, encrypted under the case key with the event's row id as
associated data. The audit line gets the same values, never the text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from helpline.cases.models import Case, CaseEvent
from helpline.core.audit import Detail, record
from helpline.core.clock import Clock
from helpline.core.crypto import Keyring, case_scope
from helpline.core.ids import new_id

TABLE = "case_events"


def staff_actor(staff_id: str) -> str:
    return f"staff:{staff_id}"


def _audit_value(value: Any) -> Detail:
    if isinstance(value, list | tuple | set):
        return ",".join(str(v) for v in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


async def add_event(
    session: AsyncSession,
    clock: Clock,
    case: Case,
    *,
    actor: str,
    kind: str,
    action: str,
    details: dict[str, Any] | None = None,
    text: str | None = None,
    keyring: Keyring | None = None,
) -> CaseEvent:
    """Write a timeline entry of `kind` and the audit line `action` for it, in the caller's
    transaction. `text` (what staff wrote) needs the keyring to be encrypted."""
    details = details or {}
    event = CaseEvent(
        id=new_id(),
        case_id=case.id,
        at=clock.now(),
        actor=actor,
        kind=kind,
        details=json.dumps(details, sort_keys=True, separators=(",", ":")),
    )
    if text is not None:
        if keyring is None:
            raise ValueError("an event with text needs the keyring")
        cipher = await keyring.cipher(session, case_scope(case.id))
        event.text = cipher.encrypt(text, table=TABLE, row_id=event.id, field="text")
    session.add(event)
    await session.flush()
    await record(
        session,
        clock,
        actor=actor,
        action=action,
        target=f"case:{case.id}",
        details={key: _audit_value(value) for key, value in details.items()},
    )
    return event


async def event_text(session: AsyncSession, keyring: Keyring, event: CaseEvent) -> str | None:
    """The decrypted text of an event (a reason, a handover note), if it has one."""
    if event.text is None:
        return None
    cipher = await keyring.cipher(session, case_scope(event.case_id), create=False)
    return cipher.decrypt_text(event.text, table=TABLE, row_id=event.id, field="text")


def event_details(event: CaseEvent) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(event.details or "{}")
    return loaded
