"""Reading mail defensively, HTML to safe text, and reply tokens: pure functions."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest

from helpline.intake.email.models import QuarantineReason
from helpline.intake.email.parse import Unreadable, read_mail, strip_trace_headers
from helpline.intake.email.text import (
    guess_language,
    html_to_text,
    split_text,
    trim_quoted_reply,
)
from helpline.intake.email.tokens import candidate_tokens, token_hash, tokens_quoted_in

TOKEN = "0123456789abcdef0123456789abcdef"


def test_html_is_reduced_to_text_without_loading_or_following_anything() -> None:
    html = (
        "<html><head><title>t</title><style>body{background:url(https://x/y.png)}</style>"
        '<script src="https://evil.example/a.js"></script></head><body>'
        "<h1>Help</h1><p>They posted my <b>photos</b>&nbsp;&amp; my address.</p>"
        '<p><a href="https://forum.example/thread/1">this thread</a>, '
        '<a href="javascript:alert(1)">click</a>, '
        '<a href="https://same.example/">https://same.example/</a></p>'
        '<img src="https://tracker.example/open.gif" width="1" height="1">'
        '<img src="cid:screenshot" alt="screenshot of the post">'
        "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>"
        "<iframe src='https://x.example'>fallback</iframe><pre>  keep   spacing</pre>"
        "</body></html>"
    )
    text = html_to_text(html)
    assert text.startswith("Help\n\nThey posted my photos & my address.")
    assert "this thread <https://forum.example/thread/1>" in text
    assert "click" in text and "javascript" not in text
    assert "https://same.example/ <" not in text  # a link that shows its address: once
    assert "[image]" in text and "[image: screenshot of the post]" in text
    assert "tracker.example" not in text and "evil.example" not in text
    assert "- one\n- two" in text and "a b" in text
    assert "fallback" not in text and "background" not in text
    assert "keep spacing" in text


def test_quoted_replies_long_texts_and_languages() -> None:
    reply = "Thanks, that helps.\n\nOn Mon, 1 Jan 2026, Helpline <h@x> wrote:\n> Hello\n>\n> Bye\n"
    assert trim_quoted_reply(reply) == "Thanks, that helps."
    assert trim_quoted_reply("> only a quote\n> nothing else") == "> only a quote\n> nothing else"
    assert trim_quoted_reply("no quote here") == "no quote here"
    paragraphs = [f"{n} " + "word " * 100 for n in range(30)]
    pieces = split_text("\n\n".join(paragraphs), 4000)
    assert all(len(p) <= 4000 for p in pieces) and len(pieces) == 5
    assert all(p.startswith(tuple(f"{n} word" for n in range(30))) for p in pieces)  # cut at ¶
    assert split_text("x" * 9000, 4000) == ["x" * 4000, "x" * 4000, "x" * 1000]
    assert guess_language("Hallo, ik heb een vraag over mijn foto's.", "en") == "nl"
    assert guess_language("Hello, I have a question about my photos and what to do.", "nl") == "en"
    assert guess_language("ok", "nl") == "nl"


def mail_bytes(mail: EmailMessage) -> bytes:
    return mail.as_bytes(policy=SMTP)


def test_a_rich_mail_is_read_whole() -> None:
    mail = EmailMessage()
    mail["From"] = '"Jansen, Anna" <anna@example.org>'
    mail["Reply-To"] = "Anna <anna.private@example.net>"
    mail["Subject"] = "=?utf-8?q?Hulp_met_foto=E2=80=99s?="
    mail["Message-ID"] = "<m1@example.org>"
    mail["In-Reply-To"] = f"<hl-{TOKEN}@helpline.test>"
    mail["References"] = f"<a@x> <hl-{TOKEN}@helpline.test>"
    mail.set_content("De platte tekst.")
    mail.add_alternative("<p>De <b>HTML</b> versie.</p>", subtype="html")
    mail.add_attachment(
        b"\x89PNG\r\n\x1a\nrest",
        maintype="image",
        subtype="png",
        filename="scherm\u00e9.png",
    )
    forwarded = EmailMessage()
    forwarded["From"] = "abuser@example.com"
    forwarded["Subject"] = "I have your photos"
    forwarded.set_content("Pay or else.")
    mail.add_attachment(forwarded)
    read = read_mail(mail_bytes(mail))
    assert read.from_address == "anna@example.org"
    assert read.reply_address == "anna.private@example.net"
    assert read.subject == "Hulp met foto’s"
    assert read.message_id == "<m1@example.org>"
    assert read.in_reply_to == [f"<hl-{TOKEN}@helpline.test>"]
    assert read.text == "De platte tekst."  # the plain alternative, not the HTML
    names = [a.filename for a in read.attachments]
    assert names[0] == "scherm\u00e9.png"
    assert read.attachments[1].content_type == "message/rfc822"
    assert b"Pay or else." in read.attachments[1].data  # the forwarded mail, whole
    assert read.defects == []


def test_raw_utf8_headers_are_read_latin1_ones_are_not() -> None:
    utf8 = "From: a@example.org\r\nSubject: Café ☕\r\n\r\nhallo\r\n".encode()
    assert read_mail(utf8).subject == "Café ☕"
    latin1 = "From: a@example.org\r\nSubject: Café\r\n\r\nhallo\r\n".encode("latin-1")
    with pytest.raises(Unreadable) as refused:
        read_mail(latin1)
    assert refused.value.reason == QuarantineReason.malformed
    assert "Caf" in read_mail(latin1, lenient=True).subject  # a supervisor can release it


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.test\r\nContent-Type: text/plain; charset=x-nope\r\n\r\nhi\r\n",
        b"From: a@b.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9\r\n",
        b"From: a@b.test\r\nContent-Transfer-Encoding: base64\r\n\r\naGk*!!=\r\n",
        b'From: a@b.test\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n\r\nhi\r\n',
    ],
)
def test_what_strict_reading_refuses_lenient_reading_still_reads(raw: bytes) -> None:
    with pytest.raises(Unreadable):
        read_mail(raw)
    lenient = read_mail(raw, lenient=True)
    assert lenient.from_address == "a@b.test" and lenient.defects


def test_trace_headers_are_removed_and_nothing_else() -> None:
    raw = (
        b"Received: from client (client.example [198.51.100.7])\r\n\tby mx.example\r\n"
        b"From: a@b.test\r\nX-Originating-IP: [198.51.100.7]\r\n"
        b"Authentication-Results: mx; spf=pass smtp.mailfrom=b.test\r\n"
        b"Subject: Received mail\r\n\r\nReceived: this line is body\r\n"
    )
    stripped = strip_trace_headers(raw)
    assert stripped == (
        b"From: a@b.test\r\nSubject: Received mail\r\n\r\nReceived: this line is body\r\n"
    )


def test_tokens_are_found_where_mail_programs_put_them() -> None:
    other = "fedcba9876543210fedcba9876543210"
    found = candidate_tokens(
        [f"help+{TOKEN.upper()}@helpline.test", "help@helpline.test"],
        [f"<hl-{other}@helpline.test>"],
        ["<x@y>", f"<hl-{other}@helpline.test>"],
    )
    assert found == [TOKEN, other]
    assert candidate_tokens(["help+short@helpline.test"], ["<hl-nothex@x>"], []) == []
    assert token_hash(TOKEN) == token_hash(TOKEN.upper()) != TOKEN
    bounce = f"Original-Message-ID: <hl-{TOKEN}@helpline.test>".encode()
    assert tokens_quoted_in(bounce) == [TOKEN]
