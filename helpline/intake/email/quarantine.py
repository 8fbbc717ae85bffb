"""The quarantine: mails that did not become (part of) a case, kept so that none is lost.

A quarantined mail is stored whole (minus the headers that say where it came from) and
encrypted under a system data key, with its envelope and, where it could be read, a summary
(sender, subject, attachment count) for the supervisors' list. Supervisors download it,
release it into a case (see `inbound.release`), or delete it; entries older than
`HELPLINE_RETENTION_QUARANTINE_DAYS` are deleted by a periodic job.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher
from helpline.core.errors import NotFound
from helpline.core.ids import new_id
from helpline.core.scheduler import JobFunction
from helpline.core.services import Services
from helpline.intake.email.models import QuarantinedEmail, QuarantineReason
from helpline.intake.email.parse import Unreadable, read_mail, strip_trace_headers

SCOPE = "system:email-quarantine"
TABLE = "email_quarantine"
LIST_LIMIT = 200


async def _cipher(session: AsyncSession, found: Services) -> FieldCipher:
    return await found.keyring.cipher(session, SCOPE)


def _summary(raw: bytes) -> dict[str, Any] | None:
    try:
        mail = read_mail(raw, lenient=True)
    except Unreadable:
        return None
    return {
        "from": mail.from_address,
        "subject": mail.subject,
        "attachments": len(mail.attachments),
    }


async def hold(
    session: AsyncSession,
    found: Services,
    *,
    envelope_json: str,
    raw: bytes,
    reason: QuarantineReason,
    detail: str,
) -> QuarantinedEmail:
    """Quarantine a mail in the caller's transaction."""
    raw = strip_trace_headers(raw)
    cipher = await _cipher(session, found)
    row_id = new_id()
    summary = await asyncio.to_thread(_summary, raw)
    row = QuarantinedEmail(
        id=row_id,
        received_at=found.clock.now(),
        reason=reason.value,
        detail=detail[:200],
        size=len(raw),
        raw=cipher.encrypt(raw, table=TABLE, row_id=row_id, field="raw"),
        envelope=cipher.encrypt(envelope_json, table=TABLE, row_id=row_id, field="envelope"),
        summary=(
            cipher.encrypt(json.dumps(summary), table=TABLE, row_id=row_id, field="summary")
            if summary is not None
            else None
        ),
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        found.clock,
        actor="email",
        action="email.quarantined",
        target=f"email_quarantine:{row_id}",
        details={"reason": reason.value},
    )
    return row


async def get(session: AsyncSession, quarantine_id: str) -> QuarantinedEmail:
    row = await session.get(QuarantinedEmail, quarantine_id)
    if row is None:
        raise NotFound("no such quarantined e-mail")
    return row


async def raw_of(session: AsyncSession, found: Services, row: QuarantinedEmail) -> bytes:
    cipher = await _cipher(session, found)
    return cipher.decrypt(row.raw, table=TABLE, row_id=row.id, field="raw")


async def envelope_of(session: AsyncSession, found: Services, row: QuarantinedEmail) -> str:
    cipher = await _cipher(session, found)
    return cipher.decrypt_text(row.envelope, table=TABLE, row_id=row.id, field="envelope")


async def listing(session: AsyncSession, found: Services) -> list[dict[str, Any]]:
    rows = (
        (
            await session.execute(
                select(QuarantinedEmail)
                .order_by(col(QuarantinedEmail.received_at).desc())
                .limit(LIST_LIMIT)
            )
        )
        .scalars()
        .all()
    )
    cipher = await _cipher(session, found) if rows else None
    listed = []
    for row in rows:
        summary: dict[str, Any] = {"from": None, "subject": None, "attachments": None}
        if row.summary is not None and cipher is not None:
            summary = json.loads(
                cipher.decrypt_text(row.summary, table=TABLE, row_id=row.id, field="summary")
            )
        listed.append(
            {
                "id": row.id,
                "received_at": as_utc(row.received_at).isoformat(),
                "reason": row.reason,
                "detail": row.detail,
                "size": row.size,
                **summary,
            }
        )
    return listed


async def discard(session: AsyncSession, row: QuarantinedEmail) -> None:
    await session.delete(row)
    await session.flush()


def purge_job(found: Services, retention_days: int) -> JobFunction:
    """Delete quarantined mails older than the retention period (a periodic job)."""

    async def purge(now: datetime) -> None:
        cutoff = now - timedelta(days=retention_days)
        async with found.db.transaction() as session:
            await session.execute(
                delete(QuarantinedEmail).where(col(QuarantinedEmail.received_at) < cutoff)
            )

    return purge


async def hold_now(
    found: Services, envelope_json: str, raw: bytes, reason: QuarantineReason, detail: str
) -> QuarantinedEmail:
    """Quarantine a mail in a transaction of its own."""
    async with found.db.transaction() as session:
        return await hold(
            session, found, envelope_json=envelope_json, raw=raw, reason=reason, detail=detail
        )
