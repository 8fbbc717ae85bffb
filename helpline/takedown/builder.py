"""The notice builder: from a case, the notice a platform receives (DSA art. 16(2)).

`create_notice` writes a draft from what staff chose: the platform, the exact URLs (from the
case's URL evidence, or typed), evidence items whose hashes go along, the category (with its
Transparency Database category and keywords), the legal basis and an optional free-text
ground, and the explanation (a per-category text in the notice's language unless staff wrote
their own). Everything that could say something about the victim is encrypted under the
notice's own key (`notice:<id>`); nothing about the victim goes into the notice at all.

`build_document` makes the JSON document and `render_html` the readable page from the same
data: art. 16(2)(a) the explanation, (b) the exact URLs, (c) the helpline as notifier with
its name and e-mail (left out for child sexual abuse offences), (d) the statement of good
faith; plus our trusted-flagger status and reference, the category codes, the hashes. When
a notice is queued, `sign_notice` freezes both: the canonical JSON bytes and the HTML bytes
are stored (encrypted) exactly as they will be delivered, each with a detached Ed25519
signature that verifies against `/.well-known/helpline-keys.json`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.cases.receipts import new_reference
from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.crypto import (
    FieldCipher,
    Signer,
    b64url,
    canonical_json,
    case_scope,
    verify_signature,
)
from helpline.core.errors import Invalid, NotFound
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence.imaging import render_preview
from helpline.evidence.models import EvidenceItem, ItemKind, ItemStatus
from helpline.evidence.snapshot import check_url
from helpline.takedown import state
from helpline.takedown.codes import (
    AGAINST_WOMEN,
    CHILD_ABUSE_CATEGORIES,
    CONTENT_TYPES,
    LEGAL_BASES,
    OTHER_BASIS,
    SOURCE_TRUSTED_FLAGGER,
    default_legal_basis,
    keywords_for,
    notice_categories,
)
from helpline.takedown.models import (
    ApprovalRule,
    Notice,
    NoticeItem,
    NoticeUrl,
    Platform,
    notice_scope,
)
from helpline.takedown.states import NoticeStatus
from helpline.triage.vocabulary import CATEGORIES

LANGUAGES = ("nl", "en")
TABLE = "notices"
URLS_TABLE = "notice_urls"
EVIDENCE_TABLE = "evidence_items"
ITEMS_TABLE = "notice_items"
REDACTED_MEDIA_TYPE = "image/jpeg"  # what imaging.preview produces
MAX_URLS = 50
MAX_ITEMS = 50
MAX_GROUND = 4000
MAX_EXPLANATION = 8000
DOCUMENT_TYPE = "helpline.dsa_notice"
DOCUMENT_VERSION = 1
KEYS_PATH = "/.well-known/helpline-keys.json"


@cache
def texts(language: str) -> dict[str, Any]:
    """The notice texts of a language (templates/<language>.toml); English if unknown."""
    if language not in LANGUAGES:
        language = "en"
    raw = (files("helpline.takedown") / "templates" / f"{language}.toml").read_text()
    return tomllib.loads(raw)


@cache
def _shell() -> Template:
    return Template((files("helpline.takedown") / "templates" / "notice.html").read_text())


def notice_language(requested: str | None, platform: Platform) -> str:
    """The language asked for, else the platform's first language we write, else English."""
    if requested is not None:
        if requested not in LANGUAGES:
            raise Invalid(f"language: one of {', '.join(LANGUAGES)}")
        return requested
    for language in platform.languages.split(","):
        if language in LANGUAGES:
            return language
    return "en"


def new_notice_reference() -> str:
    """`N-7K3Q-M9PX`: Crockford base32 like a case reference, never mistaken for one."""
    return f"N-{new_reference()}"


def notifier_email(found: Services) -> str:
    return found.settings.notice_notifier_email or found.settings.mail_from


def keys_url(found: Services) -> str:
    return found.settings.base_url.rstrip("/") + KEYS_PATH


# ---------------------------------------------------------------- staff's choices


@dataclass
class UrlChoice:
    """An exact URL: from one of the case's URL evidence items, or typed by staff."""

    url: str | None = None
    evidence_item_id: str | None = None
    content_type: str | None = None


@dataclass
class ItemChoice:
    """An evidence item whose hashes (SHA-256, PDQ) go with the notice."""

    evidence_item_id: str
    share_hashes: bool = True
    attach_redacted: bool = False  # a blurred, metadata-free copy goes along (images only)


@dataclass
class NoticeRequest:
    platform_id: str
    urls: list[UrlChoice]
    items: list[ItemChoice] = field(default_factory=list)
    category: str | None = None  # default: the case's
    legal_basis: str | None = None  # default: the category's (codes.LEGAL_BASES)
    ground: str | None = None  # free text, besides the legal basis
    explanation: str | None = None  # default: the category's text in the notice's language
    language: str | None = None  # default: the platform's first language we write
    keywords: list[str] | None = None  # default: the category's keyword
    against_women: bool = False  # the keywords' `_AGAINST_WOMEN` variants


async def four_eyes_required(session: AsyncSession, category: str) -> bool:
    rule = await session.get(ApprovalRule, category)
    return rule is not None and rule.four_eyes


def _category(request: NoticeRequest, case: Case) -> str:
    category = request.category or case.category
    if category is None:
        raise Invalid("category: the case has none; choose one")
    if category not in notice_categories():
        raise Invalid(f"category: one of {', '.join(notice_categories())}", category=str(category))
    return category


def _keywords(request: NoticeRequest, category: str) -> list[str]:
    allowed = keywords_for(category)
    chosen = list(request.keywords) if request.keywords is not None else list(allowed[:1])
    for keyword in chosen:
        if keyword not in allowed:
            raise Invalid(f"keywords: {keyword!r} does not fit {category}")
    if request.against_women:
        chosen = [k if k.endswith(AGAINST_WOMEN) else k + AGAINST_WOMEN for k in chosen]
    return list(dict.fromkeys(chosen))


def _legal_basis(request: NoticeRequest, category: str, ground: str | None) -> str:
    code = request.legal_basis or default_legal_basis(category)
    if code not in LEGAL_BASES:
        raise Invalid(f"legal_basis: unknown code {code!r}")
    if code == OTHER_BASIS and not ground:
        raise Invalid("ground: needed when the legal basis is `other`")
    return code


def _text(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise Invalid(f"{name}: at most {limit} characters")
    return value or None


async def _case_items(session: AsyncSession, case_id: str) -> dict[str, EvidenceItem]:
    rows = await session.execute(select(EvidenceItem).where(col(EvidenceItem.case_id) == case_id))
    return {item.id: item for item in rows.scalars().all()}


async def _resolve_urls(
    session: AsyncSession,
    found: Services,
    case: Case,
    choices: list[UrlChoice],
    items: dict[str, EvidenceItem],
) -> list[tuple[str, UrlChoice]]:
    if not 1 <= len(choices) <= MAX_URLS:
        raise Invalid(f"urls: 1-{MAX_URLS} URLs")
    cipher: FieldCipher | None = None
    resolved: list[tuple[str, UrlChoice]] = []
    for position, choice in enumerate(choices, 1):
        where = f"urls.{position - 1}"
        if (choice.url is None) == (choice.evidence_item_id is None):
            raise Invalid(f"{where}: give either url or evidence_item_id")
        if choice.content_type is not None and choice.content_type not in CONTENT_TYPES:
            raise Invalid(f"{where}.content_type: unknown code")
        if choice.evidence_item_id is not None:
            item = items.get(choice.evidence_item_id)
            if item is None or item.kind != ItemKind.url or item.source_url is None:
                raise Invalid(f"{where}.evidence_item_id: not a URL item of this case")
            if cipher is None:
                cipher = await found.keyring.cipher(session, case_scope(case.id))
            url = cipher.decrypt_text(
                item.source_url, table=EVIDENCE_TABLE, row_id=item.id, field="source_url"
            )
        else:
            url = (choice.url or "").strip()
            check_url(url)  # http(s), a host, no credentials, no spaces: 422 `url_refused`
        resolved.append((url, choice))
    exact = [url for url, _ in resolved]
    if len(set(exact)) != len(exact):
        raise Invalid("urls: the same URL twice")
    return resolved


def redactable(case: Case, item: EvidenceItem) -> str | None:
    """Why `item` may not go along as a redacted copy, or None if it may: a stored image, and
    nothing on a possible-minor case or item (DOMAIN.md: such material is never forwarded)."""
    if case.possible_minor or item.possible_minor:
        return "never for a possible minor: only hashes may go along"
    if not (item.media_type or "").startswith("image/"):
        return "only images can go along as a redacted copy"
    if item.status != ItemStatus.stored or not item.blob_name:
        return "this item has no stored content"
    return None


def _resolve_items(
    case: Case, choices: list[ItemChoice], items: dict[str, EvidenceItem]
) -> list[EvidenceItem]:
    if len(choices) > MAX_ITEMS:
        raise Invalid(f"items: at most {MAX_ITEMS}")
    chosen: list[EvidenceItem] = []
    for index, choice in enumerate(choices):
        item = items.get(choice.evidence_item_id)
        if item is None or (item.sha256 is None and item.pdq is None):
            raise Invalid(f"items.{index}.evidence_item_id: not an item of this case with hashes")
        if item in chosen:
            raise Invalid(f"items.{index}: the same item twice")
        if choice.attach_redacted and (why := redactable(case, item)) is not None:
            raise Invalid(f"items.{index}.attach_redacted: {why}")
        chosen.append(item)
    return chosen


async def create_notice(
    session: AsyncSession,
    found: Services,
    case: Case,
    *,
    staff_id: str,
    request: NoticeRequest,
) -> Notice:
    """A draft notice for `case` (see the module docstring); raises `Invalid` (422) naming the
    first choice that is wrong."""
    platform = await session.get(Platform, request.platform_id)
    if platform is None or not platform.active:
        raise Invalid("platform_id: no such active platform")
    category = _category(request, case)
    ground = _text(request.ground, "ground", MAX_GROUND)
    legal_basis = _legal_basis(request, category, ground)
    keywords = _keywords(request, category)
    language = notice_language(request.language, platform)
    explanation = _text(request.explanation, "explanation", MAX_EXPLANATION) or str(
        texts(language)["explanations"][category]
    )
    evidence = await _case_items(session, case.id)
    urls = await _resolve_urls(session, found, case, request.urls, evidence)
    items = _resolve_items(case, request.items, evidence)

    now = found.clock.now()
    notice_id = new_id()
    cipher = await found.keyring.cipher(session, notice_scope(notice_id))
    notice = Notice(
        id=notice_id,
        reference=new_notice_reference(),
        case_id=case.id,
        platform_id=platform.id,
        language=language,
        category=category,
        dsa_category=CATEGORIES[category].dsa_category,
        dsa_keywords=",".join(keywords),
        legal_basis=legal_basis,
        ground=cipher.encrypt(ground, table=TABLE, row_id=notice_id, field="ground")
        if ground
        else None,
        explanation=cipher.encrypt(explanation, table=TABLE, row_id=notice_id, field="explanation"),
        notifier_included=category not in CHILD_ABUSE_CATEGORIES and not case.possible_minor,
        status=NoticeStatus.draft.value,
        delivery=platform.delivery,
        approval_required=await four_eyes_required(session, category),
        created_by=staff_id,
        created_at=now,
        updated_at=now,
        idempotency_key=f"notice:{notice_id}",
    )
    session.add(notice)
    await session.flush()
    for position, (url, choice) in enumerate(urls, 1):
        url_id = new_id()
        session.add(
            NoticeUrl(
                id=url_id,
                notice_id=notice_id,
                position=position,
                url=cipher.encrypt(url, table=URLS_TABLE, row_id=url_id, field="url"),
                evidence_item_id=choice.evidence_item_id,
                content_type=choice.content_type,
                status=NoticeStatus.draft.value,
                updated_at=now,
            )
        )
    shares = {c.evidence_item_id: c.share_hashes for c in request.items}
    attach = {c.evidence_item_id: c.attach_redacted for c in request.items}
    for position, item in enumerate(items, 1):
        session.add(
            NoticeItem(
                id=new_id(),
                notice_id=notice_id,
                position=position,
                evidence_item_id=item.id,
                media_type=item.media_type,
                sha256=item.sha256,
                pdq=item.pdq,
                pdq_quality=item.pdq_quality,
                share_hashes=shares[item.id],
                attach_redacted=attach[item.id],
            )
        )
    await session.flush()
    actor = f"staff:{staff_id}"
    await state.record_created(session, found.clock, notice, actor=actor)
    await record(
        session,
        found.clock,
        actor=actor,
        action="notice.create",
        target=f"notice:{notice_id}",
        details={
            "case": case.id,
            "platform": platform.id,
            "category": category,
            "legal_basis": legal_basis,
            "urls": len(urls),
            "items": len(items),
            "redacted": sum(attach.values()),
            "four_eyes": notice.approval_required,
        },
    )
    return notice


# ---------------------------------------------------------------- the document


@dataclass
class Parts:
    """A notice with what it is made of, decrypted."""

    notice: Notice
    platform: Platform
    urls: list[tuple[NoticeUrl, str]]
    items: list[NoticeItem]
    explanation: str
    ground: str | None


async def load_parts(session: AsyncSession, found: Services, notice: Notice) -> Parts:
    platform = await session.get(Platform, notice.platform_id)
    if platform is None:
        raise NotFound("the notice's platform no longer exists")
    cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
    urls = [
        (row, cipher.decrypt_text(row.url, table=URLS_TABLE, row_id=row.id, field="url"))
        for row in await state.urls_of(session, notice.id)
    ]
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
    explanation = (
        cipher.decrypt_text(notice.explanation, table=TABLE, row_id=notice.id, field="explanation")
        if notice.explanation is not None
        else ""
    )
    ground = (
        cipher.decrypt_text(notice.ground, table=TABLE, row_id=notice.id, field="ground")
        if notice.ground is not None
        else None
    )
    return Parts(notice, platform, urls, list(items), explanation, ground)


def iso(moment: datetime) -> str:
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def build_document(parts: Parts, found: Services, *, issued_at: datetime) -> dict[str, Any]:
    """The notice as JSON (see the module docstring). No victim data: only the URLs, the
    reasons, the codes and the hashes staff chose to share."""
    notice, platform = parts.notice, parts.platform
    language = notice.language
    words = texts(language)
    basis = LEGAL_BASES[notice.legal_basis]
    notifier: dict[str, str] | None = None
    if notice.notifier_included:
        notifier = {"name": found.settings.notice_notifier_name, "email": notifier_email(found)}
    return {
        "type": DOCUMENT_TYPE,
        "version": DOCUMENT_VERSION,
        "reference": notice.reference,
        "issued_at": iso(issued_at),
        "language": language,
        "platform": {"name": platform.name, "slug": platform.slug},
        "notifier": notifier,
        "notifier_omitted": None if notifier else "DSA art. 16(2)(c)",
        "trusted_flagger": {
            "source_type": SOURCE_TRUSTED_FLAGGER,
            "reference": platform.flagger_reference,
        },
        "helpline_category": notice.category,
        "category": notice.dsa_category,
        "category_specification": [k for k in notice.dsa_keywords.split(",") if k],
        "legal_basis": {
            "code": basis.code,
            "citation": basis.citation.get(language, basis.citation["en"]),
            "ground": parts.ground,
        },
        "explanation": parts.explanation,
        "urls": [
            {"position": row.position, "url": url, "content_type": row.content_type}
            for row, url in parts.urls
        ],
        "hashes": [_hash_entry(item) for item in parts.items if item.share_hashes or item.redacted],
        "good_faith": words["good_faith"],
        "decision_requested_within_hours": platform.sla_hours,
        "signature": {"alg": "Ed25519", "keys": keys_url(found)},
    }


def _hash_entry(item: NoticeItem) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sha256": item.sha256 if item.share_hashes else None,
        "pdq": item.pdq if item.share_hashes else None,
        "pdq_quality": item.pdq_quality if item.share_hashes else None,
        "media_type": item.media_type,
    }
    if item.redacted_sha256 is not None:
        # the blurred copy the platform can fetch (portal, API): these bytes exactly
        entry["redacted_sha256"] = item.redacted_sha256
        entry["redacted_media_type"] = item.redacted_media_type
    return entry


def _row(label: str, value: str, *, code: bool = False) -> str:
    shown = f"<code>{html.escape(value)}</code>" if code else html.escape(value)
    return f"<dt>{html.escape(label)}</dt><dd>{shown}</dd>"


def render_html(document: dict[str, Any]) -> str:
    """The readable notice, from its JSON document: same content, every value escaped."""
    words = texts(document["language"])
    labels: dict[str, str] = words["labels"]
    notifier = document["notifier"]
    intro = (
        words["intro"].format(notifier=notifier["name"]) if notifier else words["intro_anonymous"]
    )
    sections: list[str] = []
    head = [_row(labels["platform"], document["platform"]["name"])]
    if notifier:
        head.append(_row(labels["notifier"], notifier["name"]))
        head.append(_row(labels["notifier_email"], notifier["email"]))
    else:
        head.append(_row(labels["notifier"], labels["notifier_omitted"]))
    head.append(_row(labels["trusted_flagger"], labels["yes"]))
    if document["trusted_flagger"]["reference"]:
        head.append(_row(labels["flagger_reference"], document["trusted_flagger"]["reference"]))
    sections.append(f"<dl>{''.join(head)}</dl>")

    category_label = words["categories"].get(document["helpline_category"], "")
    what = [
        _row(labels["category"], category_label),
        _row(labels["dsa_category"], document["category"] or "", code=True),
    ]
    if document["category_specification"]:
        what.append(
            _row(labels["keywords"], ", ".join(document["category_specification"]), code=True)
        )
    what.append(_row(labels["legal_basis"], document["legal_basis"]["citation"]))
    if document["legal_basis"]["ground"]:
        what.append(_row(labels["ground"], document["legal_basis"]["ground"]))
    sections.append(f"<dl>{''.join(what)}</dl>")

    sections.append(f"<h2>{html.escape(labels['explanation'])}</h2>")
    sections.extend(
        f"<p>{html.escape(paragraph)}</p>"
        for paragraph in document["explanation"].split("\n\n")
        if paragraph.strip()
    )
    sections.append(f"<h2>{html.escape(labels['urls'])}</h2><ol>")
    for entry in document["urls"]:
        kind = entry["content_type"]
        label = f' <span class="small">({html.escape(kind)})</span>' if kind else ""
        sections.append(f"<li><code>{html.escape(entry['url'])}</code>{label}</li>")
    sections.append("</ol>")
    if document["hashes"]:
        sections.append(f"<h2>{html.escape(labels['hashes'])}</h2><ol>")
        for entry in document["hashes"]:
            parts = [f"SHA-256 <code>{html.escape(entry['sha256'] or '-')}</code>"]
            if entry["pdq"]:
                parts.append(
                    f"PDQ <code>{html.escape(entry['pdq'])}</code> "
                    f"(quality {int(entry['pdq_quality'] or 0)})"
                )
            if entry.get("redacted_sha256"):
                parts.append(
                    f"{html.escape(labels['redacted'])} "
                    f"SHA-256 <code>{html.escape(entry['redacted_sha256'])}</code>"
                )
            sections.append(f"<li>{'<br>'.join(parts)}</li>")
        sections.append("</ol>")
    sections.append(f"<h2>{html.escape(labels['good_faith_title'])}</h2>")
    sections.append(f"<p>{html.escape(document['good_faith'])}</p>")
    sections.append(
        f'<p class="small">{html.escape(labels["signature"])} '
        f"<code>{html.escape(document['signature']['keys'])}</code></p>"
    )
    return _shell().substitute(
        lang=html.escape(document["language"]),
        title=html.escape(words["title"]),
        reference=html.escape(document["reference"]),
        reference_label=html.escape(labels["reference"]),
        issued_label=html.escape(labels["issued_at"]),
        issued_at=html.escape(document["issued_at"]),
        intro=html.escape(intro),
        sections="\n".join(sections),
    )


def render_text(
    document: dict[str, Any], *, portal_link: str | None, due_at: datetime | None
) -> str:
    """The plain-text part of the notice e-mail: a summary and how to answer (not signed; the
    signed notice is the attached JSON and the HTML part)."""
    words = texts(document["language"])
    labels: dict[str, str] = words["labels"]
    notifier = document["notifier"]
    intro = (
        words["intro"].format(notifier=notifier["name"]) if notifier else words["intro_anonymous"]
    )
    lines = [
        words["title"],
        f"{labels['reference']}: {document['reference']}",
        "",
        intro,
        "",
        f"{labels['category']}: {words['categories'].get(document['helpline_category'], '')}",
        f"{labels['legal_basis']}: {document['legal_basis']['citation']}",
        "",
        f"{labels['urls']}:",
        *(f"{entry['position']}. {entry['url']}" for entry in document["urls"]),
        "",
    ]
    if any(entry.get("redacted_sha256") for entry in document["hashes"]):
        lines += [labels["redacted_note"], ""]
    if due_at is not None:
        lines += [f"{labels['due']}: {iso(due_at)}", ""]
    lines.append(f"{labels['answer']}:")
    if portal_link:
        lines.append(f"{labels['portal']} {portal_link}")
    lines += [labels["reply"], "", f"{labels['signature']} {document['signature']['keys']}"]
    return "\n".join(lines) + "\n"


def subject_of(document: dict[str, Any]) -> str:
    words = texts(document["language"])
    category = words["categories"].get(document["helpline_category"], "")
    return str(words["subject"].format(reference=document["reference"], category=category))


# ---------------------------------------------------------------- signing


@dataclass(frozen=True)
class Signed:
    """A notice as delivered: the exact bytes and their detached signatures (base64url)."""

    json_bytes: bytes
    html_bytes: bytes
    kid: str
    json_signature: str
    html_signature: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.json_bytes).hexdigest()

    def envelope(self, keys: str) -> dict[str, Any]:
        """What travels next to the notice (`notice.sig.json`): which key, which bytes."""
        return {
            "alg": "Ed25519",
            "kid": self.kid,
            "keys": keys,
            "signatures": {"notice.json": self.json_signature, "notice.html": self.html_signature},
        }


def sign(signer: Signer, document: dict[str, Any]) -> Signed:
    json_bytes = canonical_json(document)
    html_bytes = render_html(document).encode("utf-8")
    return Signed(
        json_bytes=json_bytes,
        html_bytes=html_bytes,
        kid=signer.kid,
        json_signature=b64url(signer.sign(json_bytes)),
        html_signature=b64url(signer.sign(html_bytes)),
    )


async def sign_notice(session: AsyncSession, found: Services, notice: Notice) -> Signed:
    """Freeze the notice: build, sign and store (encrypted) the exact bytes to deliver."""
    parts = await load_parts(session, found, notice)
    await attach_redacted_copies(session, found, notice, parts.items)
    document = build_document(parts, found, issued_at=found.clock.now())
    signed = sign(found.signer, document)
    cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    notice.document = cipher.encrypt(
        signed.json_bytes, table=TABLE, row_id=notice.id, field="document"
    )
    notice.html = cipher.encrypt(signed.html_bytes, table=TABLE, row_id=notice.id, field="html")
    notice.document_sha256 = signed.sha256
    notice.signature, notice.html_signature = signed.json_signature, signed.html_signature
    notice.kid = signed.kid
    await session.flush()
    return signed


async def attach_redacted_copies(
    session: AsyncSession, found: Services, notice: Notice, items: list[NoticeItem]
) -> None:
    """Render the redacted copies staff asked for (the staff's blurred preview: re-encoded
    JPEG, no metadata) and store them under the notice key. Checked again here: the case or
    item may have been marked a possible minor since the draft was made (422 then)."""
    wanted = [item for item in items if item.attach_redacted and item.redacted is None]
    if not wanted:
        return
    from helpline.evidence.service import MAX_IMAGE_FOR_HASHING, vault_for

    case = await session.get(Case, notice.case_id) if notice.case_id else None
    notice_cipher = await found.keyring.cipher(session, notice_scope(notice.id))
    vault = vault_for(found.settings)
    for item in wanted:
        source = (
            await session.get(EvidenceItem, item.evidence_item_id)
            if item.evidence_item_id
            else None
        )
        if case is None or source is None or source.case_id != case.id:
            raise Invalid(f"items.{item.position - 1}: the evidence item is gone; no copy")
        if (why := redactable(case, source)) is not None:
            raise Invalid(f"items.{item.position - 1}.attach_redacted: {why}")
        assert source.blob_name is not None
        case_cipher = await found.keyring.cipher(session, case_scope(case.id))
        data = await vault.read_all(
            source.blob_name, case_cipher.derive("evidence"), max_bytes=MAX_IMAGE_FOR_HASHING
        )
        copy = await render_preview(data, blur=True)
        item.redacted = notice_cipher.encrypt(
            copy, table=ITEMS_TABLE, row_id=item.id, field="redacted"
        )
        item.redacted_sha256 = hashlib.sha256(copy).hexdigest()
        item.redacted_media_type = REDACTED_MEDIA_TYPE
    await session.flush()


async def redacted_copy(
    session: AsyncSession, found: Services, item: NoticeItem
) -> tuple[bytes, str] | None:
    """The stored redacted copy of a notice item and its media type, or None."""
    if item.redacted is None:
        return None
    cipher = await found.keyring.cipher(session, notice_scope(item.notice_id), create=False)
    data = cipher.decrypt(item.redacted, table=ITEMS_TABLE, row_id=item.id, field="redacted")
    return data, item.redacted_media_type or REDACTED_MEDIA_TYPE


async def stored_signed(session: AsyncSession, found: Services, notice: Notice) -> Signed | None:
    """The frozen notice, or None while it is a draft."""
    if notice.document is None or notice.html is None or notice.kid is None:
        return None
    cipher = await found.keyring.cipher(session, notice_scope(notice.id), create=False)
    return Signed(
        json_bytes=cipher.decrypt(notice.document, table=TABLE, row_id=notice.id, field="document"),
        html_bytes=cipher.decrypt(notice.html, table=TABLE, row_id=notice.id, field="html"),
        kid=notice.kid,
        json_signature=notice.signature or "",
        html_signature=notice.html_signature or "",
    )


def _b64url_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def verify_detached(keys: list[dict[str, Any]], kid: str, data: bytes, signature: str) -> bool:
    """Whether `signature` (base64url) over `data` was made by key `kid` of a published key
    set (`/.well-known/helpline-keys.json`'s `keys`): what a platform does with a notice."""
    raw = _b64url_decode(signature)
    for key in keys:
        if key.get("kid") == kid and key.get("kty") == "OKP" and key.get("crv") == "Ed25519":
            public = _b64url_decode(str(key.get("x", "")))
            return raw is not None and public is not None and verify_signature(public, data, raw)
    return False


def document_of(signed: Signed) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(signed.json_bytes)
    return result
