"""The victim's own copy of their case: `GET /api/chat/case/export` (docs/api/chat.md).

What a victim gets is what is theirs to see: the conversation (who wrote each message only as
"you", "helpline" or "system" — never a staff member's name), the list of their evidence (kind,
name, hashes, when; not the files), the removal requests sent for them (platform, status,
dates) and the handovers proposed to them (partner, status). Never staff notes, timeline
events, staff names, nor anything of a notice or handover beyond its outcome.

As JSON, or with `?format=html` as one self-contained page (no script, no external resource),
always as a download that no cache keeps. Each export is audited (actor `victim`).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from helpline.cases import service as cases
from helpline.cases.models import Case, CaseStatus
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.errors import Invalid, NotFound
from helpline.core.http import route, services
from helpline.core.services import Services
from helpline.evidence.service import items_of
from helpline.handover.models import Handover, Partner
from helpline.intake.chat.routes import VICTIM
from helpline.retention.policy import UNSENT_NOTICES
from helpline.takedown.models import Notice, Platform

FORMATS = ("json", "html")
WHO = {"victim": "you", "staff": "helpline", "system": "system"}


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


async def _messages(session: AsyncSession, found: Services, case_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        frames = await cases.messages_after(session, found.keyring, case_id, after, limit=500)
        if not frames:
            return messages
        messages += [
            {
                "seq": f["seq"],
                "from": WHO.get(f["from"], "system"),
                "text": f["text"],
                "at": f["at"],
            }
            for f in frames
        ]
        after = frames[-1]["seq"]


async def case_document(session: AsyncSession, found: Services, case: Case) -> dict[str, Any]:
    """The victim's copy of `case`, as a JSON-ready document."""
    evidence = [
        {
            "kind": item["kind"],
            "name": item["filename"],
            "url": item["url"],
            "media_type": item["media_type"],
            "size": item["size"],
            "sha256": item["sha256"],
            "pdq": item["pdq"],
            "status": item["status"],
            "captured_at": item["captured_at"],
        }
        for item in await items_of(session, found, case.id)
    ]
    notice_rows = await session.execute(
        select(Notice, col(Platform.name))
        .join(Platform, col(Platform.id) == col(Notice.platform_id))
        .where(col(Notice.case_id) == case.id, col(Notice.status).not_in(UNSENT_NOTICES))
        .order_by(col(Notice.created_at))
    )
    notices = [
        {
            "reference": notice.reference,
            "platform": platform_name,
            "status": notice.status,
            "sent_at": _iso(notice.sent_at),
            "decided_at": _iso(notice.decided_at),
            "closed_at": _iso(notice.closed_at),
        }
        for notice, platform_name in notice_rows.all()
    ]
    handover_rows = await session.execute(
        select(Handover, col(Partner.name))
        .join(Partner, col(Partner.id) == col(Handover.partner_id))
        .where(col(Handover.case_id) == case.id)
        .order_by(col(Handover.created_at))
    )
    handovers = [
        {
            "reference": handover.reference,
            "partner": partner_name,
            "status": handover.status,
            "proposed_at": _iso(handover.created_at),
            "delivered_at": _iso(handover.delivered_at),
            "closed_at": _iso(handover.closed_at),
        }
        for handover, partner_name in handover_rows.all()
    ]
    return {
        "reference": case.reference,
        "exported_at": found.clock.now().isoformat(),
        "status": CaseStatus(case.status).victim_view,
        "started_at": _iso(case.created_at),
        "ended_at": _iso(case.ended_at),
        "messages": await _messages(session, found, case.id),
        "evidence": evidence,
        "notices": notices,
        "handovers": handovers,
    }


# ---------------------------------------------------------------- the page

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b1b1b}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem;"
    "text-align:left;vertical-align:top}.msg{margin:.5rem 0;padding:.5rem;border-radius:.4rem;"
    "background:#f1f1f1}.you{background:#e3efff}.meta{color:#555;font-size:.85rem}"
    "code{word-break:break-all}"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], none: str) -> str:
    if not rows:
        return f"<p>{_e(none)}</p>"
    head = "".join(f"<th>{_e(title)}</th>" for _, title in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(row.get(key))}</td>" for key, _ in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your case",
        "started": "Started",
        "status": "status",
        "exported": "exported",
        "messages": "Messages",
        "evidence": "Evidence",
        "notices": "Removal requests",
        "handovers": "Referrals",
        "none": "None.",
        "kind": "Kind",
        "name": "Name",
        "url": "URL",
        "hashes": "Hashes",
        "when": "When",
        "reference": "Reference",
        "platform": "Platform",
        "sent": "Sent",
        "decided": "Decided",
        "partner": "Partner",
        "proposed": "Proposed",
        "delivered": "Delivered",
        "you": "you",
        "helpline": "helpline",
    },
    "nl": {
        "title": "Je zaak",
        "started": "Begonnen",
        "status": "status",
        "exported": "gedownload",
        "messages": "Berichten",
        "evidence": "Bewijs",
        "notices": "Verwijderverzoeken",
        "handovers": "Doorverwijzingen",
        "none": "Geen.",
        "kind": "Soort",
        "name": "Naam",
        "url": "URL",
        "hashes": "Hashes",
        "when": "Wanneer",
        "reference": "Kenmerk",
        "platform": "Platform",
        "sent": "Verstuurd",
        "decided": "Besloten",
        "partner": "Partner",
        "proposed": "Voorgesteld",
        "delivered": "Bezorgd",
        "you": "jij",
        "helpline": "hulplijn",
    },
}


def render_html(document: dict[str, Any], language: str = "en") -> str:
    """The document as a readable page (in `language`, nl or en): no script, no external
    resource, everything escaped."""
    label = LABELS.get(language, LABELS["en"])
    messages = "".join(
        f'<div class="msg {_e(m["from"])}"><div class="meta">'
        f"{_e(label.get(m['from'], m['from']))} · {_e(m['at'])}"
        f"</div><div>{_e(m['text'])}</div></div>"
        for m in document["messages"]
    )
    evidence = _table(
        [
            {**item, "hashes": f"SHA-256 {item['sha256'] or '-'}; PDQ {item['pdq'] or '-'}"}
            for item in document["evidence"]
        ],
        [
            ("kind", label["kind"]),
            ("name", label["name"]),
            ("url", label["url"]),
            ("hashes", label["hashes"]),
            ("captured_at", label["when"]),
        ],
        label["none"],
    )
    notices = _table(
        document["notices"],
        [
            ("reference", label["reference"]),
            ("platform", label["platform"]),
            ("status", label["status"].capitalize()),
            ("sent_at", label["sent"]),
            ("decided_at", label["decided"]),
        ],
        label["none"],
    )
    handovers = _table(
        document["handovers"],
        [
            ("reference", label["reference"]),
            ("partner", label["partner"]),
            ("status", label["status"].capitalize()),
            ("proposed_at", label["proposed"]),
            ("delivered_at", label["delivered"]),
        ],
        label["none"],
    )
    return (
        f'<!doctype html><html lang="{_e(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(label['title'])} {_e(document['reference'])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{_e(label['title'])} {_e(document['reference'])}</h1>"
        f'<p class="meta">{_e(label["started"])} {_e(document["started_at"])}; '
        f"{_e(label['status'])} {_e(document['status'])}; "
        f"{_e(label['exported'])} {_e(document['exported_at'])}.</p>"
        f"<h2>{_e(label['messages'])}</h2>{messages or '<p>' + _e(label['none']) + '</p>'}"
        f"<h2>{_e(label['evidence'])}</h2>{evidence}"
        f"<h2>{_e(label['notices'])}</h2>{notices}"
        f"<h2>{_e(label['handovers'])}</h2>{handovers}"
        "</body></html>"
    )


async def export_case(request: Request) -> Response:
    found = services(request)
    chosen = request.query_params.get("format", "json")
    if chosen not in FORMATS:
        raise Invalid("format must be json or html")
    session = request.state.session
    case = await session.get(Case, request.state.principal.id)
    if case is None:
        raise NotFound("this conversation no longer exists")
    document = await case_document(session, found, case)
    await record(
        session,
        found.clock,
        actor="victim",
        action="case.export",
        target=f"case:{case.id}",
        details={"format": chosen},
    )
    filename = f"case-{case.reference}.{chosen}"
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if chosen == "html":
        language = request.query_params.get("lang") or case.language
        return Response(
            render_html(document, language if language in LABELS else "en"),
            media_type="text/html; charset=utf-8",
            headers=headers,
        )
    content = json.dumps(document, ensure_ascii=False, indent=2)
    return Response(content, media_type="application/json", headers=headers)


def victim_routes() -> list[BaseRoute]:
    return [route("/api/chat/case/export", export_case, access=VICTIM)]
