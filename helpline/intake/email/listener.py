"""The SMTP listener (aiosmtpd) that the mail server in front of the helpline delivers to.

It runs in the app's event loop with the app's services. Only the helpline's addresses (and
their `+token` forms) are accepted, at RCPT time; a mail over the size limit is refused with
552 while it arrives (and at MAIL FROM when the client announces its SIZE). A mail is
answered `250` only once it is stored in a case or in the quarantine; if neither could be
written the answer is `451` and the sending server tries again later.

aiosmtpd logs the client's address in nearly every line; its logger is filtered so that no
address, HELO name or envelope address reaches the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP

from helpline.core.services import Services
from helpline.intake.email import tokens
from helpline.intake.email.inbound import Envelope, receive

log = logging.getLogger("helpline.email")

MAX_RECIPIENTS = 20
COMMAND_TIMEOUT = 120.0  # seconds a client may stay silent
IDENT = "Helpline ESMTP"
SHUTDOWN_GRACE = 5.0


class _WithoutPeers(logging.Filter):
    """aiosmtpd's own lines name the client (address, HELO name, envelope): keep only
    warnings and errors, without their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg, record.args = f"smtp: {record.msg}", ()
        return True


def quiet_aiosmtpd() -> None:
    logger = logging.getLogger("mail.log")
    if not any(isinstance(f, _WithoutPeers) for f in logger.filters):
        logger.addFilter(_WithoutPeers())


class MailHandler:
    """aiosmtpd's hooks. Nothing about the session (peer, HELO name) is read or kept."""

    def __init__(self, found: Services) -> None:
        self.found = found
        self.addresses = set(found.settings.inbound_address_list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if tokens.base_address(address) not in self.addresses:
            return "550 5.1.1 Recipient address rejected: not an address of this helpline"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        if not raw.strip():
            return "554 5.6.0 Empty message refused"
        mail_from = "" if envelope.mail_from in ("<>", "", None) else str(envelope.mail_from)
        try:
            outcome = await receive(self.found, Envelope(mail_from, list(envelope.rcpt_tos)), raw)
        except Exception as exc:  # neither stored nor quarantined: the sender keeps it
            log.error("an e-mail could not be stored", extra={"error": type(exc).__name__})
            return "451 4.3.0 Temporary failure, please try again later"
        log.info("e-mail received", extra={"outcome": outcome.kind, "reason": outcome.reason})
        return "250 2.0.0 OK: received"


@dataclass
class Listener:
    server: asyncio.Server
    host: str
    port: int


@contextlib.asynccontextmanager
async def smtp_listener(
    found: Services, *, host: str | None = None, port: int | None = None, reuse_port: bool = False
) -> AsyncIterator[Listener]:
    """Listen for mail until the block ends (`port` 0: any free port). `reuse_port` lets
    several processes (uvicorn workers) share the port."""
    settings = found.settings
    quiet_aiosmtpd()
    handler = MailHandler(found)
    addresses = settings.inbound_address_list
    hostname = tokens.domain_of(addresses[0]) if addresses else "localhost"
    loop = asyncio.get_running_loop()
    sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def session() -> SMTP:
        protocol = SMTP(
            handler,
            data_size_limit=settings.smtp_in_max_message_mb * 1024 * 1024,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident=IDENT,
            timeout=COMMAND_TIMEOUT,
            loop=loop,
        )
        sessions.add(protocol)
        return protocol

    server = await loop.create_server(
        session,
        host if host is not None else settings.smtp_in_host,
        port if port is not None else settings.smtp_in_port,
        reuse_port=reuse_port or None,
    )
    bound = server.sockets[0].getsockname()
    try:
        yield Listener(server, str(bound[0]), int(bound[1]))
    finally:
        server.close()
        # a mail being received now was not answered 250: its sender delivers it again
        for protocol in list(sessions):
            transport = protocol.transport
            if transport is not None:
                transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)


@contextlib.asynccontextmanager
async def smtp_listener_if_configured(found: Services) -> AsyncIterator[Listener | None]:
    """For `helpline serve`: the listener when `HELPLINE_SMTP_IN_PORT` is set (not 0),
    shared by all worker processes; nothing otherwise."""
    if found.settings.smtp_in_port == 0:
        yield None
        return
    async with smtp_listener(found, reuse_port=True) as listener:
        yield listener
