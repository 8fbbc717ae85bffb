"""The partner's download: a one-time link to the sealed packet.

`GET /handover/{token}` is a small page with a Download button (a plain form POST, no
script), so a mail scanner that follows links does not use the link up; `POST` streams
`<reference>.tar.age` and marks the link used and the handover `downloaded`. An unknown,
malformed, expired, used or revoked token, or a handover that is not `delivered`, answers 410
with one and the same page: it does not say whether a packet ever existed.

The token is the capability (the route is public, as the platform portal's page): it is
checked here, against the SHA-256 stored in `handover_links`. It never reaches a log line:
the access log names the route template (`/handover/{token}`), never the path, and uvicorn's
own access log is off (helpline.core.logs). `Referrer-Policy: no-referrer` and
`Cache-Control: no-store` are on every response (core.http.security_headers) and set here too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

from helpline.core.audit import record
from helpline.core.clock import as_utc
from helpline.core.http import PUBLIC, publish_after_commit, route, services
from helpline.handover import delivery, packet, state
from helpline.handover.delivery import token_hash
from helpline.handover.models import Handover, HandoverLink, handover_scope
from helpline.handover.states import HandoverStatus

PATH = "/handover/{token}"
_TOKEN = re.compile(r"[0-9a-f]{32}")
HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title></head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body></html>
"""

GONE_PAGE = _PAGE.format(
    title="This link does not work",
    body="<p>This download link does not work (any more). Links work once and for a limited "
    "time. Ask the helpline for a new one, quoting the reference from the e-mail.</p>",
)

DOWNLOAD_PAGE = _PAGE.format(
    title="Sealed handover packet",
    body="<p>A sealed handover packet is waiting for you. It can be downloaded once.</p>\n"
    '<form method="post" action=""><button type="submit">Download</button></form>\n'
    "<p>Open it with your organisation's identity file:<br>\n"
    "<code>age -d -i identity.key packet.tar.age | tar -x</code></p>",
)


def gone() -> Response:
    return HTMLResponse(GONE_PAGE, status_code=410, headers=HEADERS)


async def _open_link(request: Request, *, for_update: bool) -> tuple[HandoverLink, Handover] | None:
    """The link and its handover, if the token opens a packet right now."""
    token = str(request.path_params["token"])
    if not _TOKEN.fullmatch(token):
        return None
    session = request.state.session
    query = select(HandoverLink).where(col(HandoverLink.token_hash) == token_hash(token))
    if for_update:
        query = query.with_for_update()
    link = (await session.execute(query)).scalar_one_or_none()
    if link is None or link.used_at is not None or link.revoked_at is not None:
        return None
    if as_utc(link.expires_at) <= services(request).clock.now():
        return None
    handover = await session.get(Handover, link.handover_id, with_for_update=for_update)
    if (
        handover is None
        or handover.status != HandoverStatus.delivered.value
        or handover.blob_name is None
    ):
        return None
    return link, handover


async def download_page(request: Request) -> Response:
    if await _open_link(request, for_update=False) is None:
        return gone()
    return HTMLResponse(DOWNLOAD_PAGE, headers=HEADERS)


async def download(request: Request) -> Response:
    """Mark the link used and the handover downloaded (committed before the first byte goes
    out: a second click gets 410 however the first one ends), then stream the packet."""
    found = services(request)
    opened = await _open_link(request, for_update=True)
    if opened is None:
        return gone()
    link, handover = opened
    session = request.state.session
    link.used_at = found.clock.now()
    await state.move(session, found.clock, handover, HandoverStatus.downloaded, actor="partner")
    for where, message in delivery.changed(handover.case_id):  # "received", at once
        publish_after_commit(request, where, message)
    await record(
        session,
        found.clock,
        actor="partner",
        action="handover.download",
        target=f"handover:{handover.id}",
        details={"handover": handover.id, "link": link.id, "size": handover.packet_size},
    )
    cipher = await found.keyring.cipher(session, handover_scope(handover.id), create=False)
    key = packet.packet_key(cipher)
    assert handover.blob_name is not None
    blob, reference = handover.blob_name, handover.reference
    vault = packet.vault_for(found.settings)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in vault.read(blob, key):
            yield chunk

    headers = {
        **HEADERS,
        "content-disposition": f'attachment; filename="{reference}.tar.age"',
    }
    if handover.packet_size is not None:
        headers["content-length"] = str(handover.packet_size)
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


def handover_download_routes() -> list[BaseRoute]:
    return [
        route(PATH, download_page, access=PUBLIC),
        route(PATH, download, access=PUBLIC, methods=["POST"], name="handover_download_post"),
    ]
