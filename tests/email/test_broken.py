"""A batch of deliberately broken and automatic mails, over real SMTP: each ends up refused
(the sender keeps it) or quarantined (encrypted, byte for byte), never lost, never a crash,
and never a case or an answer."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from helpline.core.models import OutboxEntry
from helpline.intake.email.models import QuarantinedEmail
from helpline.intake.email.quarantine import raw_of
from tests.email.conftest import HELPLINE, VICTIM, Mailroom, victim_mail

CRLF = b"\r\n"


def mail(
    *headers: str, body: bytes = b"Hallo, ik heb hulp nodig.", raw_headers: bytes = b""
) -> bytes:
    lines = [f"From: Victim <{VICTIM}>", f"To: {HELPLINE}", "Message-ID: <x1@example.org>"]
    head = CRLF.join(line.encode() for line in [*lines, *headers]) + CRLF + raw_headers
    return head + CRLF + body + CRLF


def multipart(boundary_line: str, parts: bytes, *, close: bool = True) -> bytes:
    body = parts + (b"--B--" + CRLF if close else b"")
    return mail("MIME-Version: 1.0", boundary_line, body=body)


def part(headers: str, body: bytes) -> bytes:
    return b"--B" + CRLF + headers.encode() + CRLF + CRLF + body + CRLF


def nested(depth: int) -> bytes:
    inner = part("Content-Type: text/plain", b"deep")
    for level in range(depth):
        inner = (
            b"--B"
            + str(level).encode()
            + CRLF
            + f'Content-Type: multipart/mixed; boundary="B{level + 1}"'.encode()
            + CRLF
            + CRLF
            + inner.replace(b"--B" + CRLF, b"--B" + str(level + 1).encode() + CRLF)
            + CRLF
        )
    return mail('Content-Type: multipart/mixed; boundary="B0"', body=inner)


@dataclass(frozen=True)
class Broken:
    raw: bytes
    expect: str  # "refused <code>" or "quarantined <reason>"
    mail_from: str = VICTIM


BROKEN: dict[str, Broken] = {
    "unclosed multipart": Broken(
        multipart(
            'Content-Type: multipart/mixed; boundary="B"',
            part("Content-Type: text/plain", b"cut off"),
            close=False,
        ),
        "quarantined malformed",
    ),
    "multipart without boundary": Broken(
        mail("MIME-Version: 1.0", "Content-Type: multipart/mixed", body=b"--B\r\n\r\nhi\r\n--B--"),
        "quarantined malformed",
    ),
    "unknown charset": Broken(
        mail("Content-Type: text/plain; charset=x-klingon-8", body=b"Qapla'"),
        "quarantined malformed",
    ),
    "not a text codec as charset": Broken(
        mail("Content-Type: text/plain; charset=zlib", body=b"x\x9c"),
        "quarantined malformed",
    ),
    "bytes not in the declared charset": Broken(
        mail("Content-Type: text/plain; charset=utf-8", body="caf\xe9".encode("latin-1")),
        "quarantined malformed",
    ),
    "broken base64 text": Broken(
        mail(
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            body=b"SGFsbG8*!!gZGFhcg=",
        ),
        "quarantined malformed",
    ),
    "broken base64 attachment": Broken(
        multipart(
            'Content-Type: multipart/mixed; boundary="B"',
            part("Content-Type: text/plain", b"see attached")
            + part(
                "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
                'Content-Disposition: attachment; filename="x.png"',
                base64.b64encode(b"\x89PNG" * 30)[:-3] + b"@@",
            ),
        ),
        "quarantined malformed",
    ),
    "8-bit header, not UTF-8": Broken(
        mail(raw_headers="Subject: Caf\xe9 na\xefef".encode("latin-1") + CRLF),
        "quarantined malformed",
    ),
    "header line over 998 characters": Broken(mail("X-Long: " + "a" * 2000), "refused 500"),
    "huge folded header": Broken(
        mail("X-Folded: start" + "".join(f"\r\n {n:0900d}" for n in range(60))),
        "quarantined absurd_headers",
    ),
    "too many header fields": Broken(
        mail(*(f"X-Field-{n}: {n}" for n in range(800))), "quarantined absurd_headers"
    ),
    "nested too deep": Broken(nested(30), "quarantined malformed"),
    "no headers at all": Broken(
        b"just some words" + CRLF + b"and more" + CRLF, "quarantined malformed"
    ),
    "binary junk": Broken(
        bytes(range(256)).replace(b"\n", b"") * 3 + CRLF, "quarantined malformed"
    ),
    "zero-length": Broken(b"", "refused 554"),
    "only blank lines": Broken(CRLF * 5, "refused 554"),
    # automatic mail: never answered, never a case
    "bounce (null sender)": Broken(
        mail("Subject: Undelivered Mail Returned to Sender", body=b"it bounced"),
        "quarantined loop",
        mail_from="<>",
    ),
    "delivery status report": Broken(
        multipart(
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
            part("Content-Type: text/plain", b"failed")
            + part("Content-Type: message/delivery-status", b"Status: 5.1.1"),
        ),
        "quarantined loop",
    ),
    "auto-reply": Broken(
        mail("Subject: Out of office", "Auto-Submitted: auto-replied"), "quarantined loop"
    ),
    "bulk mail": Broken(mail("Subject: Newsletter", "Precedence: bulk"), "quarantined loop"),
    "our own mail": Broken(
        mail("Subject: Re: help").replace(
            f"From: Victim <{VICTIM}>".encode(), f"From: <{HELPLINE}>".encode()
        ),
        "quarantined loop",
    ),
    "our own mail, by its Message-ID": Broken(
        mail("Subject: Re: help").replace(
            b"<x1@example.org>", b"<hl-0123456789abcdef0123456789abcdef@helpline.test>"
        ),
        "quarantined loop",
    ),
}


@pytest.fixture
def mail_overrides() -> dict[str, Any]:
    # an acknowledgement would be queued for every mail that became a case: none may
    return {"email_acknowledge": True}


async def quarantined(room: Mailroom) -> list[QuarantinedEmail]:
    async with room.services.db.transaction() as session:
        return list(
            (await session.execute(select(QuarantinedEmail).order_by(QuarantinedEmail.received_at)))  # type: ignore[arg-type]
            .scalars()
            .all()
        )


async def send_raw(room: Mailroom, raw: bytes, mail_from: str) -> tuple[int, bytes]:
    """MAIL, RCPT, DATA by hand (no SIZE announced, bytes as they are)."""

    def deliver() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", room.port, timeout=30) as client:
            client.ehlo()
            code, message = client.mail(mail_from)
            assert code == 250, message
            code, message = client.rcpt(HELPLINE)
            assert code == 250, message
            return client.data(raw)

    return await asyncio.to_thread(deliver)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_broken_mail_is_refused_or_quarantined_whole(mailroom: Mailroom) -> None:
    outcomes: dict[str, str] = {}
    for name, broken in BROKEN.items():
        before = await quarantined(mailroom)
        code, _ = await send_raw(mailroom, broken.raw, broken.mail_from)
        after = await quarantined(mailroom)
        if code == 250:
            assert len(after) == len(before) + 1, name
            held = after[-1]
            async with mailroom.services.db.transaction() as session:
                raw = await raw_of(session, mailroom.services, held)
            assert raw.rstrip(CRLF) == broken.raw.rstrip(CRLF), name  # byte for byte
            outcomes[name] = f"quarantined {held.reason}"
        else:
            assert len(after) == len(before), name
            outcomes[name] = f"refused {code}"
    assert outcomes == {name: broken.expect for name, broken in BROKEN.items()}
    assert await mailroom.cases() == []
    async with mailroom.services.db.transaction() as session:
        queued = (await session.execute(select(func.count()).select_from(OutboxEntry))).scalar()
    assert queued == 0  # nothing was answered
    # and the listener still takes good mail
    await mailroom.send(victim_mail("still here"))
    assert len(await mailroom.cases()) == 1


async def test_the_batch_on_both_databases_leaves_no_case(mailroom: Mailroom) -> None:
    """The same batch, quickly, on PostgreSQL too: nothing crashes, nothing becomes a case."""
    for broken in BROKEN.values():
        await send_raw(mailroom, broken.raw, broken.mail_from)
    assert await mailroom.cases() == []
    expected = sum(b.expect.startswith("quarantined") for b in BROKEN.values())
    assert len(await quarantined(mailroom)) == expected
