"""A warm handover in real browsers (issue 8): staff propose it in the console, the victim sees
exactly what would be shared in the chat and says yes, the outbox seals the packet and mails the
partner a one-time link (over real SMTP), the partner downloads it in a browser and opens it with
the real `age` tool and their own identity. And: a victim takes a yes back before delivery (a
police handover that waits for a supervisor), after a changed text was refused once."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, Request, Route, expect

from helpline.core.clock import SystemClock
from helpline.core.db import Database
from helpline.staff.accounts import create_staff
from helpline.staff.models import Role
from helpline.takedown.builder import verify_detached
from tests.e2e.test_console_e2e import PASSWORD, pane, row, staff_logs_in, victim_starts_chat, watch
from tests.email.conftest import Received, Sink, start_sink
from tests.live import LiveServer, free_port, live_server

pytestmark = pytest.mark.slow

AGE = shutil.which("age") or "/usr/bin/age"
AGE_KEYGEN = shutil.which("age-keygen") or "/usr/bin/age-keygen"
HELPLINE = "help@helpline.test"
FIER_MAIL = "intake@fier.test"
POLICE_MAIL = "zeden@politie.test"
NEUTRAL_SITE = "https://neutral.example/"
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1366, "height": 860}
FIRST_WORDS = "Iemand dreigt mijn foto's te delen als ik niet betaal."
SUMMARY = "Samenvatting-7QX: een jongere wordt gechanteerd met naaktfoto's via Snapchat."
CONTACT = "06 1234 5678"
HALF_TYPED = "ik wil nog iets vrage"
PLAIN_FIELDS = ("helpline.token", "helpline.reference", "helpline.lang")


# ---------------------------------------------------------------- the world around the helpline


@dataclass
class Partner:
    name: str
    kind: str
    email: str
    identity: Path
    recipient: str


def age_identity(folder: Path, slug: str) -> tuple[Path, str]:
    """A partner's own age identity, made by the real `age-keygen`."""
    path = folder / f"{slug}.key"
    subprocess.run([AGE_KEYGEN, "-o", str(path)], check=True, capture_output=True)
    found = re.search(r"public key: (age1[0-9a-z]+)", path.read_text())
    assert found is not None
    return path, found.group(1)


def png() -> bytes:
    image = Image.new("RGB", (220, 120), "white")
    ImageDraw.Draw(image).text((10, 50), "dreigbericht", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def add_staff(database_url: str) -> None:
    db = Database(database_url)
    async with db.transaction() as session:
        for username, name, role in (
            ("anouk", "Anouk", Role.agent),
            ("sanne", "Sanne", Role.supervisor),
            ("ada", "Ada", Role.admin),
        ):
            await create_staff(
                session,
                SystemClock(),
                username=username,
                password=PASSWORD,
                role=role,
                display_name=name,
            )
    await db.dispose()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    relay = await start_sink()
    yield relay
    relay.server.close()
    await relay.server.wait_closed()


@pytest.fixture
async def server(settings_for: Any, sqlite_url: str, sink: Sink) -> AsyncIterator[LiveServer]:
    if not Path(AGE).exists() or not Path(AGE_KEYGEN).exists():
        pytest.skip("the age tools are not installed: apt-get install age")
    port = free_port()
    settings = settings_for(
        sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        quick_exit_url=NEUTRAL_SITE,
        mail_from=HELPLINE,
        mail_from_name="Test Helpline",
        smtp_out_host="127.0.0.1",
        smtp_out_port=sink.port,
        smtp_out_security="none",
        smtp_out_timeout_seconds=10,
        run_workers=True,  # the outbox worker seals the packet and mails the partner
        worker_poll_seconds=0.2,
    )
    await add_staff(sqlite_url)
    async with live_server(settings, port=port) as running:
        yield running


async def mails(sink: Sink, count: int) -> list[Received]:
    """Wait until the relay has been given `count` mails."""
    for _ in range(600):
        if len(sink.received) >= count:
            return sink.received
        await asyncio.sleep(0.05)
    raise AssertionError(f"the relay got {len(sink.received)} mails, not {count}")


async def staff_call(
    page: Page, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A staff API call from the browser's own session (cookie + CSRF token)."""
    base = page.url.split("/console")[0]
    if method == "GET":
        answer = await page.request.get(base + path)
    else:
        me = await (await page.request.get(f"{base}/api/staff/me")).json()
        answer = await page.request.fetch(
            base + path, method=method, data=body or {}, headers={"X-CSRF-Token": me["csrf_token"]}
        )
    assert answer.ok, f"{method} {path}: {answer.status} {await answer.text()}"
    result: dict[str, Any] = await answer.json()
    return result


async def add_partner(
    admin: Page, folder: Path, *, name: str, kind: str, email: str, description: str
) -> tuple[Partner, str]:
    """An admin adds a partner, imports its age recipient and confirms the fingerprint they
    compared with the partner by phone (computed here independently of the server)."""
    identity, recipient = age_identity(folder, name.lower())
    created = await staff_call(
        admin,
        "POST",
        "/api/staff/partners",
        {"name": name, "kind": kind, "contact_email": email, "description": description},
    )
    imported = await staff_call(
        admin, "POST", f"/api/staff/partners/{created['id']}/key", {"recipient": recipient}
    )
    fingerprint = hashlib.sha256(recipient.encode()).hexdigest()
    assert imported["key"]["fingerprint"] == fingerprint
    assert imported["key"]["confirmed"] is False
    confirmed = await staff_call(
        admin,
        "POST",
        f"/api/staff/partners/{created['id']}/key/confirm",
        {"fingerprint": fingerprint},
    )
    assert confirmed["key"]["confirmed"] is True
    return Partner(name, kind, email, identity, recipient), str(created["id"])


async def claim(agent: Page, reference: str) -> tuple[Page, str]:
    """The agent claims the victim's chat; returns the case id."""
    queue_row = row(agent, reference)
    await expect(queue_row).to_be_visible()
    case_id = await queue_row.get_attribute("data-case-id")
    assert case_id
    await queue_row.locator("button.claim").click()
    await expect(pane(agent, reference)).to_be_visible()
    return agent, case_id


async def propose_in_console(
    agent: Page,
    reference: str,
    partner_id: str,
    parts: list[str],
    *,
    summary: str | None = None,
    contact: str | None = None,
    evidence: int = 0,
) -> str:
    """The agent proposes a handover on the case's Handover tab; returns the handover id."""
    case_pane = pane(agent, reference)
    await case_pane.locator(".pane-tab-handover").click()
    await case_pane.locator(".ph-new").click()
    form = case_pane.locator("form.ph-form")
    await expect(form).to_have_attribute("aria-busy", "false")
    await form.locator(".phf-partner").select_option(partner_id)
    for part in parts:
        await form.locator(f".phf-part-{part}").check()
    if summary is not None:
        await form.locator(".phf-summary").fill(summary)
    if contact is not None:
        await form.locator(".phf-contact").select_option(contact)
    if evidence:
        items = form.locator("input.phf-evidence-item:not([disabled])")
        await expect(items).to_have_count(evidence)
        for index in range(evidence):
            await items.nth(index).check()
    await form.locator(".phf-language").select_option("nl")
    await form.locator(".phf-create").click()
    proposed = case_pane.locator(".ph-row[data-status='proposed']")
    await expect(proposed).to_have_count(1)
    handover_id = await proposed.get_attribute("data-handover-id")
    assert handover_id
    return handover_id


def unseal(packet: Path, identity: Path) -> dict[str, bytes]:
    """`age -d -i <identity> packet.tar.age | tar -x`, in memory."""
    opened = subprocess.run(
        [AGE, "-d", "-i", str(identity), str(packet)], capture_output=True, check=False
    )
    assert opened.returncode == 0, opened.stderr.decode()
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(opened.stdout)) as archive:
        for member in archive.getmembers():
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    return files


async def storage_of(page: Page) -> tuple[dict[str, str], dict[str, str]]:
    found = await page.evaluate(
        "() => [JSON.stringify(sessionStorage), JSON.stringify(localStorage)]"
    )
    return json.loads(found[0]), json.loads(found[1])


async def assert_nothing_kept_about_handovers(page: Page) -> None:
    session, local = await storage_of(page)
    assert local == {}
    assert set(session) <= set(PLAIN_FIELDS), session  # the chat's own fields, nothing more


# ---------------------------------------------------------------- propose -> consent -> download


async def test_propose_consent_deliver_download(
    browser: Browser, server: LiveServer, sink: Sink, tmp_path: Path
) -> None:
    errors: list[str] = []
    admin_context = await browser.new_context(viewport=LAPTOP)
    agent_context = await browser.new_context(viewport=LAPTOP)
    victim_context = await browser.new_context(viewport=PHONE)
    partner_context = await browser.new_context(viewport=LAPTOP, accept_downloads=True)
    try:
        admin = watch(await staff_logs_in(admin_context, server, "ada"), errors)
        fier, fier_id = await add_partner(
            admin,
            tmp_path,
            name="Fier",
            kind="sexual_violence_care",
            email=FIER_MAIL,
            description="Fier helpt jongeren na geweld, ook online.",
        )

        # a victim chats (on a phone) and sends a screenshot as evidence
        victim, reference = await victim_starts_chat(victim_context, server, FIRST_WORDS)
        watch(victim, errors)
        shot = png()
        await victim.click("#attach-button")
        await victim.set_input_files(
            "#evidence-file",
            files=[{"name": "screenshot.png", "mimeType": "image/png", "buffer": shot}],
        )
        await expect(victim.locator("#evidence-list .evidence-item")).to_have_count(1)
        await victim.click("#evidence-close")

        # ... and is halfway through a new message when the question arrives
        await victim.locator("#message-input").fill(HALF_TYPED)
        await victim.locator("#message-input").focus()

        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        await claim(agent, reference)
        handover_id = await propose_in_console(
            agent,
            reference,
            fier_id,
            ["summary", "categories", "timeline", "contact", "evidence"],
            summary=SUMMARY,
            contact="phone",
            evidence=1,
        )

        # the card: exactly what Fier will and will not receive, in plain words
        card = victim.locator(f".handover-card[data-handover-id='{handover_id}']")
        await expect(card).to_be_visible()
        await expect(card).to_have_attribute("data-status", "proposed")
        await expect(card.locator(".handover-title")).to_have_text("Je gegevens delen met Fier?")
        await expect(card.locator(".handover-badge")).to_have_text("Wacht op je antwoord")
        await expect(card.locator(".handover-list-title").first).to_have_text("Fier krijgt:")
        await expect(card.locator(".handover-receive")).to_contain_text(SUMMARY)
        await expect(card.locator(".handover-receive")).to_contain_text("screenshot.png")
        await expect(card.locator(".handover-list-title").nth(1)).to_have_text("Fier krijgt niet:")
        await expect(card.locator(".handover-not-receive li")).not_to_have_count(0)
        await expect(card.locator(".handover-about")).to_have_text(
            "Fier helpt jongeren na geweld, ook online."
        )
        # typing is never interrupted: the focus stays, the question is announced instead
        await expect(victim.locator("#message-input")).to_be_focused()
        await expect(victim.locator("#message-input")).to_have_value(HALF_TYPED)
        await expect(victim.locator("#handover-live")).to_contain_text("Fier")

        # the victim adds a phone number for Fier only, and says yes
        contact = card.locator(".handover-contact-input")
        await expect(card.locator(".handover-contact label")).to_have_text(
            "Je telefoonnummer (hoeft niet)"
        )
        await contact.fill(CONTACT)
        await card.locator(".handover-yes").click()
        await expect(card.locator(".handover-state")).to_be_focused()
        await expect(card.locator(".handover-yes")).to_be_hidden()
        await expect(card.locator(".handover-contact")).to_be_hidden()
        await assert_nothing_kept_about_handovers(victim)

        # the worker seals the packet and mails Fier a link, with no case data in the mail
        [sent] = await mails(sink, 1)
        assert sent.rcpt_tos == [FIER_MAIL]
        mail = sent.message
        body = mail.get_content()
        for secret in (SUMMARY, CONTACT, reference, "screenshot.png", FIRST_WORDS):
            assert secret not in body and secret not in str(mail["Subject"])
        found = re.search(rf"{re.escape(server.url)}/handover/[A-Za-z0-9_\-]+", body)
        assert found is not None, body
        link = found.group(0)
        packet_ref = re.search(r"H-[A-Z0-9]{4}-[A-Z0-9]{4}", body)
        assert packet_ref is not None
        assert "age -d -i" in body

        # the victim's card follows: sent, and no longer withdrawable
        await expect(card).to_have_attribute("data-status", "delivered")
        await expect(card.locator(".handover-badge")).to_have_text("Verstuurd naar Fier")
        await expect(card.locator(".handover-withdraw")).to_be_hidden()

        # Fier opens the link: a page with a button (mail scanners do not use the link up)
        partner = watch(await partner_context.new_page(), errors)
        await partner.goto(link)
        assert SUMMARY not in await partner.content()
        download_button = partner.get_by_role("button", name=re.compile("download", re.I))
        async with partner.expect_download() as download_info:
            await download_button.click()
        download = await download_info.value
        assert download.suggested_filename == f"{packet_ref.group(0)}.tar.age"
        packet = tmp_path / download.suggested_filename
        await download.save_as(packet)
        assert SUMMARY.encode() not in packet.read_bytes()  # sealed

        # ... and opens it with the real age tool and its own identity
        files = unseal(packet, fier.identity)
        folder = packet_ref.group(0)
        summary_txt = files[f"{folder}/summary.txt"].decode()
        assert SUMMARY in summary_txt
        assert CONTACT in summary_txt or CONTACT in files[f"{folder}/handover.json"].decode()
        evidence = [name for name in files if name.startswith(f"{folder}/evidence/")]
        assert any(files[name] == shot for name in evidence), evidence
        for name, content in files.items():
            assert FIRST_WORDS.encode() not in content, name  # never the chat conversation
        manifest = files[f"{folder}/manifest.json"]
        signature = json.loads(files[f"{folder}/manifest.sig.json"])
        published = await partner.request.get(f"{server.url}/.well-known/helpline-keys.json")
        keys = await published.json()
        assert verify_detached(keys["keys"], signature["kid"], manifest, signature["signature"])

        # the link worked once
        again = await partner.request.post(link)
        assert again.status == 410

        # the victim sees Fier has it; staff see "downloaded"
        await expect(card).to_have_attribute("data-status", "downloaded")
        await expect(card.locator(".handover-badge")).to_have_text("Fier heeft het ontvangen")
        shown = await staff_call(agent, "GET", f"/api/staff/handovers/{handover_id}")
        assert shown["status"] == "downloaded"
        assert [step["to"] for step in shown["history"]][-4:] == [
            "consented",
            "sealed",
            "delivered",
            "downloaded",
        ]
        await assert_nothing_kept_about_handovers(victim)
        assert errors == []
    finally:
        for context in (admin_context, agent_context, victim_context, partner_context):
            await context.close()


# ---------------------------------------------------------------- withdrawn before delivery


async def test_victim_withdraws_before_delivery(
    browser: Browser, server: LiveServer, sink: Sink, tmp_path: Path
) -> None:
    errors: list[str] = []
    admin_context = await browser.new_context(viewport=LAPTOP)
    agent_context = await browser.new_context(viewport=LAPTOP)
    victim_context = await browser.new_context(viewport=PHONE)

    async def neutral_site(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<h1>Het weer</h1>")

    await victim_context.route(NEUTRAL_SITE, neutral_site)
    try:
        admin = watch(await staff_logs_in(admin_context, server, "ada"), errors)
        _, police_id = await add_partner(
            admin,
            tmp_path,
            name="Politie",
            kind="police",
            email=POLICE_MAIL,
            description="De zedenpolitie: een gesprek voordat je aangifte doet.",
        )
        victim, reference = await victim_starts_chat(victim_context, server, FIRST_WORDS)
        watch(victim, errors)
        await victim.locator("#messages").focus()  # reading, not typing

        agent = watch(await staff_logs_in(agent_context, server, "anouk"), errors)
        await claim(agent, reference)
        handover_id = await propose_in_console(
            agent, reference, police_id, ["summary", "categories"], summary=SUMMARY
        )

        # not typing: the card takes the focus when it appears
        card = victim.locator(f".handover-card[data-handover-id='{handover_id}']")
        await expect(card.locator(".handover-title")).to_be_focused()
        await expect(card.locator(".handover-title")).to_have_text("Je gegevens delen met Politie?")
        await expect(card.locator(".handover-contact")).to_be_hidden()  # not a part

        # the first answer carries a stale text hash: refused, and the victim is told
        stale: list[str] = []

        async def stale_hash(route: Route, request: Request) -> None:
            answer = json.loads(request.post_data or "{}")
            stale.append(answer["text_sha256"])
            answer["text_sha256"] = "0" * 64
            await route.continue_(post_data=json.dumps(answer))

        consent_url = re.compile(rf".*/api/chat/handovers/{handover_id}/consent$")
        await victim.route(consent_url, stale_hash, times=1)
        await card.locator(".handover-yes").click()
        await expect(card.locator(".handover-changed")).to_be_visible()
        await expect(card.locator(".handover-changed")).to_be_focused()
        await expect(card).to_have_attribute("data-status", "proposed")
        assert len(stale) == 1

        # read again; yes. A police handover waits for a supervisor: nothing is sent yet
        await card.locator(".handover-yes").click()
        await expect(card).to_have_attribute("data-status", "consented")
        await expect(card.locator(".handover-badge")).to_have_text("Je hebt ja gezegd")
        await expect(card.locator(".handover-changed")).to_be_hidden()
        withdraw = card.locator(".handover-withdraw-button")
        await expect(withdraw).to_be_visible()
        shown = await staff_call(agent, "GET", f"/api/staff/handovers/{handover_id}")
        assert shown["status"] == "consented" and shown["approval_required"] is True

        # taking it back asks first; "no" keeps the yes
        await withdraw.click()
        await expect(card.locator(".handover-confirm-text")).to_be_focused()
        await expect(card.locator(".handover-confirm-text")).to_have_text(
            "Je toestemming intrekken? Dan krijgt Politie niets."
        )
        await card.locator(".handover-withdraw-no").click()
        await expect(withdraw).to_be_focused()
        await expect(card).to_have_attribute("data-status", "consented")

        await withdraw.click()
        await card.locator(".handover-withdraw-yes").click()
        await expect(card).to_have_attribute("data-status", "withdrawn")
        await expect(card.locator(".handover-state")).to_be_focused()
        await expect(card.locator(".handover-badge")).to_have_text(
            "Ingetrokken: je hebt je ja teruggenomen"
        )
        await expect(card.locator(".handover-next")).to_have_text(
            "Er is niets gedeeld met Politie."
        )
        await expect(card.locator(".handover-withdraw")).to_be_hidden()

        # staff see it withdrawn; a supervisor can no longer approve it; nothing was mailed
        shown = await staff_call(agent, "GET", f"/api/staff/handovers/{handover_id}")
        assert shown["status"] == "withdrawn"
        assert shown["consent"]["withdrawn_at"]
        assert shown["packet"] is None
        supervisor_context = await browser.new_context(viewport=LAPTOP)
        try:
            supervisor = watch(await staff_logs_in(supervisor_context, server, "sanne"), errors)
            base = supervisor.url.split("/console")[0]
            me = await (await supervisor.request.get(f"{base}/api/staff/me")).json()
            refused = await supervisor.request.post(
                f"{base}/api/staff/handovers/{handover_id}/approve",
                data={},
                headers={"X-CSRF-Token": me["csrf_token"]},
            )
            assert refused.status == 409, await refused.text()
        finally:
            await supervisor_context.close()
        assert sink.received == []

        # after a reload the card is rebuilt from the server: nothing was kept in the browser
        await assert_nothing_kept_about_handovers(victim)
        await victim.reload()
        await expect(card).to_have_attribute("data-status", "withdrawn")
        await expect(card.locator(".handover-title")).not_to_be_focused()  # nothing to answer

        # quick exit still works with the card on screen
        await card.locator(".handover-full summary").focus()
        await victim.keyboard.press("Escape")
        await victim.keyboard.press("Escape")
        await victim.wait_for_url(NEUTRAL_SITE)
        assert errors == []
    finally:
        for context in (admin_context, agent_context, victim_context):
            await context.close()


# ---------------------------------------------------------------- the words


COMMON = Path(__file__).resolve().parents[2] / "frontend" / "common" / "i18n"


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


def test_every_handover_string_exists_in_dutch_and_english() -> None:
    """The chat's handover card has the same keys in both languages, none empty, and every
    key the script names (`'handover.…'`) exists."""
    strings = {
        lang: _flat(json.loads((COMMON / f"{lang}.json").read_text())) for lang in ("nl", "en")
    }
    dutch = {k for k in strings["nl"] if k.startswith("handover.")}
    english = {k for k in strings["en"] if k.startswith("handover.")}
    assert dutch == english
    assert dutch
    for lang, table in strings.items():
        assert [k for k in dutch if not str(table[k]).strip()] == [], lang
    script = (COMMON.parents[1] / "chat" / "handover.js").read_text()
    named = set(re.findall(r"'(handover\.[a-z_.]+)'", script))
    block = re.search(r"const STATUS_KEYS = \{(.*?)\};", script, re.S)
    assert block is not None
    shown = {*re.findall(r": '(\w+)'", block.group(1)), "recorded"}
    named |= {f"handover.status.{s}" for s in shown}
    named |= {f"handover.next.{s}" for s in shown - {"waiting"}}  # an open question has none
    named |= {f"handover.contact_label.{m}" for m in ("phone", "email", "letter", "chat", "other")}
    assert named - dutch == set()
