"""The purge: crypto-shreds and deletes what is past its retention (policy.py says what is due).

How it removes things:

- a case's key (`case:<id>`), a notice's (`notice:<id>`) and a handover's (`handover:<id>`)
  are destroyed with `Keyring.shred`: whatever was encrypted under them, wherever a copy of it
  survives (a backup, a row version not yet vacuumed), can no longer be read;
- rows are deleted, blobs overwritten before they are unlinked (`Vault.destroy`);
- one `purge_runs` row says when, how it went and how many of each kind were removed, never
  which (no ids, no personal data); one audit line says the same.

It works in batches, each its own transaction, so it never holds a giant transaction and an
interrupted run loses nothing: the next run finds what is still due and carries on.

Two purges at once (the scheduled job on one instance, `helpline purge` or the console's "run
now" on another) are safe: each batch locks the rows it works on — `FOR UPDATE SKIP LOCKED`
on PostgreSQL, so the other purge takes other rows; on SQLite writers are serialised anyway
(`BEGIN IMMEDIATE`) and each batch reads what is still due only once it has the lock. A row
is counted by whoever deleted it (row counts), so two runs never count one thing twice. The
scheduler's lease additionally keeps the *scheduled* purge to one instance at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

import click
from sqlalchemy import CursorResult, Select, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case, CaseEvent, CaseNote, CaseStatus, Message, VictimSession
from helpline.core import audit
from helpline.core.audit import record
from helpline.core.crypto import case_scope
from helpline.core.ids import new_id
from helpline.core.models import AuditEntry, OutboxEntry
from helpline.core.services import Services
from helpline.evidence.models import CustodyEntry, EvidenceItem
from helpline.evidence.service import vault_for
from helpline.evidence.vault import Vault
from helpline.handover.models import Handover, handover_scope
from helpline.handover.packet import vault_for as packet_vault_for
from helpline.intake.callback.models import CallbackRequest
from helpline.intake.email.models import (
    EmailOutgoing,
    EmailReceived,
    EmailThread,
    EmailToken,
)
from helpline.retention.models import LegalHold, PurgeRun
from helpline.retention.policy import (
    CASE_KINDS,
    UNSENT_NOTICES,
    Kind,
    Periods,
    callback_due,
    case_kind_condition,
    handover_due,
    notice_due,
    select_due_cases,
)
from helpline.stats.counters import count_case_closed
from helpline.takedown.models import Notice, notice_scope
from helpline.triage.models import SlaBreach

BATCH_SIZE = 50  # cases (or notices, handovers) per transaction
AUDIT_BATCH_SIZE = 1000  # audit lines per transaction
STALE_RUN = timedelta(hours=12)  # a run still `running` after this was interrupted
FINISHED_OUTBOX = ("delivered", "dead", "cancelled")

Progress = Callable[[int, int], None]
Step = Callable[[int], None]  # `n` more items done

# the counts a run reports (always all of them, zeros included, so runs compare easily)
COUNTED = (
    "cases",
    "messages",
    "evidence_items",
    "blobs",
    "callbacks",
    "notices",
    "handovers",
    "keys",
    "audit_lines",
)


def _rows(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


class _Purger:
    def __init__(self, services: Services, now: datetime, batch_size: int) -> None:
        self.services = services
        self.now = now
        self.batch_size = batch_size
        self.periods = Periods.from_settings(services.settings)
        self.vault: Vault = vault_for(services.settings)  # evidence
        self.packets: Vault = packet_vault_for(services.settings)  # sealed handover packets
        self.counts: Counter[str] = Counter()
        self.postgresql = services.db.is_postgresql

    def _locked(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True) if self.postgresql else query

    # ------------------------------------------------------------ one case, one kind

    async def messages(self, session: AsyncSession, case_id: str) -> None:
        deleted = await session.execute(delete(Message).where(col(Message.case_id) == case_id))
        self.counts["messages"] += _rows(deleted)
        # what the e-mail side keeps about those messages
        await session.execute(delete(EmailOutgoing).where(col(EmailOutgoing.case_id) == case_id))
        await session.execute(delete(EmailReceived).where(col(EmailReceived.case_id) == case_id))
        await session.execute(
            update(EmailThread)
            .where(col(EmailThread.case_id) == case_id)
            .values(address=None, subject=None, reference_ids=None, updated_at=self.now)
        )
        await session.execute(
            delete(OutboxEntry).where(
                col(OutboxEntry.key_scope) == case_scope(case_id),
                col(OutboxEntry.status).in_(FINISHED_OUTBOX),
            )
        )

    async def evidence(self, session: AsyncSession, case_id: str) -> None:
        items = (
            await session.execute(
                select(col(EvidenceItem.id), col(EvidenceItem.blob_name)).where(
                    col(EvidenceItem.case_id) == case_id
                )
            )
        ).all()
        if not items:
            return
        for _, blob_name in items:
            # overwritten and unlinked before the row goes: if this transaction fails, the
            # next run finds the row again and destroying a missing blob is a no-op
            if blob_name and await self.vault.destroy(blob_name):
                self.counts["blobs"] += 1
        ids = [item_id for item_id, _ in items]
        await session.execute(delete(CustodyEntry).where(col(CustodyEntry.item_id).in_(ids)))
        deleted = await session.execute(
            delete(EvidenceItem).where(col(EvidenceItem.case_id) == case_id)
        )
        self.counts["evidence_items"] += _rows(deleted)

    async def callbacks(self, session: AsyncSession, case_id: str, *, all_of_them: bool) -> None:
        query = delete(CallbackRequest).where(col(CallbackRequest.case_id) == case_id)
        if not all_of_them:
            query = query.where(callback_due(self.periods, self.now))
        self.counts["callbacks"] += _rows(await session.execute(query))

    async def notice(self, session: AsyncSession, notice_id: str) -> None:
        scope = notice_scope(notice_id)
        if await self.services.keyring.shred(session, scope):
            self.counts["keys"] += 1
        await session.execute(delete(OutboxEntry).where(col(OutboxEntry.key_scope) == scope))
        # its URLs, items, history, tokens, escalations and replies go by ON DELETE CASCADE
        deleted = await session.execute(delete(Notice).where(col(Notice.id) == notice_id))
        self.counts["notices"] += _rows(deleted)

    async def handover(self, session: AsyncSession, handover_id: str) -> None:
        blob_name = (
            await session.execute(
                select(col(Handover.blob_name)).where(col(Handover.id) == handover_id)
            )
        ).scalar_one_or_none()
        if blob_name and await self.packets.destroy(blob_name):
            self.counts["blobs"] += 1
        scope = handover_scope(handover_id)
        if await self.services.keyring.shred(session, scope):
            self.counts["keys"] += 1
        await session.execute(delete(OutboxEntry).where(col(OutboxEntry.key_scope) == scope))
        # consents, history and links go by ON DELETE CASCADE
        deleted = await session.execute(delete(Handover).where(col(Handover.id) == handover_id))
        self.counts["handovers"] += _rows(deleted)

    async def case(self, session: AsyncSession, case_id: str) -> None:
        case = await session.get(Case, case_id)
        if case is None:
            return
        if case.status != CaseStatus.closed:
            # a case left open was never counted at a closure: count it now, before its
            # handovers and notices (which the counters look at) and its rows go
            await count_case_closed(
                session, self.services.settings, case, now=self.now, reason="purged_open"
            )
        handovers = (
            await session.execute(select(col(Handover.id)).where(col(Handover.case_id) == case_id))
        ).scalars()
        for handover_id in list(handovers):
            await self.handover(session, handover_id)
        unsent = (
            await session.execute(
                select(col(Notice.id)).where(
                    col(Notice.case_id) == case_id, col(Notice.status).in_(UNSENT_NOTICES)
                )
            )
        ).scalars()
        for notice_id in list(unsent):
            await self.notice(session, notice_id)
        # whatever of the other kinds is left (a shorter period set later, say)
        await self.messages(session, case_id)
        await self.evidence(session, case_id)
        await self.callbacks(session, case_id, all_of_them=True)
        scope = case_scope(case_id)
        if await self.services.keyring.shred(session, scope):
            self.counts["keys"] += 1
        await session.execute(delete(OutboxEntry).where(col(OutboxEntry.key_scope) == scope))
        for table in (
            CaseEvent,
            CaseNote,
            VictimSession,
            EmailThread,
            EmailToken,
            SlaBreach,
            LegalHold,
        ):
            await session.execute(delete(table).where(col(table.case_id) == case_id))
        # anything else that names the case goes by ON DELETE CASCADE (or SET NULL: notices
        # that were sent outlive the case, under their own key and their own clock)
        deleted = await session.execute(delete(Case).where(col(Case.id) == case_id))
        self.counts["cases"] += _rows(deleted)

    # ------------------------------------------------------------ batches

    async def case_kind(self, kind: Kind, progress: Step) -> None:
        seen: set[str] = set()
        while True:
            async with self.services.db.transaction() as session:
                query = select_due_cases(kind, self.periods, self.now, limit=self.batch_size)
                ids = list((await session.execute(self._locked(query))).scalars().all())
                if not ids or seen.issuperset(ids):
                    return  # nothing due, or nothing that this run can move on
                for case_id in ids:
                    if kind is Kind.messages:
                        await self.messages(session, case_id)
                    elif kind is Kind.evidence:
                        await self.evidence(session, case_id)
                    elif kind is Kind.callbacks:
                        await self.callbacks(session, case_id, all_of_them=False)
                    else:
                        await self.case(session, case_id)
            seen.update(ids)
            progress(len(ids))

    async def own_clock(self, kind: Kind, progress: Step) -> None:
        """Notices and handovers past their own retention."""
        model: Any = Notice if kind is Kind.notices else Handover
        due = notice_due if kind is Kind.notices else handover_due
        seen: set[str] = set()
        while True:
            async with self.services.db.transaction() as session:
                query = (
                    select(col(model.id))
                    .where(due(self.periods, self.now))
                    .order_by(col(model.id))
                    .limit(self.batch_size)
                )
                ids = list((await session.execute(self._locked(query))).scalars().all())
                if not ids or seen.issuperset(ids):
                    return
                for row_id in ids:
                    if kind is Kind.notices:
                        await self.notice(session, row_id)
                    else:
                        await self.handover(session, row_id)
            seen.update(ids)
            progress(len(ids))

    async def audit_lines(self, progress: Step) -> int | None:
        """Cut the audit log at its retention and delete the lines before the cut; returns
        the first line kept (None: nothing was old enough)."""
        async with self.services.db.transaction() as session:
            cut = await audit.cut(session, self.services.clock, self.now - self.periods.audit)
        if cut is None:
            return None
        while True:
            async with self.services.db.transaction() as session:
                batch = (
                    select(col(AuditEntry.seq))
                    .where(col(AuditEntry.seq) < cut.first_seq)
                    .order_by(col(AuditEntry.seq))
                    .limit(AUDIT_BATCH_SIZE)
                )
                seqs = list((await session.execute(self._locked(batch))).scalars().all())
                if not seqs:
                    break
                deleted = await session.execute(
                    delete(AuditEntry).where(col(AuditEntry.seq).in_(seqs))
                )
                self.counts["audit_lines"] += _rows(deleted)
        progress(1)
        return cut.first_seq

    # ------------------------------------------------------------ what is due (dry run, total)

    async def due_counts(self, session: AsyncSession) -> dict[str, int]:
        """What a run at `now` would remove, counted without removing anything."""
        p, now = self.periods, self.now

        async def count(query: Select[Any]) -> int:
            return int((await session.execute(query)).scalar_one() or 0)

        def cases_where(kind: Kind) -> Select[Any]:
            return select(col(Case.id)).where(case_kind_condition(kind, p, now))

        due_cases = cases_where(Kind.case)
        notices = or_(
            notice_due(p, now),
            and_(col(Notice.case_id).in_(due_cases), col(Notice.status).in_(UNSENT_NOTICES)),
        )
        handovers = or_(handover_due(p, now), col(Handover.case_id).in_(due_cases))
        evidence_cases = cases_where(Kind.evidence).union(due_cases)
        messages_cases = cases_where(Kind.messages).union(due_cases)
        blobs = await count(
            select(func.count())
            .select_from(EvidenceItem)
            .where(
                col(EvidenceItem.case_id).in_(evidence_cases),
                col(EvidenceItem.blob_name).is_not(None),
            )
        ) + await count(
            select(func.count())
            .select_from(Handover)
            .where(handovers, col(Handover.blob_name).is_not(None))
        )
        counts = {
            "cases": await count(select(func.count()).select_from(due_cases.subquery())),
            "messages": await count(
                select(func.count())
                .select_from(Message)
                .where(col(Message.case_id).in_(messages_cases))
            ),
            "evidence_items": await count(
                select(func.count())
                .select_from(EvidenceItem)
                .where(col(EvidenceItem.case_id).in_(evidence_cases))
            ),
            "blobs": blobs,
            "callbacks": await count(
                select(func.count())
                .select_from(CallbackRequest)
                .where(
                    or_(
                        and_(
                            col(CallbackRequest.case_id).in_(cases_where(Kind.callbacks)),
                            callback_due(p, now),
                        ),
                        col(CallbackRequest.case_id).in_(due_cases),
                    )
                )
            ),
            "notices": await count(select(func.count()).select_from(Notice).where(notices)),
            "handovers": await count(select(func.count()).select_from(Handover).where(handovers)),
            "audit_lines": await count(
                select(func.count())
                .select_from(AuditEntry)
                .where(col(AuditEntry.at) < now - p.audit)
            ),
        }
        counts["keys"] = counts["cases"] + counts["notices"] + counts["handovers"]
        return counts

    async def units(self, session: AsyncSession) -> int:
        """How many batch items a run at `now` has ahead of it (for the progress line)."""
        total = 0
        for kind in CASE_KINDS:
            query = select(func.count()).where(case_kind_condition(kind, self.periods, self.now))
            total += int((await session.execute(query.select_from(Case))).scalar_one())
        for model, due in ((Notice, notice_due), (Handover, handover_due)):
            query = select(func.count()).select_from(model).where(due(self.periods, self.now))
            total += int((await session.execute(query)).scalar_one())
        return total + 1  # the audit log


def _counts_json(counts: Counter[str] | dict[str, int], **extra: int) -> str:
    document: dict[str, int] = {name: int(counts.get(name, 0)) for name in COUNTED}
    document.update(extra)
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


async def purge(
    services: Services,
    now: datetime,
    *,
    dry_run: bool = False,
    trigger: str = "schedule",
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> PurgeRun:
    """Remove everything due at `now` (see the module docstring); with `dry_run`, remove
    nothing and report what would be removed. `progress(done, total)` is called as batches
    finish. Returns the run's record (already committed)."""
    purger = _Purger(services, now, batch_size)
    clock = services.clock
    run = PurgeRun(id=new_id(), started_at=clock.now(), trigger=trigger, dry_run=dry_run)
    async with services.db.transaction() as session:
        await session.execute(
            update(PurgeRun)
            .where(
                col(PurgeRun.status) == "running",
                col(PurgeRun.started_at) < clock.now() - STALE_RUN,
            )
            .values(status="failed", error="interrupted")
        )
        session.add(run)
        total = await purger.units(session)
        if dry_run:
            run.counts = _counts_json(await purger.due_counts(session))
            run.status, run.finished_at = "done", clock.now()
    done = 0

    def advance(step: int) -> None:
        nonlocal done
        done += step
        if progress is not None:
            progress(done, max(total, done))

    if progress is not None:
        progress(0, total)
    extra: dict[str, int] = {}
    if not dry_run:
        try:
            for kind in CASE_KINDS:
                await purger.case_kind(kind, advance)
            await purger.own_clock(Kind.notices, advance)
            await purger.own_clock(Kind.handovers, advance)
            first_kept = await purger.audit_lines(advance)
            if first_kept is not None:
                extra["audit_first_seq"] = first_kept  # where the chain now starts
        except Exception as exc:
            async with services.db.transaction() as session:
                await session.execute(
                    update(PurgeRun)
                    .where(col(PurgeRun.id) == run.id)
                    .values(
                        status="failed",
                        finished_at=clock.now(),
                        counts=_counts_json(purger.counts),
                        error=type(exc).__name__[:200],  # a code, never the message
                    )
                )
            raise
        run.counts = _counts_json(purger.counts, **extra)
        run.status, run.finished_at = "done", clock.now()
    if progress is not None:
        progress(max(total, done), max(total, done))
    async with services.db.transaction() as session:
        await session.execute(
            update(PurgeRun)
            .where(col(PurgeRun.id) == run.id)
            .values(status=run.status, finished_at=run.finished_at, counts=run.counts)
        )
        await record(
            session,
            clock,
            actor="system" if trigger == "schedule" else f"system:{trigger}",
            action="retention.dry_run" if dry_run else "retention.purge",
            target=f"purge_run:{run.id}",
            details=dict(json.loads(run.counts)),
        )
    return run


def run_counts(run: PurgeRun) -> dict[str, int]:
    counts: dict[str, int] = json.loads(run.counts or "{}")
    return counts


def describe(run: PurgeRun) -> str:
    """One line about a run, for the CLI."""
    counts = run_counts(run)
    parts = [f"{counts.get(name, 0)} {name.replace('_', ' ')}" for name in COUNTED]
    verb = "would remove" if run.dry_run else "removed"
    return f"{verb}: " + ", ".join(parts)


async def run_purge_cli(services: Services, dry_run: bool) -> PurgeRun:
    """The body of `helpline purge [--dry-run]`: run now, with a progress line."""

    def progress(done: int, total: int) -> None:
        click.echo(f"\rpurging: {done}/{total}", nl=False)

    run = await purge(
        services, services.clock.now(), dry_run=dry_run, trigger="cli", progress=progress
    )
    click.echo("")
    click.echo(describe(run))
    return run
