"""No log line holds what a victim told us: their words, e-mail address, phone number,
passphrase, reported URLs or file names.

The main flows run with every logger at DEBUG (see logscan.py), and everything logged is
searched for each test victim's distinctive strings: the web chat over websockets both ways
and its resume with reference and passphrase (the real app under uvicorn), then e-mail in
through the real SMTP listener and a reply out, a callback request, evidence by URL (fetched
from a loopback site) and by upload, and a removal notice e-mailed to a platform (the real app
in-process, reusing the takedown fixtures). Last, `helpline demo` in a subprocess at
`HELPLINE_LOG_LEVEL=DEBUG`: its stderr after a chat and an evidence URL.

`test_the_scan_catches_a_leak` proves the net has no hole where it matters: one log line that
quotes a victim's URL, added to the real code path, makes the scan fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from email.policy import SMTP as SMTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select
from sqlmodel import col
from websockets.sync.client import connect

from helpline.cases.models import Case
from helpline.core.config import Settings
from helpline.core.db import Database
from helpline.evidence import service as evidence_service
from helpline.intake.email import smtp_listener
from helpline.staff.models import Role
from tests.callback.conftest import request_body
from tests.email.conftest import Sink, victim_mail
from tests.intake.chatkit import StaffMember, Victim
from tests.live import LiveServer, free_port, live_server
from tests.ops.logscan import Capture, leaks, logging_at_debug
from tests.takedown.conftest import (  # noqa: F401  (fixtures)
    HELPLINE_MAIL,
    cheap_hashing,
    office,
    office_overrides,
    sink,
    site,
)
from tests.takedown.kit import Office, PlatformSite

# what the test victims tell us: each distinctive enough to be found anywhere
CHAT_TEXT = "Mijn ex Ruud leakscan-chat-4a7e dreigt mijn fotos te delen"
CHAT_AGAIN = "Ik ben het weer, leakscan-resume-0c55"
STAFF_TEXT = "We helpen je, leakscan-staff-77d1"  # not personal, but must not be logged either
MAIL_FROM = "lisa.leakscan.4a7e@example.net"
MAIL_TEXT = "Iemand zet mijn adres online, leakscan-mail-e9b2"
MAIL_SUBJECT = "Hulp leakscan-subject-51c0"
MAIL_REPLY = "Dank voor je bericht, leakscan-reply-3b8f"
PHONE = "06 38475612"
PHONE_DIGITS = "38475612"  # in every way of writing the number (+31 6 38475612, 0638475612)
CODE_WORD = "leakscancodeword"
PAGE_PATH = "/content/leakscan-url-8d3f"
NOTICE_URL = "https://photoshare.example.org/p/leakscan-notice-2b6a?u=lisa"
FILE_NAME = "leakscan-file-lisa-9e1c.png"

SECRETS = [
    CHAT_TEXT,
    "leakscan-chat-4a7e",
    "leakscan-resume-0c55",
    "leakscan-staff-77d1",
    MAIL_FROM,
    "lisa.leakscan",
    "leakscan-mail-e9b2",
    "leakscan-subject-51c0",
    "leakscan-reply-3b8f",
    PHONE_DIGITS,
    CODE_WORD,
    "leakscan-url-8d3f",
    "leakscan-notice-2b6a",
    "leakscan-file-lisa-9e1c",
]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def assert_clean(capture: Capture, *more: str) -> None:
    text = capture.text()
    found = leaks(text, [*SECRETS, *more])
    assert found == [], f"personal data in the logs: {found}"


# ---------------------------------------------------------------- web chat, over websockets


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def server(settings_for: Any, database_url: str, port: int) -> AsyncIterator[LiveServer]:
    settings: Settings = settings_for(
        database_url,
        base_url=f"http://127.0.0.1:{port}",
        opening_hours="mo-su 00:00-24:00",
        metrics_token="scan-metrics-token",
    )
    async with live_server(settings, port=port) as running:
        yield running


async def metric(server: LiveServer, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get("/metrics", headers={"Authorization": "Bearer scan-metrics-token"})
    for line in answer.text.splitlines():
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in {answer.text}")


async def test_the_web_chat_logs_nothing_a_victim_said(server: LiveServer, db: Database) -> None:
    with logging_at_debug() as capture:
        victim = await Victim(server.url).start()
        agent = await StaffMember.create(db, server.url, "anouk")
        case_id = await agent.claim(victim.reference)
        staff_chat = await agent.chat(server.ws_url, case_id)
        victim_chat = await victim.chat(server.ws_url)
        try:
            assert await metric(server, "helpline_websocket_connections", kind="chat_victim") == 1
            assert await metric(server, "helpline_websocket_connections", kind="chat_staff") == 1
            await victim_chat.say(CHAT_TEXT)
            await staff_chat.wait_for(lambda f: f["type"] == "message" and f["text"] == CHAT_TEXT)
            await staff_chat.say(STAFF_TEXT)
            await victim_chat.wait_for(lambda f: f["type"] == "message" and f["text"] == STAFF_TEXT)
        finally:
            await victim_chat.close()
            await staff_chat.close()

        # back later, on another device: reference and passphrase
        async with httpx.AsyncClient(base_url=server.url) as http:
            resumed = await http.post(
                "/api/chat/resume",
                json={"reference": victim.reference, "passphrase": victim.passphrase},
            )
            assert resumed.status_code == 200, resumed.text
            request_id = resumed.headers["x-request-id"]
            wrong = await http.post(
                "/api/chat/resume",
                json={"reference": victim.reference, "passphrase": "leakscan wrong guess"},
            )
            assert wrong.status_code == 401
        again = await Victim(server.url, token=resumed.json()["token"]).chat(server.ws_url)
        try:
            await again.say(CHAT_AGAIN)
            await staff_chat_sees(agent, server, case_id, CHAT_AGAIN)
        finally:
            await again.close()
            await agent.close()

    # the request id ties the access log line to its request
    [line] = [
        r for r in capture.of("helpline.access") if getattr(r, "request_id", "") == request_id
    ]
    assert getattr(line, "route", None) == "/api/chat/resume"
    assert capture.of("sqlalchemy.engine"), "the SQL statements were not captured"
    assert_clean(capture, victim.passphrase, "leakscan wrong guess")


async def staff_chat_sees(agent: StaffMember, server: LiveServer, case_id: str, text: str) -> None:
    chat = await agent.chat(server.ws_url, case_id)
    try:
        await chat.wait_for(lambda f: f["type"] == "message" and f["text"] == text)
    finally:
        await chat.close()


# ---------------------------------------------------------------- the other channels


@pytest.fixture
async def listening(office: Office) -> AsyncIterator[int]:  # noqa: F811
    async with smtp_listener(office.services, host="127.0.0.1", port=0) as listener:
        yield listener.port


async def send_mail(port: int) -> None:
    mail = victim_mail(MAIL_TEXT, subject=MAIL_SUBJECT, sender=MAIL_FROM)
    mail.replace_header("To", HELPLINE_MAIL)

    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(MAIL_FROM, [HELPLINE_MAIL], mail.as_bytes(policy=SMTP_POLICY))

    await asyncio.to_thread(deliver)


async def test_mail_callbacks_evidence_and_notices_log_nothing_a_victim_said(
    office: Office,  # noqa: F811
    listening: int,
    sink: Sink,  # noqa: F811
    site: PlatformSite,  # noqa: F811
) -> None:
    site.pages[PAGE_PATH] = 200
    with logging_at_debug() as capture:
        admin = await office.staff("ada", Role.admin)
        agent = await office.staff("bea")

        # e-mail in through the real listener, a reply out through the relay
        await send_mail(listening)
        async with office.services.db.transaction() as session:
            mail_case = (
                await session.execute(select(Case).where(col(Case.channel) == "email"))
            ).scalar_one()
        await agent.act(mail_case.id, "claim")
        replied = await agent.post(
            f"/api/staff/cases/{mail_case.id}/email/reply",
            {"text": MAIL_REPLY, "client_id": uuid.uuid4().hex},
        )
        assert replied.status_code in (200, 201), replied.text
        await office.run_outbox()
        assert [m.rcpt_tos for m in sink.received] == [[MAIL_FROM]]

        # a callback request with a phone number
        http = office.client()
        filed = await http.post(
            "/api/callback/request", json=request_body(phone=PHONE, code_word=CODE_WORD)
        )
        assert filed.status_code == 201, filed.text

        # evidence from a victim's chat: a URL (fetched from the loopback site) and a file
        receipt = await office.victim()
        victim = {"Authorization": f"Bearer {receipt['token']}"}
        page = f"{site.url}{PAGE_PATH}"
        url_item = await http.post("/api/chat/evidence/urls", json={"url": page}, headers=victim)
        assert url_item.status_code == 201, url_item.text
        upload = await http.post(
            "/api/chat/evidence/files",
            files={"file": (FILE_NAME, png(), "image/png")},
            headers=victim,
        )
        assert upload.status_code == 201, upload.text

        # a removal notice, e-mailed to the platform
        platform = await office.platform(admin)
        case_id = await office.case(agent)
        notice = await office.notice(
            agent,
            case_id,
            platform["id"],
            urls=[{"url": NOTICE_URL, "content_type": "CONTENT_TYPE_IMAGE"}],
        )
        assert (await office.do(agent, notice["id"], "send"))["status"] == "queued"
        await office.run_outbox()
        assert any("dsa@photoshare.example.org" in m.rcpt_tos for m in sink.received)

    assert capture.of("sqlalchemy.engine"), "the SQL statements were not captured"
    assert capture.of("helpline.access")
    assert_clean(capture, PAGE_PATH)


async def test_the_scan_catches_a_leak(
    office: Office,  # noqa: F811
    site: PlatformSite,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Somebody adds `log.info("... %s", url)` to the evidence code: the scan must fail."""
    original = evidence_service.capture_url
    careless = logging.getLogger("helpline.evidence.service")

    async def capture_url(*args: Any, **kwargs: Any) -> Any:
        careless.info("fetching %s", kwargs["url"])
        return await original(*args, **kwargs)

    monkeypatch.setattr(evidence_service, "capture_url", capture_url)
    site.pages[PAGE_PATH] = 200
    with logging_at_debug() as capture:
        receipt = await office.victim()
        answer = await office.client().post(
            "/api/chat/evidence/urls",
            json={"url": f"{site.url}{PAGE_PATH}"},
            headers={"Authorization": f"Bearer {receipt['token']}"},
        )
        assert answer.status_code == 201, answer.text
    assert leaks(capture.text(), SECRETS) == ["leakscan-url-8d3f"]
    # found in the line as Helpline writes it, with the request's id
    [line] = [json.loads(x) for x in capture.lines if "leakscan-url-8d3f" in x]
    assert line["logger"] == "helpline.evidence.service" and line["request_id"]
    with pytest.raises(AssertionError, match="leakscan-url-8d3f"):
        assert_clean(capture)


# ---------------------------------------------------------------- the real server, at DEBUG


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body>the page</body></html>"
        self.send_response(200 if self.path == PAGE_PATH else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served_demo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env.update(
        HELPLINE_DATA_DIR=str(tmp_path / "var"),
        HELPLINE_LOG_LEVEL="DEBUG",
        HELPLINE_SNAPSHOT_ALLOW_LOOPBACK="true",
        HELPLINE_OPENING_HOURS="mo-su 00:00-24:00",
    )
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "helpline.cli", "demo", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"the demo did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base, log_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_the_server_at_debug_logs_nothing_a_victim_said(
    served_demo: tuple[str, Path], page_site: str
) -> None:
    base, log_path = served_demo
    with httpx.Client(base_url=base) as http:
        started = http.post("/api/chat/start", json={"language": "nl"})
        assert started.status_code == 201, started.text
        receipt = started.json()
        request_id = started.headers["x-request-id"]
        with connect(f"{base.replace('http', 'ws')}/ws/chat", open_timeout=10) as chat:
            chat.send(json.dumps({"type": "hello", "token": receipt["token"]}))
            assert json.loads(chat.recv(timeout=10))["type"] == "welcome"
            chat.send(json.dumps({"type": "send", "client_id": "c1", "text": CHAT_TEXT}))
            while (frame := json.loads(chat.recv(timeout=10)))["type"] != "ack":
                assert frame["type"] != "error", frame
        victim = {"Authorization": f"Bearer {receipt['token']}"}
        url = f"{page_site}{PAGE_PATH}"
        added = http.post("/api/chat/evidence/urls", json={"url": url}, headers=victim)
        assert added.status_code == 201, added.text
        resumed = http.post(
            "/api/chat/resume",
            json={"reference": receipt["reference"], "passphrase": receipt["passphrase"]},
        )
        assert resumed.status_code == 200, resumed.text

    # the access line of the last request is the last thing written for it: wait for it
    deadline = time.monotonic() + 10
    while resumed.headers["x-request-id"] not in log_path.read_text():
        assert time.monotonic() < deadline, "the access log line never came"
        time.sleep(0.1)
    logs = log_path.read_text()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    [start] = [x for x in lines if x.get("request_id") == request_id]
    assert start["logger"] == "helpline.access" and start["route"] == "/api/chat/start"
    found = leaks(logs, [*SECRETS, receipt["passphrase"]])
    assert found == [], f"personal data in the server's logs: {found}"
