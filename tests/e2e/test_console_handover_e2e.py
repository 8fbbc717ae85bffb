"""Warm handover in the staff console, in real browsers (issue 8): an admin adds partners in
the partner directory, imports their age recipients and confirms them with the fingerprint the
partner read back; an agent on a callback case proposes a handover and sees at once exactly
what the victim will see, records the consent given by phone, and a second agent confirms it
from the link the first one gave; a police handover waits for a supervisor's approval; a
proposal is cancelled; supervisors see the figures. The victim's side (consent in the chat) is
tested with the chat."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pyrage
import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect

from helpline.handover.states import ContactMethod, HandoverStatus, Part, PartnerKind
from tests.e2e.test_console_channels_e2e import callback_form
from tests.e2e.test_console_e2e import pane, row, staff_logs_in, watch
from tests.live import LiveServer

pytestmark = pytest.mark.slow

LAPTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 780}
# the text of a threatening message the victim forwarded: evidence to choose in the proposal
THREAT = b"Als je niet betaalt, gaan je foto's vrijdag naar al je volgers.\n"
SUMMARY = "Slachtoffer wordt sinds maart gechanteerd met intieme beelden; wil hulp bij aangifte."


def partner_row(page: Page, name: str) -> Locator:
    return page.locator("#partners-list .partner-row").filter(
        has=page.locator(f".partner-name span:text-is('{name}')")
    )


async def add_partner(admin: Page, name: str, kind: str, email: str) -> Locator:
    await admin.click("#partners-new")
    form = admin.locator(".partner-form")
    await form.locator(".ptf-name").fill(name)
    await form.locator(".ptf-kind").select_option(kind)
    await form.locator(".ptf-contact_email").fill(email)
    await form.locator(".ptf-description").fill("Helpt na seksueel geweld.")
    await form.locator(".ptf-save").click()
    entry = partner_row(admin, name)
    await expect(entry).to_have_attribute("data-key", "none")
    return entry


async def import_and_confirm(entry: Locator, *, typo_first: bool = False) -> str:
    """Import a fresh age recipient; read its fingerprint back (as a partner would, with
    dashes and capitals) and confirm it. Returns the recipient."""
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    expected = hashlib.sha256(recipient.encode()).hexdigest()
    await entry.locator(".partner-key-import").click()
    await entry.locator(".partner-recipient").fill("age1notakey")
    await entry.locator(".partner-recipient-save").click()
    await expect(entry.locator(".partner-key-form .form-error")).to_be_visible()
    await entry.locator(".partner-recipient").fill(recipient)
    await entry.locator(".partner-recipient-save").click()
    shown = entry.locator(".partner-key-form .partner-fingerprint")
    words = " ".join(expected[i : i + 4] for i in range(0, 64, 4))
    await expect(shown).to_have_text(words)
    await expect(entry).to_have_attribute("data-key", "unconfirmed")
    await expect(entry.locator(".partner-key-unconfirmed")).to_be_visible()
    if typo_first:
        wrong = ("0000" if not expected.startswith("0000") else "1111") + expected[4:]
        await entry.locator(".partner-fingerprint-input").fill(wrong)
        await entry.locator(".partner-fingerprint-save").click()
        await expect(entry.locator(".partner-key-form .form-error")).to_contain_text(
            "komt niet overeen"
        )
        await expect(entry).to_have_attribute("data-key", "unconfirmed")
    read_back = "-".join(expected[i : i + 4] for i in range(0, 64, 4)).upper()
    await entry.locator(".partner-fingerprint-input").fill(read_back)
    await entry.locator(".partner-fingerprint-save").click()
    await expect(entry).to_have_attribute("data-key", "confirmed")
    await expect(entry.locator(".partner-key-ok")).to_be_visible()
    return recipient


async def propose(
    case: Locator, partner: str, parts: list[str], summary: str | None, evidence: int = 0
) -> Locator:
    """Fill in the proposal form and send it; returns the new handover's row."""
    before = await case.locator(".ph-row").count()
    await case.locator(".ph-new").click()
    form = case.locator(".ph-form")
    await expect(form.locator(f".phf-partner option:has-text('{partner}')")).to_be_enabled()
    value = await form.locator(f".phf-partner option:has-text('{partner}')").get_attribute("value")
    assert value
    await form.locator(".phf-partner").select_option(value)
    for part in parts:
        await form.locator(f".phf-part-{part}").check()
    if summary is not None:
        await form.locator(".phf-summary").fill(summary)
    if evidence:
        items = form.locator(".phf-evidence-item")
        await expect(items).to_have_count(evidence)
        for i in range(evidence):
            await items.nth(i).check()
    await form.locator(".phf-create").click()
    await expect(case.locator(".ph-row")).to_have_count(before + 1)
    handover = case.locator(".ph-row").first  # newest first
    await expect(handover.locator(".ph-status")).to_have_attribute("data-status", "proposed")
    return handover


async def record_yes_by_phone(case: Locator, handover: Locator) -> str:
    """Record the victim's yes given by phone; returns the link for a colleague."""
    page = case.page
    await handover.locator(".ph-record").click()
    dialog = page.locator("dialog.form-dialog[open]")
    await expect(dialog.locator(".ph-readout")).to_contain_text(
        "Er wordt niets gedeeld als je geen ja zegt"
    )
    await dialog.locator(".ph-method-verbal").check()
    await dialog.locator(".ph-decision-accepted").check()
    await dialog.locator("button[type=submit]").click()
    await expect(dialog).to_have_count(0)
    await expect(handover.locator(".ph-next")).to_have_attribute(
        "data-next", "partner_handover.next.colleague_confirms"
    )
    await expect(handover.locator(".ph-confirm")).to_have_count(0)  # not by the recorder
    await handover.locator(".ph-copy-link").click()
    link = await handover.locator(".ph-link").input_value()
    assert re.search(r"/console/#confirm-handover=\w+$", link), link
    return link


async def confirm_by_link(colleague: Page, link: str, reference: str) -> None:
    await colleague.goto(link)
    dialog = colleague.locator("dialog.form-dialog[open]")
    await expect(dialog).to_contain_text(reference)
    await expect(dialog.locator(".ph-confirm-text")).not_to_be_empty()
    await dialog.locator("button[type=submit]").click()
    await expect(dialog).to_have_count(0)
    await expect(colleague.locator("#queue-notice")).to_contain_text("bevestigd")
    assert "#confirm-handover" not in colleague.url


async def test_partners_are_added_and_a_consent_by_phone_needs_two_staff_members(
    browser: Browser, team_server: LiveServer
) -> None:
    errors: list[str] = []
    contexts = [await browser.new_context(viewport=LAPTOP) for _ in range(3)]
    narrow = await browser.new_context(viewport=PHONE)
    contexts.append(narrow)
    try:
        admin = watch(await staff_logs_in(contexts[0], team_server, "ada"), errors)
        bram = watch(await staff_logs_in(contexts[1], team_server, "bram"), errors)
        sanne = watch(await staff_logs_in(contexts[2], team_server, "sanne"), errors)
        anouk = watch(await staff_logs_in(narrow, team_server, "anouk"), errors)

        # the admin adds partners; each key is confirmed by its fingerprint read back
        await admin.click("#view-btn-partners")
        await expect(admin.locator("#partners-new")).to_be_visible()
        fier = await add_partner(admin, "Fier (e2e)", "sexual_violence_care", "intake@fier.test")
        await import_and_confirm(fier, typo_first=True)
        police = await add_partner(admin, "Politie (e2e)", "police", "zeden@politie.test")
        await import_and_confirm(police)
        await add_partner(admin, "Huisarts (e2e)", "gp", "praktijk@huisarts.test")
        # agents read the directory, but add nothing
        await bram.click("#view-btn-partners")
        await expect(partner_row(bram, "Fier (e2e)")).to_have_attribute("data-key", "confirmed")
        await expect(bram.locator("#partners-new")).to_be_hidden()
        await expect(bram.locator(".partner-key-import")).to_have_count(0)
        await expect(bram.locator("#partners-figures")).to_be_hidden()

        # a victim asks to be called back; the agent (on a phone-sized screen) claims it
        async with httpx.AsyncClient(base_url=team_server.url) as victims:
            filed = await victims.post(
                "/api/callback/request", json={**callback_form(), "language": "nl"}
            )
            assert filed.status_code == 201, filed.text
            reference = filed.json()["reference"]
        await row(anouk, reference).locator("button.claim").click()
        case = pane(anouk, reference)
        await expect(case).to_be_visible()
        await case.locator(".pane-tab-handover").click()
        await expect(case.locator(".ph-empty")).to_be_visible()

        # the form: only partners with a confirmed key; it says why the others are not
        await case.locator(".ph-new").click()
        form = case.locator(".ph-form")
        await expect(
            form.locator(".phf-partner option:has-text('Huisarts (e2e)')")
        ).to_be_disabled()
        await expect(form.locator(".phf-not-ready")).to_contain_text("nog geen sleutel")
        await expect(form.locator(".ph-nothing-shared")).to_be_visible()
        # a summary chosen but not written is refused before anything is sent
        fier_value = await form.locator(".phf-partner option:has-text('Fier (e2e)')").get_attribute(
            "value"
        )
        assert fier_value
        await form.locator(".phf-partner").select_option(fier_value)
        await form.locator(".phf-part-summary").check()
        await form.locator(".phf-create").click()
        await expect(form.locator(".form-error")).to_contain_text("samenvatting")
        await form.locator(".phf-cancel").click()
        await expect(case.locator(".ph-form")).to_have_count(0)

        # the agent keeps a screenshot the victim mailed as evidence
        await case.locator(".evidence-toggle").click()
        await case.locator(".evidence-file").set_input_files(
            files=[{"name": "dreigbericht.txt", "mimeType": "text/plain", "buffer": THREAT}]
        )
        await expect(case.locator(".evidence-item")).to_have_count(1)
        await case.locator(".evidence-toggle").click()

        # proposed: what the victim will see is shown at once, with the rule
        to_fier = await propose(
            case, "Fier (e2e)", ["summary", "categories", "evidence"], SUMMARY, evidence=1
        )
        preview = to_fier.locator(".ph-preview")
        await expect(preview).to_be_visible()
        await expect(preview.locator(".ph-nothing-shared")).to_contain_text(
            "niets gedeeld totdat het slachtoffer"
        )
        await expect(preview.locator(".ph-consent-text")).to_contain_text(SUMMARY)
        await expect(preview.locator(".ph-consent-text")).to_contain_text("dreigbericht.txt")
        await expect(to_fier.locator(".ph-evidence-list")).to_contain_text("dreigbericht.txt")
        await expect(preview.locator(".ph-preview-title")).to_be_focused()
        fier_ref = (await to_fier.locator(".ph-ref").inner_text()).strip()
        # nothing runs off a 360px screen
        assert await anouk.evaluate("document.documentElement.scrollWidth") <= 360

        # agent A records the yes given by phone; agent B confirms it from A's link
        link = await record_yes_by_phone(case, to_fier)
        await confirm_by_link(bram, link, fier_ref)
        # the case's pane follows on its own (the handover frame)
        await expect(to_fier.locator(".ph-status")).to_have_attribute("data-status", "consented")
        await expect(to_fier.locator(".ph-cancel")).to_be_visible()

        # a police handover: after the confirmed consent, a supervisor approves it
        to_police = await propose(case, "Politie (e2e)", ["categories", "timeline"], None)
        police_ref = (await to_police.locator(".ph-ref").inner_text()).strip()
        link = await record_yes_by_phone(case, to_police)
        await confirm_by_link(bram, link, police_ref)
        await expect(to_police.locator(".ph-status")).to_have_attribute("data-status", "consented")
        await expect(to_police.locator(".ph-next")).to_have_attribute(
            "data-next", "partner_handover.next.supervisor_approves"
        )
        await expect(to_police.locator(".ph-approve")).to_have_count(0)
        await row(sanne, reference).locator("button.open").click()
        looking = pane(sanne, reference)
        await looking.locator(".pane-tab-handover").click()
        at_police = looking.locator(f".ph-row:has(.ph-ref:text-is('{police_ref}'))")
        await at_police.locator(".ph-approve").click()
        await expect(at_police.locator(".ph-status")).to_have_attribute("data-status", "approved")
        await expect(to_police.locator(".ph-status")).to_have_attribute("data-status", "approved")

        # a proposal is cancelled, with a reason
        to_cancel = await propose(case, "Fier (e2e)", ["categories"], None)
        await to_cancel.locator(".ph-cancel").click()
        dialog = anouk.locator("dialog.form-dialog[open]")
        await dialog.locator(".ph-cancel-reason").fill("verkeerde partner")
        await dialog.locator("button[type=submit]").click()
        await expect(to_cancel.locator(".ph-status")).to_have_attribute("data-status", "withdrawn")
        await expect(to_cancel.locator(".ph-cancel")).to_have_count(0)
        await to_cancel.locator(".ph-history-toggle").click()
        await expect(to_cancel.locator(".ph-history li")).to_have_count(2)

        # supervisors see the figures per partner and per kind
        await sanne.click("#view-btn-partners")
        figures = sanne.locator("#partners-figures")
        await expect(figures).to_be_visible()
        fier_figures = figures.locator("tr", has=sanne.locator("th:has-text('Fier (e2e)')"))
        await expect(fier_figures.locator("td[data-status='proposed']")).to_have_text("2")
        await expect(fier_figures.locator("td[data-status='withdrawn']")).to_have_text("1")
        assert errors == []
    finally:
        for context in contexts:
            await context.close()


# ---------------------------------------------------------------- the words of these screens

CONSOLE = Path(__file__).resolve().parents[2] / "frontend" / "console"


def test_every_handover_code_and_string_has_words_in_both_languages() -> None:
    """Every status, kind, part and contact method the server can send has a label, and every
    literal key the handover tab and the partner directory use exists in Dutch and English."""
    strings = {
        lang: json.loads((CONSOLE / "i18n" / f"{lang}.json").read_text()) for lang in ("nl", "en")
    }
    codes = (
        [f"partner_handover.status.{s}" for s in HandoverStatus]
        + [f"timeline.event.handover_{s}" for s in HandoverStatus]
        + [f"partner.kind.{k}" for k in PartnerKind]
        + [f"partner_handover.part.{p}" for p in Part]
        + [f"partner_handover.part_help.{p}" for p in Part]
        + [f"partner_handover.contact.{m}" for m in ContactMethod]
    )
    used: set[str] = set()
    for name in ("partner-handover.js", "partners.js"):
        source = (CONSOLE / name).read_text()
        used |= set(re.findall(r"'((?:partner_handover|partners|partner)\.[a-z0-9_.-]+)'", source))
    for lang, table in strings.items():
        assert [c for c in codes if c not in table] == [], lang
        prefixes = {key for key in used if any(k.startswith(f"{key}.") for k in table)}
        assert sorted(used - prefixes - table.keys()) == [], lang
