"""Staff endpoints of retention. Contract: docs/api/retention.md.

Agents see the upcoming purges of the cases assigned to them and the schedule of a case they
may work on; supervisors see all, and place and lift legal holds; admins see the purge runs
and run the purge now (or a dry run).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases.models import Case
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Invalid
from helpline.core.http import Schema, parse_body, route, services
from helpline.retention import holds, policy
from helpline.retention.models import PurgeRun
from helpline.retention.policy import Periods
from helpline.retention.purge import purge, run_counts
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff, is_supervisor, staff_names
from helpline.staff.models import Role

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)
ADMIN = staff(Role.admin)
MAX_DAYS = 90
RUNS_LIMIT = 100


class PlaceHold(Schema):
    reason: str = Field(min_length=1, max_length=holds.MAX_REASON_CHARS)


class RunNow(Schema):
    dry_run: bool = False


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def _outlook_json(outlook: policy.CaseOutlook) -> dict[str, Any]:
    kinds = [due.json() for due in outlook.due]
    kinds += [
        {"kind": "notice", "reference": notice.reference, "at": at.isoformat()}
        for notice, at in outlook.notices
    ]
    kinds += [
        {"kind": "handover", "reference": handover.reference, "at": at.isoformat()}
        for handover, at in outlook.handovers
    ]
    kinds.sort(key=lambda entry: entry["at"])
    return {
        "case_id": outlook.case.id,
        "reference": outlook.case.reference,
        "status": outlook.case.status,
        "closure": policy.closure_of(outlook.case).isoformat(),
        "on_hold": outlook.held,
        "purges": kinds,
        "next_at": kinds[0]["at"] if kinds else None,
    }


async def upcoming(request: Request) -> Response:
    found = services(request)
    try:
        days = int(request.query_params.get("days", "7"))
    except ValueError:
        raise Invalid("days must be a whole number") from None
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days must be 1-{MAX_DAYS}")
    now = found.clock.now()
    horizon = now + timedelta(days=days)
    periods = Periods.from_settings(found.settings)
    principal = request.state.principal
    supervisor = is_supervisor(principal)
    session = request.state.session
    outlooks = await policy.case_outlooks(
        session, periods, horizon, assigned_to=None if supervisor else principal.id
    )
    listed = [_outlook_json(outlook) for outlook in outlooks]
    listed.sort(key=lambda entry: (entry["next_at"] or "", entry["reference"]))
    body: dict[str, Any] = {
        "now": now.isoformat(),
        "until": horizon.isoformat(),
        "days": days,
        "cases": listed,
    }
    if supervisor:  # notices that outlived their case: nobody is assigned to them
        body["notices"] = [
            {"reference": notice.reference, "status": notice.status, "at": at.isoformat()}
            for notice, at in await policy.unlinked_notices_due(session, periods, horizon)
        ]
    return JSONResponse(body)


async def _hold_json(request: Request, case: Case) -> dict[str, Any] | None:
    found = services(request)
    hold = await holds.hold_of(request.state.session, found.keyring, case.id)
    if hold is None:
        return None
    names = await staff_names(request.state.session, [hold.placed_by])
    return {
        "placed_by": {"id": hold.placed_by, "name": names.get(hold.placed_by, "")},
        "placed_at": hold.placed_at.isoformat(),
        "reason": hold.reason,
    }


async def case_retention(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request)
    periods = Periods.from_settings(found.settings)
    session = request.state.session
    # far enough ahead that everything the case still holds shows up
    forever = found.clock.now() + timedelta(days=100 * 365)
    outlook = await policy.case_outlooks(session, periods, forever, case_ids=[case.id])
    due = {entry.kind: entry.at for entry in outlook[0].due} if outlook else {}
    schedule = [
        {
            "kind": entry.kind.value,
            "at": due.get(entry.kind, entry.at).isoformat(),
            # a kind the case holds nothing of has nothing to purge
            "has_data": entry.kind in due,
        }
        for entry in policy.case_schedule(case, periods)
    ]
    return JSONResponse(
        {
            "case_id": case.id,
            "reference": case.reference,
            "status": case.status,
            "closure": policy.closure_of(case).isoformat(),
            "counted_from": "closure" if case.ended_at and case.status == "closed" else "activity",
            "schedule": schedule,
            "notices": [
                {"reference": n.reference, "status": n.status, "at": at.isoformat()}
                for n, at in (outlook[0].notices if outlook else [])
            ],
            "handovers": [
                {"reference": h.reference, "status": h.status, "at": at.isoformat()}
                for h, at in (outlook[0].handovers if outlook else [])
            ],
            "hold": await _hold_json(request, case),
        }
    )


async def place_hold(request: Request) -> Response:
    found = services(request)
    body = await parse_body(request, PlaceHold)
    case = await case_for_staff(request, for_update=True)
    await holds.place(
        request.state.session,
        found.keyring,
        found.clock,
        case,
        staff_id=request.state.principal.id,
        reason=body.reason,
    )
    return JSONResponse({"case_id": case.id, "hold": await _hold_json(request, case)}, 201)


async def lift_hold(request: Request) -> Response:
    found = services(request)
    case = await case_for_staff(request, for_update=True)
    await holds.lift(
        request.state.session, found.keyring, found.clock, case, staff_id=request.state.principal.id
    )
    return JSONResponse({"case_id": case.id, "hold": None})


def _run_json(run: PurgeRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "status": run.status,
        "counts": run_counts(run),
        "error": run.error,
    }


async def runs(request: Request) -> Response:
    rows = (
        await request.state.session.execute(
            select(PurgeRun).order_by(col(PurgeRun.started_at).desc()).limit(RUNS_LIMIT)
        )
    ).scalars()
    return JSONResponse({"runs": [_run_json(run) for run in rows]})


async def run_now(request: Request) -> Response:
    found = services(request)
    body = await parse_body(request, RunNow)
    # the purge works in transactions of its own; this request's (still unused) one stays
    # empty, so on SQLite it holds no write lock meanwhile
    run = await purge(found, found.clock.now(), dry_run=body.dry_run, trigger="staff")
    await record(
        request.state.session,
        found.clock,
        actor=f"staff:{request.state.principal.id}",
        action="retention.run_now",
        target=f"purge_run:{run.id}",
        details={"dry_run": body.dry_run},
    )
    return JSONResponse(_run_json(run), status_code=200 if body.dry_run else 201)


def retention_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}"
    return [
        route("/api/staff/retention/upcoming", upcoming, access=AGENT),
        route(f"{case}/retention", case_retention, access=AGENT),
        route(f"{case}/legal-hold", place_hold, access=SUPERVISOR, methods=["POST"]),
        route(f"{case}/legal-hold", lift_hold, access=SUPERVISOR, methods=["DELETE"]),
        route("/api/staff/retention/runs", runs, access=ADMIN),
        route("/api/staff/retention/purge", run_now, access=ADMIN, methods=["POST"]),
    ]
