"""A redacted evidence item attached to a notice (issue 7 item 4): staff may mark image items
`attach_redacted`; at queue time a blurred, re-encoded, metadata-free copy is stored under the
notice key, its SHA-256 signed in the document, and served to that notice's portal link and
that platform's API key only. Never for a possible minor; never for a non-image."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from playwright.async_api import Browser, expect
from sqlalchemy import select
from sqlmodel import col

from helpline.cases.models import Case
from helpline.cases.service import delete_case
from helpline.core.clock import FrozenClock
from helpline.core.config import Settings
from helpline.core.crypto import DecryptionError, case_scope
from helpline.core.errors import Invalid
from helpline.evidence.models import EvidenceItem
from helpline.evidence.service import Captor, capture_file, mark_possible_minor
from helpline.staff.models import Role
from helpline.takedown import delivery
from helpline.takedown.builder import (
    ITEMS_TABLE,
    ItemChoice,
    NoticeRequest,
    UrlChoice,
    create_notice,
    document_of,
    render_text,
    stored_signed,
    texts,
    verify_detached,
)
from helpline.takedown.models import Notice, NoticeItem, Platform, notice_scope
from tests.e2e.conftest import browser  # noqa: F401  (the fixture)
from tests.takedown_platform.conftest import Desk, Sent, bearer, served
from tests.takedown_platform.test_portal_browser import open_page

CAMERA = "Fenna's Phone 12"


def photo_with_exif() -> bytes:
    image = Image.new("RGB", (320, 240))
    for x in range(320):
        for y in range(0, 240, 8):
            image.putpixel((x, y), (x % 256, (x * 3) % 256, 40))
    exif = Image.Exif()
    exif[0x0110] = CAMERA  # Model
    exif[0x010E] = "Zwolle, thuis"  # ImageDescription
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    data = out.getvalue()
    assert CAMERA.encode() in data
    return data


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def add_file(desk: Desk, case: Case, data: bytes) -> EvidenceItem:
    async with desk.services.db.transaction() as session:
        return await capture_file(
            session,
            desk.services,
            case_id=case.id,
            chunks=_chunks(data),
            filename=lambda: "foto.jpg",
            captor=Captor(actor=f"staff:{desk.staff_id}", channel="console"),
        )


async def sent_with_copy(desk: Desk, platform: Platform, case: Case, item: EvidenceItem) -> Sent:
    async with desk.services.db.transaction() as session:
        notice = await create_notice(
            session,
            desk.services,
            case,
            staff_id=desk.staff_id,
            request=NoticeRequest(
                platform_id=platform.id,
                urls=[UrlChoice(url=f"https://{platform.slug}.example.org/p/1")],
                items=[ItemChoice(item.id, attach_redacted=True)],
            ),
        )
        actor = f"staff:{desk.staff_id}"
        await delivery.queue_notice(session, desk.services, notice, platform, actor=actor)
        await delivery.mark_sent(
            session, desk.services, notice, platform, actor=actor, details={"via": "test"}
        )
        cipher = await desk.services.keyring.cipher(session, notice_scope(notice.id))
        token = await delivery.current_portal_token(session, desk.services, notice, cipher)
        assert token is not None
    return Sent(notice, [], case, token, "")


async def notice_item(desk: Desk, notice_id: str) -> NoticeItem:
    async with desk.services.db.transaction() as session:
        return (
            await session.execute(select(NoticeItem).where(col(NoticeItem.notice_id) == notice_id))
        ).scalar_one()


async def test_attach_queue_sign_and_serve(desk: Desk) -> None:
    platform, key = await desk.platform("fotoforum")
    other, other_key = await desk.platform("clipsite")
    assert key and other_key
    case = await desk.case()
    original = photo_with_exif()
    item = await add_file(desk, case, original)
    sent = await sent_with_copy(desk, platform, case, item)
    row = await notice_item(desk, sent.notice.id)
    assert row.attach_redacted and row.redacted is not None and row.redacted_sha256
    assert CAMERA.encode() not in row.redacted  # stored encrypted

    # decrypts with the notice key only (not with the case key)
    async with desk.services.db.transaction() as session:
        notice_cipher = await desk.services.keyring.cipher(session, notice_scope(sent.notice.id))
        copy = notice_cipher.decrypt(
            row.redacted, table=ITEMS_TABLE, row_id=row.id, field="redacted"
        )
        case_cipher = await desk.services.keyring.cipher(session, case_scope(case.id))
        with pytest.raises(DecryptionError):
            case_cipher.decrypt(row.redacted, table=ITEMS_TABLE, row_id=row.id, field="redacted")
        notice = await session.get(Notice, sent.notice.id)
        assert notice is not None
        signed = await stored_signed(session, desk.services, notice)
    assert signed is not None
    assert hashlib.sha256(copy).hexdigest() == row.redacted_sha256
    assert copy != original and CAMERA.encode() not in copy
    image = Image.open(io.BytesIO(copy))
    assert image.format == "JPEG" and not image.getexif() and "exif" not in image.info

    # its SHA-256 is in the signed document, and the signature verifies
    document = document_of(signed)
    (entry,) = document["hashes"]
    assert entry["redacted_sha256"] == row.redacted_sha256 and entry["sha256"] == item.sha256
    email_text = render_text(document, portal_link="https://x.example/portal/n/t", due_at=None)
    assert texts(document["language"])["labels"]["redacted_note"] in email_text
    assert entry["redacted_sha256"] in signed.html_bytes.decode()
    keys = (await desk.http.get("/.well-known/helpline-keys.json")).json()["keys"]
    assert verify_detached(keys, signed.kid, signed.json_bytes, signed.json_signature)

    # the portal link of this notice and the API key of this platform get it
    portal_path = f"/api/portal/items/{row.id}/redacted"
    got = await desk.http.get(portal_path, headers=bearer(sent.token))
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "image/jpeg"
    assert got.headers["cache-control"] == "no-store"
    assert got.content == copy
    shown = (await desk.http.get("/api/portal/notice", headers=bearer(sent.token))).json()
    assert shown["hashes"][0]["item_id"] == row.id
    assert shown["hashes"][0]["redacted_sha256"] == row.redacted_sha256
    api_path = f"/api/platform/notices/{sent.notice.reference}/items/{row.id}/redacted"
    got = await desk.http.get(api_path, headers=bearer(key))
    assert got.status_code == 200 and got.content == copy
    assert got.headers["cache-control"] == "no-store"

    # another notice's portal link: 404; no link: 401; another platform's key: 404
    elsewhere = await desk.sent_notice(other)
    assert (await desk.http.get(portal_path, headers=bearer(elsewhere.token))).status_code == 404
    assert (await desk.http.get(portal_path)).status_code == 401
    assert (await desk.http.get(api_path, headers=bearer(other_key))).status_code == 404
    theirs = f"/api/platform/notices/{elsewhere.notice.reference}/items/{row.id}/redacted"
    assert (await desk.http.get(theirs, headers=bearer(other_key))).status_code == 404

    # the case is deleted (crypto-shredded): the notice's copy stays readable
    async with desk.services.db.transaction() as session:
        gone = await session.get(Case, case.id)
        assert gone is not None
        await delete_case(session, desk.services.keyring, desk.clock, gone)
    got = await desk.http.get(portal_path, headers=bearer(sent.token))
    assert got.status_code == 200 and got.content == copy
    assert (
        hashlib.sha256(got.content).hexdigest()
        == json.loads(signed.json_bytes)["hashes"][0]["redacted_sha256"]
    )


async def test_refused_for_non_images_and_possible_minors(desk: Desk) -> None:
    platform, _ = await desk.platform("fotoforum")
    staff = await desk.staff_client("reviewer2", role=Role.supervisor)
    case = await desk.case()
    text_item = await add_file(desk, case, b"%PDF-1.4 not an image\n" * 20)
    image = await add_file(desk, case, photo_with_exif())

    def body(item_id: str) -> dict[str, object]:
        return {
            "platform_id": platform.id,
            "urls": [{"url": "https://fotoforum.example.org/p/9"}],
            "items": [{"evidence_item_id": item_id, "attach_redacted": True}],
        }

    path = f"/api/staff/cases/{case.id}/notices"
    refused = await staff.post(path, json=body(text_item.id))
    assert refused.status_code == 422, refused.text
    assert "only images" in refused.text
    # an item of another case
    foreign = await add_file(desk, await desk.case(), photo_with_exif())
    refused = await staff.post(path, json=body(foreign.id))
    assert refused.status_code == 422 and "items.0.evidence_item_id" in refused.text
    # an image: fine (the draft is made)
    made = await staff.post(path, json=body(image.id))
    assert made.status_code in (200, 201), made.text

    # the case is marked a possible minor: refused at creation, and at queue time too
    async with desk.services.db.transaction() as session:
        await mark_possible_minor(session, desk.services, case_id=case.id, actor="staff:x")
    refused = await staff.post(path, json=body(image.id))
    assert refused.status_code == 422 and "possible minor" in refused.text
    async with desk.services.db.transaction() as session:
        notice = await session.get(Notice, made.json()["id"])
        assert notice is not None
        with pytest.raises(Invalid, match="possible minor"):
            await delivery.queue_notice(session, desk.services, notice, platform, actor="staff:x")


async def test_the_portal_page_allows_blob_images_only_there(desk: Desk) -> None:
    page = await desk.http.get("/portal/n/sometoken")
    assert page.status_code == 200
    assert "img-src 'self' blob:" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    other = await desk.http.get("/api/platform/schema/answer.json")
    assert "blob:" not in other.headers["content-security-policy"]


@pytest.mark.slow
async def test_the_portal_page_shows_the_blurred_copy(
    browser: Browser,  # noqa: F811
    settings: Settings,
    clock: FrozenClock,
    desk: Desk,
) -> None:
    platform, _ = await desk.platform("fotoforum")
    case = await desk.case()
    sent = await sent_with_copy(desk, platform, case, await add_file(desk, case, photo_with_exif()))
    row = await notice_item(desk, sent.notice.id)
    async with served(settings, clock) as base:
        page, problems = await open_page(browser, base, f"/portal/n/{sent.token}")
        # loaded from a blob: URL (the page may re-render once receipt is confirmed)
        await page.wait_for_function(
            "() => { const i = document.querySelector('img.redacted-copy');"
            " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0; }"
        )
        await expect(page.locator("tr.redacted")).to_contain_text(row.redacted_sha256 or "-")
        assert problems == []  # no CSP violation, no refused request
        await page.context.close()
