"""The victim's consent: the text they see (or hear read out) and every answer to a proposal.

The text says, in the handover's language and in words a frightened teenager understands,
"<partner> will receive: …" and "<partner> will not receive: …" (docs/api/handover.md, "Parts").
It is a pure function of the proposal (partner, parts, summary, evidence items, contact
method) and of the case's category and risk flags, so the same proposal always gives the same
text; an answer carries the SHA-256 of the text it answers and is refused when that is not
the current text (`TextChanged`).

Each answer is a `handover_consents` row: the scope it covers (`gate.scope_of`, canonical JSON
and hash), the exact text (encrypted under the handover's scope; with the contact details the
victim typed appended as a line), the method, the decision, who recorded it and when, and when
it expires. A verbal or written answer recorded by staff counts only once a second staff
member confirmed it; the recorder never can (`SamePerson`). The status changes go through
`state.move`; queueing or stopping the delivery is `service`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from helpline.cases.models import Case
from helpline.core.clock import as_utc
from helpline.core.crypto import canonical_json, case_scope
from helpline.core.errors import Conflict, Forbidden, HelplineError, Invalid
from helpline.core.ids import new_id
from helpline.core.services import Services
from helpline.evidence.models import EvidenceItem, ItemKind
from helpline.handover import gate, state
from helpline.handover.models import Handover, HandoverConsent, Partner, handover_scope
from helpline.handover.partners import description_for
from helpline.handover.states import (
    PART_ORDER,
    WITHDRAWABLE,
    ConsentDecision,
    ConsentMethod,
    HandoverStatus,
    Part,
)
from helpline.triage.vocabulary import parse_flags

LANGUAGES = ("nl", "en")
CONSENTS = "handover_consents"
HANDOVERS = "handovers"
MAX_CONTACT_DETAILS = 300
H = HandoverStatus


class TextChanged(Conflict):
    code = "text_changed"


class NotOpen(Conflict):
    code = "not_open"


class AlreadyDelivered(Conflict):
    code = "already_delivered"


class SamePerson(Forbidden):
    code = "same_person"


class ConsentExpired(Conflict):
    code = "consent_expired"


class ContactNotAsked(HelplineError):
    status = 400
    code = "contact_not_asked"


# ---------------------------------------------------------------- words

MONTHS = {
    "en": (
        "January February March April May June July August September October November December"
    ).split(),
    "nl": (
        "januari februari maart april mei juni juli augustus september oktober november december"
    ).split(),
}

CATEGORY_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "intimate_images": "intimate images of you that were shared, or are threatened to be "
        "shared, without your consent",
        "sextortion": "someone is threatening you with images of you (sextortion)",
        "deepfake": "fake (edited) sexual images of you (a deepfake)",
        "doxxing": "your personal details were put online",
        "impersonation": "someone pretends to be you online",
        "harassment": "someone harasses you online",
        "privacy": "your privacy was violated online",
        "grooming": "an adult tried to get sexual contact with a young person (grooming)",
        "possible_minor": "images of someone who may be under 18",
        "other": "something else that happened online",
    },
    "nl": {
        "intimate_images": "intieme beelden van jou die zonder jouw toestemming zijn gedeeld, "
        "of waarmee gedreigd wordt",
        "sextortion": "iemand chanteert je met beelden van jou (sextortion)",
        "deepfake": "nepbeelden (bewerkt) van jou die seksueel zijn (een deepfake)",
        "doxxing": "jouw persoonlijke gegevens zijn online gezet",
        "impersonation": "iemand doet zich online voor als jou",
        "harassment": "iemand valt je online lastig",
        "privacy": "jouw privacy is online geschonden",
        "grooming": "een volwassene probeerde seksueel contact te krijgen met een jongere "
        "(grooming)",
        "possible_minor": "beelden van iemand die misschien jonger is dan 18",
        "other": "iets anders dat online is gebeurd",
    },
}

FLAG_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "minor_involved": "someone under 18 is involved",
        "self_harm": "we are worried about your safety",
        "extortion_deadline": "someone gave you a deadline",
        "spreading_now": "the images are being spread right now",
        "physical_danger": "you may be in danger",
        "wants_police": "you want to report it to the police",
    },
    "nl": {
        "minor_involved": "er is iemand jonger dan 18 bij betrokken",
        "self_harm": "we maken ons zorgen over je veiligheid",
        "extortion_deadline": "iemand gaf je een deadline",
        "spreading_now": "de beelden worden nu verspreid",
        "physical_danger": "je bent misschien in gevaar",
        "wants_police": "je wilt aangifte doen bij de politie",
    },
}

CONTACT_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "phone": "by phone",
        "email": "by e-mail",
        "chat": "through our chat (they ask us, we ask you)",
        "letter": "by letter",
        "none": "not at all: you will contact {partner} yourself",
    },
    "nl": {
        "phone": "telefonisch",
        "email": "per e-mail",
        "chat": "via onze chat (zij vragen het ons, wij vragen het jou)",
        "letter": "per brief",
        "none": "niet: je neemt zelf contact op met {partner}",
    },
}

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Sharing your information with {partner}",
        "receives": "{partner} will receive:",
        "not_receives": "{partner} will not receive:",
        "summary": 'A short summary we wrote for {partner}: "{summary}"',
        "categories": "What happened, in short: {category}.",
        "flags": "Important to know: {flags}.",
        "timeline": "A list of what happened on your case and when (no chat messages).",
        "contact": "How you would like to be contacted: {method}.",
        "file": 'Evidence: the file "{name}", saved on {when}.',
        "image": 'Evidence: the picture "{name}", saved on {when}.',
        "video": 'Evidence: the video "{name}", saved on {when}.',
        "file_unnamed": "Evidence: a file, saved on {when}.",
        "url": "Evidence: the link {url}, saved on {when}.",
        "hash_only": "Evidence: a code that recognises an image (not the image itself), saved on "
        "{when}.",
        "not_summary": "A summary of your story.",
        "not_categories": "What happened to you and what we are worried about.",
        "not_timeline": "A list of what happened on your case.",
        "not_contact": "How to reach you, or your contact details.",
        "not_evidence": "Your evidence (pictures, files, links).",
        "not_other_evidence": "Any other evidence you sent us.",
        "not_chat": "Our chat conversation: none of your messages.",
        "not_notes": "Notes our team wrote.",
        "not_code": "Your conversation code and passphrase.",
        "footer": "Nothing is shared unless you say yes. If you say yes, you can still change "
        "your mind until {partner} has been sent the information. Your yes is valid for "
        "{hours} hours.",
        "contact_details": "Your contact details for {partner}: {details}",
        "date": "{day} {month} {year} at {time}",
    },
    "nl": {
        "title": "Jouw gegevens delen met {partner}",
        "receives": "{partner} krijgt:",
        "not_receives": "{partner} krijgt niet:",
        "summary": 'Een korte samenvatting die wij schreven voor {partner}: "{summary}"',
        "categories": "Waar het kort gezegd over gaat: {category}.",
        "flags": "Belangrijk om te weten: {flags}.",
        "timeline": "Een lijst van wat er met je melding is gebeurd en wanneer (geen "
        "chatberichten).",
        "contact": "Hoe je benaderd wilt worden: {method}.",
        "file": 'Bewijs: het bestand "{name}", bewaard op {when}.',
        "image": 'Bewijs: de afbeelding "{name}", bewaard op {when}.',
        "video": 'Bewijs: de video "{name}", bewaard op {when}.',
        "file_unnamed": "Bewijs: een bestand, bewaard op {when}.",
        "url": "Bewijs: de link {url}, bewaard op {when}.",
        "hash_only": "Bewijs: een code die een afbeelding herkent (niet de afbeelding zelf), "
        "bewaard op {when}.",
        "not_summary": "Een samenvatting van je verhaal.",
        "not_categories": "Wat er met je is gebeurd en waar we ons zorgen over maken.",
        "not_timeline": "Een lijst van wat er met je melding is gebeurd.",
        "not_contact": "Hoe ze je kunnen bereiken, of je contactgegevens.",
        "not_evidence": "Je bewijs (afbeeldingen, bestanden, links).",
        "not_other_evidence": "Ander bewijs dat je ons stuurde.",
        "not_chat": "Ons chatgesprek: geen van je berichten.",
        "not_notes": "Notities van ons team.",
        "not_code": "Je gesprekscode en wachtwoord.",
        "footer": "Er wordt niets gedeeld als je geen ja zegt. Zeg je ja, dan kun je nog van "
        "gedachten veranderen tot {partner} de gegevens heeft gekregen. Je ja geldt "
        "{hours} uur.",
        "contact_details": "Je contactgegevens voor {partner}: {details}",
        "date": "{day} {month} {year} om {time}",
    },
}


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else "nl"


def _when(moment: datetime, language: str, zone: ZoneInfo) -> str:
    local = as_utc(moment).astimezone(zone)
    return WORDS[language]["date"].format(
        day=local.day,
        month=MONTHS[language][local.month - 1],
        year=local.year,
        time=local.strftime("%H:%M"),
    )


@dataclass(frozen=True)
class EvidenceLine:
    """One evidence item as the victim sees it: kind, file name or URL, when captured."""

    id: str
    kind: str
    media_type: str | None
    name: str | None
    url: str | None
    captured_at: datetime


@dataclass(frozen=True)
class Proposal:
    """Everything the consent text is made of."""

    language: str
    partner_name: str
    parts: list[Part]
    summary: str | None
    category: str | None
    flags: list[str]
    contact_method: str | None
    evidence: list[EvidenceLine]
    consent_hours: int
    timezone: str


@dataclass(frozen=True)
class ConsentText:
    language: str
    title: str
    will_receive: list[str]
    will_not_receive: list[str]
    text: str

    @property
    def sha256(self) -> str:
        return text_hash(self.text)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _evidence_line(item: EvidenceLine, language: str, zone: ZoneInfo) -> str:
    words = WORDS[language]
    when = _when(item.captured_at, language, zone)
    if item.kind == ItemKind.url.value:
        return words["url"].format(url=item.url or "?", when=when)
    if item.kind == ItemKind.hash_only.value:
        return words["hash_only"].format(when=when)
    if not item.name:
        return words["file_unnamed"].format(when=when)
    media = item.media_type or ""
    key = (
        "image" if media.startswith("image/") else "video" if media.startswith("video/") else "file"
    )
    return words[key].format(name=item.name, when=when)


def build_text(proposal: Proposal) -> ConsentText:
    """The consent text of a proposal (pure: the same proposal gives the same text)."""
    language = language_of(proposal.language)
    words = WORDS[language]
    partner = proposal.partner_name
    zone = ZoneInfo(proposal.timezone)
    chosen = set(proposal.parts)
    receive: list[str] = []
    not_receive: list[str] = []
    for part in PART_ORDER:
        if part not in chosen:
            not_receive.append(words[f"not_{part.value}"])
            continue
        if part is Part.summary:
            summary = " ".join((proposal.summary or "").split())
            receive.append(words["summary"].format(partner=partner, summary=summary))
        elif part is Part.categories:
            category = CATEGORY_WORDS[language].get(
                proposal.category or "other", CATEGORY_WORDS[language]["other"]
            )
            line = words["categories"].format(category=category)
            flags = [FLAG_WORDS[language][f] for f in proposal.flags if f in FLAG_WORDS[language]]
            if flags:
                line += " " + words["flags"].format(flags="; ".join(flags))
            receive.append(line)
        elif part is Part.timeline:
            receive.append(words["timeline"])
        elif part is Part.contact:
            method = CONTACT_WORDS[language].get(proposal.contact_method or "none", "?")
            receive.append(words["contact"].format(method=method.format(partner=partner)))
        elif part is Part.evidence:
            ordered = sorted(proposal.evidence, key=lambda e: (as_utc(e.captured_at), e.id))
            receive.extend(_evidence_line(item, language, zone) for item in ordered)
            not_receive.append(words["not_other_evidence"])
    not_receive.extend([words["not_chat"], words["not_notes"], words["not_code"]])
    title = words["title"].format(partner=partner)
    lines = [title, "", words["receives"].format(partner=partner)]
    lines += [f"- {line}" for line in receive]
    lines += ["", words["not_receives"].format(partner=partner)]
    lines += [f"- {line}" for line in not_receive]
    lines += ["", words["footer"].format(partner=partner, hours=proposal.consent_hours)]
    return ConsentText(language, title, receive, not_receive, "\n".join(lines))


# ---------------------------------------------------------------- reading a proposal


async def read_summary(session: AsyncSession, found: Services, handover: Handover) -> str | None:
    """The summary staff wrote (encrypted under the handover's scope)."""
    if handover.summary is None:
        return None
    cipher = await found.keyring.cipher(session, handover_scope(handover.id))
    return cipher.decrypt_text(
        handover.summary, table=HANDOVERS, row_id=handover.id, field="summary"
    )


async def read_contact_details(
    session: AsyncSession, found: Services, handover: Handover
) -> str | None:
    """The contact details the victim added for this handover, if any."""
    if handover.contact_details is None:
        return None
    cipher = await found.keyring.cipher(session, handover_scope(handover.id))
    return cipher.decrypt_text(
        handover.contact_details, table=HANDOVERS, row_id=handover.id, field="contact_details"
    )


async def read_consent_text(
    session: AsyncSession, found: Services, consent: HandoverConsent
) -> str:
    """The text of a consent exactly as stored (shown, plus the details the victim typed)."""
    cipher = await found.keyring.cipher(session, handover_scope(consent.handover_id))
    return cipher.decrypt_text(consent.text, table=CONSENTS, row_id=consent.id, field="text")


async def evidence_lines(
    session: AsyncSession, found: Services, case_id: str | None, ids: list[str]
) -> list[EvidenceLine]:
    if not ids or case_id is None:
        return []
    rows = await session.execute(
        select(EvidenceItem).where(
            col(EvidenceItem.id).in_(ids), col(EvidenceItem.case_id) == case_id
        )
    )
    items = list(rows.scalars().all())
    cipher = await found.keyring.cipher(session, case_scope(case_id)) if items else None
    lines = []
    for item in items:
        assert cipher is not None
        name = url = None
        if item.filename:
            name = cipher.decrypt_text(
                item.filename, table="evidence_items", row_id=item.id, field="filename"
            )
        if item.source_url:
            url = cipher.decrypt_text(
                item.source_url, table="evidence_items", row_id=item.id, field="source_url"
            )
        lines.append(EvidenceLine(item.id, item.kind, item.media_type, name, url, item.captured_at))
    return lines


async def text_of(
    session: AsyncSession, found: Services, handover: Handover, partner: Partner | None = None
) -> ConsentText:
    """The current consent text of a handover, in its language."""
    partner = partner or await session.get(Partner, handover.partner_id)
    assert partner is not None
    case = await session.get(Case, handover.case_id) if handover.case_id else None
    parts = gate.parts_of(handover)
    return build_text(
        Proposal(
            language=handover.language,
            partner_name=partner.name,
            parts=parts,
            summary=await read_summary(session, found, handover) if Part.summary in parts else None,
            category=case.category if case else None,
            flags=parse_flags(case.risk_flags) if case else [],
            contact_method=handover.contact_method,
            evidence=await evidence_lines(
                session, found, handover.case_id, gate.evidence_ids_of(handover)
            )
            if Part.evidence in parts
            else [],
            consent_hours=found.settings.handover_consent_hours,
            timezone=found.settings.timezone,
        )
    )


def partner_description(partner: Partner, language: str) -> str | None:
    return description_for(partner, language_of(language))


# ---------------------------------------------------------------- answers


async def current_consent(session: AsyncSession, handover: Handover) -> HandoverConsent | None:
    if not handover.consent_id:
        return None
    consent = await session.get(HandoverConsent, handover.consent_id)
    return consent if consent is not None and consent.handover_id == handover.id else None


def is_pending(handover: Handover, consent: HandoverConsent | None) -> bool:
    """A recorded yes that waits for a second staff member."""
    return (
        consent is not None
        and handover.status == H.proposed
        and consent.decision == ConsentDecision.accepted
        and consent.method != ConsentMethod.chat
        and consent.confirmed_by is None
        and consent.withdrawn_at is None
    )


async def _ensure_open(session: AsyncSession, handover: Handover) -> None:
    if handover.status != H.proposed:
        raise NotOpen(f"this proposal is {handover.status}, it cannot be answered")
    consent = await current_consent(session, handover)
    if is_pending(handover, consent):
        raise NotOpen("an answer was recorded and waits for a second staff member")


async def record_answer(
    session: AsyncSession,
    found: Services,
    handover: Handover,
    *,
    method: ConsentMethod,
    decision: ConsentDecision,
    text_sha256: str,
    recorded_by: str,
    contact_details: str | None = None,
) -> HandoverConsent:
    """Record one answer to an open proposal (docs/api/handover.md). A yes in the chat makes
    the handover `consented`; a recorded yes waits for confirmation; a no makes it `declined`.
    `recorded_by`: `victim` or `staff:<id>`."""
    await _ensure_open(session, handover)
    partner = await session.get(Partner, handover.partner_id)
    assert partner is not None
    shown = await text_of(session, found, handover, partner)
    if text_sha256.strip().lower() != shown.sha256:
        raise TextChanged("the proposal's text has changed: show it again")
    details = (contact_details or "").strip() or None
    if details is not None:
        if decision is not ConsentDecision.accepted or Part.contact not in gate.parts_of(handover):
            raise ContactNotAsked("contact details are only taken for a handover that asks them")
        if len(details) > MAX_CONTACT_DETAILS or "\n" in details:
            raise Invalid(f"contact_details: one line of at most {MAX_CONTACT_DETAILS} characters")
    now = found.clock.now()
    cipher = await found.keyring.cipher(session, handover_scope(handover.id))
    stored = shown.text
    if details is not None:
        handover.contact_details = cipher.encrypt(
            details, table=HANDOVERS, row_id=handover.id, field="contact_details"
        )
        words = WORDS[shown.language]
        stored += "\n\n" + words["contact_details"].format(partner=partner.name, details=details)
    scope = gate.scope_of(handover, partner)
    consent_id = new_id()
    consent = HandoverConsent(
        id=consent_id,
        handover_id=handover.id,
        scope=canonical_json(scope).decode(),
        scope_sha256=gate.scope_hash(scope),
        text=cipher.encrypt(stored, table=CONSENTS, row_id=consent_id, field="text"),
        text_sha256=text_hash(stored),
        language=shown.language,
        method=method.value,
        decision=decision.value,
        recorded_by=recorded_by,
        recorded_at=now,
        expires_at=now + timedelta(hours=found.settings.handover_consent_hours),
    )
    session.add(consent)
    handover.consent_id = consent_id
    handover.updated_at = now
    await session.flush()
    audit = {"consent": consent_id, "method": method.value, "decision": decision.value}
    if decision is ConsentDecision.declined:
        await state.move(
            session, found.clock, handover, H.declined, actor=recorded_by, details=audit
        )
    elif method is ConsentMethod.chat:
        await state.move(
            session, found.clock, handover, H.consented, actor=recorded_by, details=audit
        )
    else:
        await state.note(
            session,
            found.clock,
            handover,
            actor=recorded_by,
            event="consent_recorded",
            details=audit,
        )
    return consent


async def confirm(
    session: AsyncSession, found: Services, handover: Handover, *, staff_id: str
) -> HandoverConsent:
    """A second staff member confirms a recorded yes: the handover becomes `consented`."""
    consent = await current_consent(session, handover)
    if consent is None or not is_pending(handover, consent):
        raise NotOpen("there is no recorded answer waiting for confirmation")
    if consent.recorded_by == f"staff:{staff_id}":
        raise SamePerson("a colleague must confirm the answer you recorded")
    now = found.clock.now()
    if as_utc(now) >= as_utc(consent.expires_at):
        raise ConsentExpired("the recorded answer has expired; ask the victim again")
    consent.confirmed_by, consent.confirmed_at = staff_id, now
    await session.flush()
    await state.move(
        session,
        found.clock,
        handover,
        H.consented,
        actor=f"staff:{staff_id}",
        details={"consent": consent.id, "confirmed": True, "method": consent.method},
    )
    return consent


def can_withdraw(handover: Handover, consent: HandoverConsent | None) -> bool:
    """The victim may take back a yes until the packet is delivered."""
    status = HandoverStatus(handover.status)
    if status is H.proposed:
        return is_pending(handover, consent)
    return status in WITHDRAWABLE and consent is not None


async def withdraw(session: AsyncSession, found: Services, handover: Handover, *, by: str) -> None:
    """The victim (`by` = `victim`) withdraws consent, or staff (`staff:<id>`) cancel the
    proposal: the handover becomes `withdrawn` (the caller stops the delivery)."""
    status = HandoverStatus(handover.status)
    consent = await current_consent(session, handover)
    if status in (H.delivered, H.downloaded):
        raise AlreadyDelivered("the information was already delivered")
    if by == "victim" and not can_withdraw(handover, consent):
        raise NotOpen(f"this proposal is {handover.status}: there is no yes to withdraw")
    if status not in WITHDRAWABLE:
        raise NotOpen(f"this proposal is {handover.status}")
    now = found.clock.now()
    details: dict[str, str | None] = {"by": by.split(":")[0]}
    if (
        consent is not None
        and consent.decision == ConsentDecision.accepted
        and consent.withdrawn_at is None
    ):
        consent.withdrawn_at, consent.withdrawn_by = now, by
        details["consent"] = consent.id
        await session.flush()
    await state.move(session, found.clock, handover, H.withdrawn, actor=by, details=details)
