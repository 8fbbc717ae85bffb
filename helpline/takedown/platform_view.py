"""What a platform sees of a notice: in the portal (one notice, by its link) and through the
platform API (every notice addressed to it), in one JSON shape.

Only what the notice itself says: the reference, the DSA codes, the legal basis, the
explanation and ground, the exact URLs, the hashes staff chose to share, the signed document
as delivered (with its signature and where the public keys are) and the platform's own
answers. Never the case: no case id or reference, nothing the victim wrote, no evidence but
its hashes. Everything is read from the notice's own rows, decrypted with the notice key.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.core.clock import as_utc
from helpline.core.crypto import FieldCipher, KeyShredded
from helpline.core.errors import NotFound
from helpline.core.services import Services
from helpline.takedown import state
from helpline.takedown.answers import ANSWERABLE, SCHEMA_PATH
from helpline.takedown.codes import LEGAL_BASES
from helpline.takedown.models import Notice, NoticeItem, NoticeUrl, Platform, notice_scope
from helpline.takedown.states import DECIDED, NoticeStatus

NOTICES = "notices"
URLS = "notice_urls"
PDQ_RELIABLE_QUALITY = 50  # below this a PDQ hash is too unreliable to match on
KEYS_PATH = "/.well-known/helpline-keys.json"


def iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def is_delivered(notice: Notice) -> bool:
    """A notice the platform has (or was meant to have) received: drafts and notices still in
    the outbox are not theirs to see."""
    return notice.sent_at is not None


def is_answerable(notice: Notice) -> bool:
    return NoticeStatus(notice.status) in ANSWERABLE


async def notice_cipher(session: AsyncSession, found: Services, notice: Notice) -> FieldCipher:
    """The notice key; a notice whose key was shredded (retention ended) is gone."""
    try:
        return await found.keyring.cipher(session, notice_scope(notice.id), create=False)
    except KeyShredded:
        raise NotFound("this notice is no longer available") from None


def _text(cipher: FieldCipher, blob: bytes | None, *, table: str, row_id: str, field: str) -> str:
    if blob is None:
        return ""
    return cipher.decrypt_text(blob, table=table, row_id=row_id, field=field)


def url_text(cipher: FieldCipher, row: NoticeUrl) -> str:
    return cipher.decrypt_text(row.url, table=URLS, row_id=row.id, field="url")


def answer_json(cipher: FieldCipher, row: NoticeUrl) -> dict[str, Any] | None:
    """The statement of reasons the platform gave for one URL, as it gave it."""
    if row.answered_at is None:
        return None
    ground = row.decision_ground
    declined = ground is not None and ground.startswith("DECLINED_")
    return {
        "decision_visibility": row.decision_visibility,
        "decision_ground": None if declined else ground,
        "reason": ground.removeprefix("DECLINED_").lower() if declined and ground else None,
        "ground": row.legal_ground,
        "explanation": _text(
            cipher, row.explanation, table=URLS, row_id=row.id, field="explanation"
        )
        or None,
        "automated_decision": row.automated_decision,
        "territorial_scope": [c for c in (row.territorial_scope or "").split(",") if c],
        "puid": row.puid,
        "answered_at": iso(row.answered_at),
        "answered_via": row.answered_via,
    }


def shared_hashes(items: list[NoticeItem]) -> list[dict[str, Any]]:
    """The hashes staff chose to share, so the platform can block re-uploads (PDQ) and find
    the exact file (SHA-256) without ever receiving the image."""
    shared: list[dict[str, Any]] = []
    for item in items:
        hashes = item.share_hashes and (item.sha256 is not None or item.pdq is not None)
        if not hashes and item.redacted_sha256 is None:
            continue
        entry: dict[str, Any] = {
            "position": item.position,
            "media_type": item.media_type,
            "sha256": item.sha256 if hashes else None,
            "pdq": item.pdq if hashes else None,
            "pdq_quality": item.pdq_quality if hashes else None,
            "pdq_reliable": hashes
            and item.pdq is not None
            and (item.pdq_quality or 0) >= PDQ_RELIABLE_QUALITY,
        }
        if item.redacted_sha256 is not None:
            # a blurred copy staff chose to attach: GET .../items/{item_id}/redacted
            entry["item_id"] = item.id
            entry["redacted_sha256"] = item.redacted_sha256
        shared.append(entry)
    return shared


def _document(cipher: FieldCipher, notice: Notice) -> Any:
    if notice.document is None:
        return None
    raw = cipher.decrypt(notice.document, table=NOTICES, row_id=notice.id, field="document")
    return json.loads(raw)


def _html_base64(cipher: FieldCipher, notice: Notice) -> str | None:
    if notice.html is None:
        return None
    raw = cipher.decrypt(notice.html, table=NOTICES, row_id=notice.id, field="html")
    return base64.b64encode(raw).decode("ascii")


def _legal_basis(notice: Notice) -> dict[str, str | None]:
    basis = LEGAL_BASES.get(notice.legal_basis)
    citation = basis.citation.get(notice.language, basis.citation["en"]) if basis else None
    return {"code": notice.legal_basis, "citation": citation}


def summary_json(notice: Notice, urls: list[NoticeUrl]) -> dict[str, Any]:
    """A line of the platform's list of notices."""
    live = [u for u in urls if u.status != NoticeStatus.withdrawn]
    return {
        "id": notice.id,
        "reference": notice.reference,
        "status": notice.status,
        "language": notice.language,
        "sent_at": iso(notice.sent_at),
        "due_at": iso(notice.due_at),
        "receipt_confirmed_at": iso(notice.receipt_confirmed_at),
        "dsa_category": notice.dsa_category,
        "dsa_keywords": [k for k in notice.dsa_keywords.split(",") if k],
        "url_count": len(live),
        "open_url_count": sum(1 for u in live if NoticeStatus(u.status) not in DECIDED),
    }


async def notice_json(
    session: AsyncSession, found: Services, notice: Notice, *, with_html: bool = False
) -> dict[str, Any]:
    """The whole notice as the platform may see it (see the module docstring)."""
    cipher = await notice_cipher(session, found, notice)
    platform = await session.get(Platform, notice.platform_id)
    urls = await state.urls_of(session, notice.id)
    items = (
        (
            await session.execute(
                select(NoticeItem)
                .where(col(NoticeItem.notice_id) == notice.id)
                .order_by(col(NoticeItem.position))
            )
        )
        .scalars()
        .all()
    )
    base_url = found.settings.base_url
    body = summary_json(notice, urls)
    body.update(
        {
            "platform": {"name": platform.name, "slug": platform.slug} if platform else None,
            "answerable": is_answerable(notice),
            "legal_basis": _legal_basis(notice),
            "ground": _text(cipher, notice.ground, table=NOTICES, row_id=notice.id, field="ground")
            or None,
            "explanation": _text(
                cipher, notice.explanation, table=NOTICES, row_id=notice.id, field="explanation"
            ),
            "notifier_included": notice.notifier_included,
            "trusted_flagger": True,
            "flagger_reference": platform.flagger_reference if platform else None,
            "urls": [
                {
                    "id": row.id,
                    "position": row.position,
                    "url": url_text(cipher, row),
                    "content_type": row.content_type,
                    "status": row.status,
                    "answer": answer_json(cipher, row),
                }
                for row in urls
            ],
            "hashes": shared_hashes(list(items)),
            "document": _document(cipher, notice),
            "document_sha256": notice.document_sha256,
            "signature": (
                {"alg": "Ed25519", "kid": notice.kid, "signature": notice.signature}
                if notice.signature
                else None
            ),
            "keys_url": base_url + KEYS_PATH,
            "answer_schema_url": base_url + SCHEMA_PATH,
        }
    )
    if with_html:
        body["html"] = {
            "base64": _html_base64(cipher, notice),
            "signature": notice.html_signature,
            "kid": notice.kid,
        }
    return body
