"""The words of a handover packet and of its notification e-mail, in the handover's language
(`handover.language`: `nl` or `en`): README.txt, summary.txt and summary.html, the police's
VERIFY.txt and intake.txt, the words in handover.json (category, risks, contact, timeline)
and the mail that announces the packet.

Pure functions of the packet's document (`packet._contents`), so they are tested without
sealing anything. The partner reads these, not the victim: Dutch texts address the partner
with "u". The police's intake.txt is shaped for the intakegesprek (informatief gesprek) that
comes before an aangifte: what happened, when, what kind of offence, where it is online,
what was done about it, the evidence, and how to reach the victim.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from helpline.core.clock import as_utc

LANGUAGES = ("nl", "en")


def language_of(value: str | None) -> str:
    """`nl` or `en`; anything else is Dutch (the helpline's own language)."""
    return value if value in LANGUAGES else "nl"


# ---------------------------------------------------------------- words

CATEGORY_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "intimate_images": "intimate images shared or threatened to be shared without consent",
        "sextortion": "sextortion (blackmail with intimate images)",
        "deepfake": "deepfake or manipulated sexual images",
        "doxxing": "personal details published (doxxing)",
        "impersonation": "impersonation or a hijacked account",
        "harassment": "online harassment or stalking",
        "privacy": "privacy violation",
        "grooming": "grooming",
        "possible_minor": "a minor may be depicted",
        "other": "other",
    },
    "nl": {
        "intimate_images": "intieme beelden zonder toestemming gedeeld, of gedreigd dat te doen",
        "sextortion": "sextortion (afpersing met intieme beelden)",
        "deepfake": "deepfake of bewerkte seksuele beelden",
        "doxxing": "persoonsgegevens online gezet (doxing)",
        "impersonation": "zich online voordoen als het slachtoffer, of een overgenomen account",
        "harassment": "online intimidatie of stalking",
        "privacy": "schending van de privacy",
        "grooming": "grooming",
        "possible_minor": "mogelijk is een minderjarige in beeld",
        "other": "overig",
    },
}
FLAG_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "minor_involved": "a minor is involved",
        "self_harm": "risk of self-harm",
        "extortion_deadline": "an extortion deadline",
        "spreading_now": "the material is spreading now",
        "physical_danger": "physical danger",
        "wants_police": "wants to involve the police",
    },
    "nl": {
        "minor_involved": "er is een minderjarige bij betrokken",
        "self_harm": "risico op zelfbeschadiging",
        "extortion_deadline": "de afperser heeft een deadline gesteld",
        "spreading_now": "het materiaal wordt op dit moment verspreid",
        "physical_danger": "fysiek gevaar",
        "wants_police": "wil de politie inschakelen",
    },
}
CONTACT_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "phone": "by phone",
        "email": "by e-mail",
        "chat": "through the helpline's chat (ask the helpline)",
        "letter": "by letter",
        "none": "the victim will contact you themselves",
    },
    "nl": {
        "phone": "telefonisch",
        "email": "per e-mail",
        "chat": "via de chat van de hulplijn (vraag het de hulplijn)",
        "letter": "per brief",
        "none": "het slachtoffer neemt zelf contact met u op",
    },
}
# case events that say something to a partner; internal ones (who in the team holds the case,
# priorities, e-mail failures, other handovers) are left out
EVENT_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "claim": "the helpline took up the case",
        "triage": "category or risk assessed",
        "status": "case status changed",
        "end": "the conversation ended",
        "reopen": "the victim came back to the conversation",
        "close": "the case was closed",
        "notice": "removal request to a platform",
        "notice_reply": "a platform answered a removal request",
        "reply": "a platform answered a removal request",
        "notice_question": "a platform asked a question about a removal request",
        "question": "a platform asked a question about a removal request",
        "callback_requested": "the victim asked to be called back",
        "callback_attempt": "the helpline called the victim back",
    },
    "nl": {
        "claim": "de hulplijn heeft de melding opgepakt",
        "triage": "categorie of risico beoordeeld",
        "status": "status van de melding gewijzigd",
        "end": "het gesprek is beëindigd",
        "reopen": "het slachtoffer kwam terug in het gesprek",
        "close": "de melding is afgesloten",
        "notice": "verwijderverzoek aan een platform",
        "notice_reply": "een platform antwoordde op een verwijderverzoek",
        "reply": "een platform antwoordde op een verwijderverzoek",
        "notice_question": "een platform stelde een vraag over een verwijderverzoek",
        "question": "een platform stelde een vraag over een verwijderverzoek",
        "callback_requested": "het slachtoffer vroeg om teruggebeld te worden",
        "callback_attempt": "de hulplijn belde het slachtoffer terug",
    },
}
NOTICE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "queued": "queued",
        "sent": "sent, waiting for the platform",
        "receipt_confirmed": "the platform confirmed receipt",
        "honoured": "removed by the platform",
        "partly_honoured": "partly removed or restricted",
        "declined": "the platform declined to act",
        "more_info_requested": "the platform asked for more information",
        "no_response": "no answer before the deadline",
        "withdrawn": "withdrawn by the helpline",
    },
    "nl": {
        "queued": "klaargezet",
        "sent": "verstuurd, wacht op het platform",
        "receipt_confirmed": "het platform bevestigde de ontvangst",
        "honoured": "verwijderd door het platform",
        "partly_honoured": "deels verwijderd of afgeschermd",
        "declined": "het platform weigerde in te grijpen",
        "more_info_requested": "het platform vroeg om meer informatie",
        "no_response": "geen antwoord binnen de termijn",
        "withdrawn": "ingetrokken door de hulplijn",
    },
}
KIND_WORDS: dict[str, dict[str, str]] = {
    "en": {"file": "file", "url": "web page (URL)", "hash_only": "image known by its hashes"},
    "nl": {
        "file": "bestand",
        "url": "webpagina (URL)",
        "hash_only": "afbeelding die alleen aan haar hashes bekend is",
    },
}
CHANNEL_WORDS: dict[str, dict[str, str]] = {
    "en": {"chat": "chat", "email": "email", "callback": "callback"},
    "nl": {"chat": "chat", "email": "e-mail", "callback": "terugbelverzoek"},
}
PART_WORDS: dict[str, dict[str, str]] = {
    "en": {p: p for p in ("summary", "categories", "timeline", "contact", "evidence")},
    "nl": {
        "summary": "samenvatting",
        "categories": "categorie en risico's",
        "timeline": "tijdlijn",
        "contact": "contact",
        "evidence": "bewijs",
    },
}
DAYS = {
    "en": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "nl": "maandag dinsdag woensdag donderdag vrijdag zaterdag zondag".split(),
}
MONTHS = {
    "en": (
        "January February March April May June July August September October November December"
    ).split(),
    "nl": (
        "januari februari maart april mei juni juli augustus september oktober november december"
    ).split(),
}

# the fixed lines of the texts
LINES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Warm handover {reference}",
        "for": "For: {partner}",
        "from": "From: {helpline}",
        "consented": "The victim consented on {given} to sharing exactly: {parts}",
        "h_summary": "SUMMARY",
        "h_categories": "CATEGORY AND RISKS",
        "category": "Category: {category}",
        "risk": "Risk: {risk}",
        "h_timeline": "TIMELINE (no messages, no staff notes)",
        "h_contact": "HOW THE VICTIM WANTS TO BE CONTACTED",
        "details": "Details: {details}",
        "h_evidence": "EVIDENCE",
        "l_file": "file",
        "l_name": "name",
        "l_url": "URL",
        "l_captured": "captured",
        "custody": "Chain of custody per item: evidence/custody.json",
        "opened": "the victim contacted the helpline ({channel})",
        "evidence_added": "evidence added ({kind})",
        # summary.html
        "html_for": "For {partner}",
        "html_summary": "Summary",
        "html_categories": "Category and risks",
        "html_timeline": "Timeline",
        "html_contact": "How the victim wants to be contacted",
        "html_evidence": "Evidence",
        "html_what": "what",
    },
    "nl": {
        "title": "Warme overdracht {reference}",
        "for": "Voor: {partner}",
        "from": "Van: {helpline}",
        "consented": "Het slachtoffer gaf op {given} toestemming om precies dit te delen: {parts}",
        "h_summary": "SAMENVATTING",
        "h_categories": "CATEGORIE EN RISICO'S",
        "category": "Categorie: {category}",
        "risk": "Risico: {risk}",
        "h_timeline": "TIJDLIJN (geen berichten, geen notities van medewerkers)",
        "h_contact": "HOE HET SLACHTOFFER BENADERD WIL WORDEN",
        "details": "Gegevens: {details}",
        "h_evidence": "BEWIJS",
        "l_file": "bestand",
        "l_name": "naam",
        "l_url": "URL",
        "l_captured": "vastgelegd",
        "custody": "Bewaarketen (chain of custody) per item: evidence/custody.json",
        "opened": "het slachtoffer nam contact op met de hulplijn ({channel})",
        "evidence_added": "bewijs toegevoegd ({kind})",
        "html_for": "Voor {partner}",
        "html_summary": "Samenvatting",
        "html_categories": "Categorie en risico's",
        "html_timeline": "Tijdlijn",
        "html_contact": "Hoe het slachtoffer benaderd wil worden",
        "html_evidence": "Bewijs",
        "html_what": "wat",
    },
}


def when(moment: datetime, language: str = "en") -> str:
    """A time in words, e.g. `Thursday 1 January 2026, 09:00 UTC` or
    `donderdag 1 januari 2026, 09:00 UTC`."""
    lang = language_of(language)
    at = as_utc(moment)
    day, month = DAYS[lang][at.weekday()], MONTHS[lang][at.month - 1]
    return f"{day} {at.day} {month} {at.year}, {at.strftime('%H:%M')} UTC"


def words(table: dict[str, dict[str, str]], language: str, code: str | None) -> str | None:
    """The words for `code` in `language`, None for an unknown code."""
    return table[language_of(language)].get(code or "")


def opened_line(language: str, channel: str) -> str:
    lang = language_of(language)
    return LINES[lang]["opened"].format(channel=CHANNEL_WORDS[lang].get(channel, channel))


def evidence_added_line(language: str, kind: str) -> str:
    lang = language_of(language)
    return LINES[lang]["evidence_added"].format(kind=KIND_WORDS[lang].get(kind, kind))


# ---------------------------------------------------------------- summary.txt and .html


def summary_text(document: dict[str, Any], consent: dict[str, Any]) -> str:
    lang = language_of(document.get("language"))
    say = LINES[lang]
    parts = ", ".join(PART_WORDS[lang].get(part, part) for part in document["parts"])
    lines = [
        say["title"].format(reference=document["reference"]),
        say["for"].format(partner=document["partner"]["name"]),
        say["from"].format(helpline=document["helpline"]),
        say["consented"].format(given=consent["given"], parts=parts),
        "",
    ]
    if "summary" in document:
        lines += [say["h_summary"], "", document["summary"], ""]
    if "categories" in document:
        categories = document["categories"]
        lines += [say["h_categories"], ""]
        category = categories["category_words"] or categories["category"] or "-"
        lines.append(say["category"].format(category=category))
        for flag in categories["risk_flags"]:
            lines.append(say["risk"].format(risk=flag["words"]))
        lines.append("")
    if "timeline" in document:
        lines += [say["h_timeline"], ""]
        lines += [f"- {entry['when']}: {entry['what']}" for entry in document["timeline"]]
        lines.append("")
    if "contact" in document:
        contact = document["contact"]
        lines += [say["h_contact"], ""]
        lines.append(contact["words"] or contact["method"] or "-")
        if contact["details"]:
            lines.append(say["details"].format(details=contact["details"]))
        lines.append("")
    if "evidence" in document:
        lines += [say["h_evidence"], ""]
        for item in document["evidence"]:
            kind = KIND_WORDS[lang].get(item["kind"], item["kind"])
            lines.append(f"{item['number']:02d}. {kind}")
            for label, key in (
                (say["l_file"], "file"),
                (say["l_name"], "filename"),
                (say["l_url"], "url"),
                ("SHA-256", "sha256"),
                ("PDQ", "pdq"),
                (say["l_captured"], "captured_at"),
            ):
                if item.get(key):
                    lines.append(f"    {label}: {item[key]}")
        lines.append("")
        lines.append(say["custody"])
    return "\n".join(lines).rstrip() + "\n"


def summary_html(document: dict[str, Any]) -> str:
    """The summary as a page: escaped text only, no scripts, no remote content."""
    lang = language_of(document.get("language"))
    say = LINES[lang]
    e = html.escape
    body = [f"<h1>{e(say['title'].format(reference=document['reference']))}</h1>"]
    body.append(f"<p>{e(say['html_for'].format(partner=document['partner']['name']))}</p>")
    if "summary" in document:
        body.append(f"<h2>{e(say['html_summary'])}</h2>")
        body += [f"<p>{e(paragraph)}</p>" for paragraph in document["summary"].split("\n\n")]
    if "categories" in document:
        categories = document["categories"]
        body.append(f"<h2>{e(say['html_categories'])}</h2><ul>")
        body.append(f"<li>{e(categories['category_words'] or categories['category'] or '-')}</li>")
        body += [f"<li>{e(flag['words'])}</li>" for flag in categories["risk_flags"]]
        body.append("</ul>")
    if "timeline" in document:
        body.append(f"<h2>{e(say['html_timeline'])}</h2><ul>")
        body += [
            f'<li><time datetime="{e(entry["at"])}">{e(entry["when"])}</time>: '
            f"{e(entry['what'])}</li>"
            for entry in document["timeline"]
        ]
        body.append("</ul>")
    if "contact" in document:
        contact = document["contact"]
        body.append(f"<h2>{e(say['html_contact'])}</h2>")
        body.append(f"<p>{e(contact['words'] or contact['method'] or '-')}</p>")
        if contact["details"]:
            body.append(f"<p>{e(contact['details'])}</p>")
    if "evidence" in document:
        body.append(
            f"<h2>{e(say['html_evidence'])}</h2>"
            f"<table><tr><th>#</th><th>{e(say['html_what'])}</th><th>SHA-256</th></tr>"
        )
        for item in document["evidence"]:
            what = item["file"] or item["url"] or item["filename"] or item["kind"]
            body.append(
                f"<tr><td>{item['number']:02d}</td><td>{e(str(what))}</td>"
                f"<td><code>{e(item['sha256'] or '-')}</code></td></tr>"
            )
        body.append("</table>")
    return (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{e(document['reference'])}</title>"
        "<style>body{font-family:sans-serif;max-width:48rem;margin:2rem auto;line-height:1.5}"
        "td,th{padding:.2rem .5rem;text-align:left;vertical-align:top}</style>"
        "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- README.txt


def readme(reference: str, keys: str, police: bool, language: str) -> str:
    if language_of(language) == "nl":
        lines = [
            f"Warme overdracht {reference}",
            "",
            "Deze map bevat wat het slachtoffer met u wilde delen, en niets anders.",
            "",
            "  summary.txt / summary.html   de gedeelde onderdelen, leesbaar",
            "  handover.json                hetzelfde als gegevens (JSON)",
            "  evidence/                    de gedeelde bewijsbestanden, zoals vastgelegd",
            "  evidence/custody.json        per item: de hashes en de ondertekende bewaarketen",
        ]
        if police:
            lines += [
                "  police/intake.txt            een samenvatting voor het intakegesprek",
                "  police/evidence-bundle.zip   de bewijsexport (zie police/VERIFY.txt)",
            ]
        lines += [
            "  manifest.json                elk bestand met zijn SHA-256 en grootte",
            "  manifest.sig.json            de Ed25519-handtekening van de hulplijn over",
            "                               manifest.json",
            "",
            "Zo controleert u dat er niets is veranderd:",
            "",
            "1. De SHA-256 van elk bestand moet gelijk zijn aan die in manifest.json, bijvoorbeeld",
            "     sha256sum summary.txt",
            "2. manifest.sig.json bevat {kid, alg, signature}: een Ed25519-handtekening",
            "   (base64url) over de exacte bytes van manifest.json, gezet met de sleutel met die",
            "   kid. De hulplijn publiceert haar sleutels op",
            f"     {keys}",
            "",
            "Behandel dit pakket even vertrouwelijk als het dossier van het slachtoffer zelf:",
            "bewaar het versleuteld en verwijder het zodra u het niet meer nodig hebt.",
        ]
        return "\n".join(lines) + "\n"
    lines = [
        f"Warm handover {reference}",
        "",
        "This folder holds what the victim agreed to share with you, and nothing else.",
        "",
        "  summary.txt / summary.html   the shared parts, readable",
        "  handover.json                the same as data",
        "  evidence/                    the shared evidence files, as captured",
        "  evidence/custody.json        per item: hashes and its signed chain of custody",
    ]
    if police:
        lines += [
            "  police/intake.txt            a summary for the intake conversation",
            "  police/evidence-bundle.zip   the evidence export bundle (see police/VERIFY.txt)",
        ]
    lines += [
        "  manifest.json                every file with its SHA-256 and size",
        "  manifest.sig.json            the helpline's Ed25519 signature of manifest.json",
        "",
        "To check that nothing was changed:",
        "",
        "1. Every file's SHA-256 must equal the one in manifest.json, e.g.",
        "     sha256sum summary.txt",
        "2. manifest.sig.json holds {kid, alg, signature}: an Ed25519 signature (base64url)",
        "   over the exact bytes of manifest.json, by the key with that kid published at",
        f"     {keys}",
        "",
        "Keep this packet as confidential as the victim's own file: store it encrypted and",
        "delete it when you no longer need it.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- police/VERIFY.txt


def verify_text(reference: str, keys: str, language: str) -> str:
    if language_of(language) == "nl":
        return (
            f"Het bewijspakket van overdracht {reference} controleren\n\n"
            "evidence-bundle.zip is de bewijsexport van de hulplijn: de originele bestanden\n"
            "(files/), manifest.json met van elk item de SHA-256, het moment van vastleggen en\n"
            "de bewaarketen, manifest.sig (Ed25519 over manifest.json) en public-key.json.\n\n"
            "Met de software van de hulplijn:\n\n"
            "    helpline verify-bundle evidence-bundle.zip\n\n"
            "Dit toont elk bestand en elke regel van de bewaarketen die niet klopt, en niets\n"
            "als alles intact is. Met de hand:\n\n"
            "1. pak evidence-bundle.zip uit; voor elk item in manifest.json moet de sha256sum\n"
            "   van zijn `path` gelijk zijn aan zijn `sha256`, en de grootte aan zijn `size`;\n"
            "2. manifest.sig is {kid, alg, signature}: controleer de Ed25519-handtekening\n"
            "   (base64url) over de exacte bytes van manifest.json met de sleutel van die kid,\n"
            f"   en vergelijk die sleutel met wat de hulplijn publiceert op {keys};\n"
            "3. de `hash` van elke regel van de bewaarketen is SHA-256 over de canonieke JSON\n"
            "   van [item_id, seq, at, actor, event, details, prev_hash]; `prev_hash` is de\n"
            "   hash van de vorige regel (64 nullen voor de eerste), `signature` is Ed25519\n"
            "   over de hash in hex.\n"
        )
    return (
        f"Verifying the evidence bundle of handover {reference}\n\n"
        "evidence-bundle.zip is the helpline's evidence export: the original files\n"
        "(files/), manifest.json with every item's SHA-256, capture time and chain of custody,\n"
        "manifest.sig (Ed25519 over manifest.json) and public-key.json.\n\n"
        "With the helpline's software:\n\n"
        "    helpline verify-bundle evidence-bundle.zip\n\n"
        "It prints every file or custody entry that fails, and nothing else when all is\n"
        "intact. By hand:\n\n"
        "1. unzip evidence-bundle.zip; for every item in manifest.json, sha256sum of its\n"
        "   `path` must equal its `sha256`, and the size its `size`;\n"
        "2. manifest.sig is {kid, alg, signature}: verify the Ed25519 signature (base64url)\n"
        "   over the exact bytes of manifest.json with the key of that kid; compare that key\n"
        f"   with the one the helpline publishes at {keys};\n"
        "3. each custody entry's `hash` is SHA-256 over the canonical JSON of\n"
        "   [item_id, seq, at, actor, event, details, prev_hash]; `prev_hash` is the previous\n"
        "   entry's hash (64 zeros for the first), `signature` is Ed25519 over the hex hash.\n"
    )


# ---------------------------------------------------------------- police/intake.txt

INTAKE: dict[str, dict[str, str]] = {
    "en": {
        "title": "Intake summary - warm handover {reference}",
        "intro": "For the intake conversation before a report (aangifte). Only what the victim "
        "agreed\nto share is here; the victim can tell more in the conversation.",
        "what": "1. WHAT HAPPENED (written by the helpline)",
        "when": "2. WHEN",
        "kind": "3. CATEGORY",
        "risk": "- risk: {risk}",
        "online": "4. PLATFORMS AND URLS",
        "notices": "5. REMOVAL REQUESTS SENT AND THEIR OUTCOME",
        "notice": "- {platform}, sent {sent_at}: {outcome}",
        "evidence": "6. EVIDENCE (with SHA-256; verify: police/VERIFY.txt)",
        "contact": "7. CONTACT",
        "none": "- none",
    },
    "nl": {
        "title": "Samenvatting voor het intakegesprek - warme overdracht {reference}",
        "intro": "Voor het intakegesprek (informatief gesprek) dat aan een eventuele aangifte\n"
        "voorafgaat. Hierin staat alleen wat het slachtoffer heeft toegestaan te delen; in\n"
        "het gesprek kan het slachtoffer zelf meer vertellen. Of er aangifte wordt gedaan,\n"
        "beslist het slachtoffer.",
        "what": "1. WAT ER IS GEBEURD (geschreven door de hulplijn)",
        "when": "2. WANNEER",
        "kind": "3. AARD VAN DE ZAAK",
        "risk": "- risico: {risk}",
        "online": "4. PLATFORMS EN URL'S",
        "notices": "5. VERSTUURDE VERWIJDERVERZOEKEN EN HUN UITKOMST",
        "notice": "- {platform}, verstuurd {sent_at}: {outcome}",
        "evidence": "6. BEWIJS (met SHA-256; controleren: police/VERIFY.txt)",
        "contact": "7. CONTACT MET HET SLACHTOFFER",
        "none": "- geen",
    },
}


def intake_text(document: dict[str, Any]) -> str:
    """For the intake conversation before an aangifte: only the consented parts."""
    say = INTAKE[language_of(document.get("language"))]
    lines = [say["title"].format(reference=document["reference"]), "", say["intro"], ""]
    if "summary" in document:
        lines += [say["what"], "", document["summary"], ""]
    if "timeline" in document:
        lines += [say["when"], ""]
        lines += [f"- {entry['when']}: {entry['what']}" for entry in document["timeline"]]
        lines.append("")
    if "categories" in document:
        categories = document["categories"]
        lines += [say["kind"], ""]
        lines.append(categories["category_words"] or categories["category"] or "-")
        lines += [say["risk"].format(risk=flag["words"]) for flag in categories["risk_flags"]]
        lines.append("")
    if "evidence" in document:
        lines += [say["online"], ""]
        urls = [item for item in document["evidence"] if item["url"]]
        lines += [f"- {item['platform'] or '?'}: {item['url']}" for item in urls] or [say["none"]]
        lines.append("")
    if "notices" in document:
        lines += [say["notices"], ""]
        lines += [
            say["notice"].format(
                platform=notice["platform"], sent_at=notice["sent_at"], outcome=notice["outcome"]
            )
            for notice in document["notices"]
        ] or [say["none"]]
        lines.append("")
    if "evidence" in document:
        lines += [say["evidence"], ""]
        for item in document["evidence"]:
            what = item["file"] or item["url"] or item["kind"]
            lines.append(f"- {item['number']:02d} {what}: sha256 {item['sha256'] or '-'}")
        lines.append("")
    if "contact" in document:
        contact = document["contact"]
        lines += [say["contact"], "", contact["words"] or contact["method"] or "-"]
        if contact["details"]:
            lines.append(contact["details"])
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- the notification e-mail


def mail_subject(reference: str, language: str) -> str:
    if language_of(language) == "nl":
        return f"Versleuteld overdrachtspakket {reference}"
    return f"Sealed handover packet {reference}"


def mail_body(reference: str, link: str, expires_at: datetime, language: str) -> str:
    """That a packet waits, where, until when, and how to open it. No case data."""
    if language_of(language) == "nl":
        lines = [
            "Er staat een versleuteld overdrachtspakket van de hulplijn voor u klaar.",
            "",
            f"Referentie:  {reference}",
            f"Downloaden:  {link}",
            f"De link werkt tot {when(expires_at, 'nl')}, en maar één keer.",
            "",
            "Het pakket is versleuteld met de age-sleutel van uw organisatie. Open het met het",
            "identiteitsbestand (identity file) dat hoort bij de sleutel die u ons gaf:",
            "",
            f"    age -d -i identity.key {reference}.tar.age | tar -x",
            "",
            f"In de map {reference}/ staat daarna een README.txt die de inhoud uitlegt en",
            "beschrijft hoe u de handtekening van de hulplijn controleert.",
            "",
            "Werkt de link niet meer? Vraag de hulplijn om een nieuwe en noem daarbij de",
            "referentie.",
        ]
    else:
        lines = [
            "A sealed handover packet from the helpline is waiting for you.",
            "",
            f"Reference: {reference}",
            f"Download:  {link}",
            f"The link works until {when(expires_at, 'en')}, and only once.",
            "",
            "The packet is encrypted to your organisation's age key. Open it with the",
            "identity file that belongs to the key you gave us:",
            "",
            f"    age -d -i identity.key {reference}.tar.age | tar -x",
            "",
            f"The folder {reference}/ then holds a README.txt that explains the contents",
            "and how to check the helpline's signature.",
            "",
            "If the link no longer works, ask the helpline for a new one and quote the",
            "reference.",
        ]
    return "\n".join(lines) + "\n"
