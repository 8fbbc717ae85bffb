"""Evidence endpoints: victims attach files and URLs from the chat; staff add, list, preview
(blurred until revealed), mark a possible minor, and export."""

from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from helpline.cases.service import channel
from helpline.core.audit import record
from helpline.core.crypto import case_scope
from helpline.core.errors import NotFound
from helpline.core.http import Schema, parse_body, publish_after_commit, route, services
from helpline.evidence import custody, service
from helpline.evidence.bundle import export_case
from helpline.evidence.imaging import render_preview, video_placeholder
from helpline.evidence.models import EvidenceItem, ItemStatus
from helpline.evidence.upload import UploadStream
from helpline.intake.chat.routes import VICTIM
from helpline.staff.auth import staff
from helpline.staff.console import case_for_staff
from helpline.staff.models import Role

AGENT = staff(Role.agent)
SUPERVISOR = staff(Role.supervisor)


class UrlBody(Schema):
    url: str


class HashesBody(Schema):
    sha256: str
    pdq: str
    pdq_quality: int


def _summary(item: EvidenceItem) -> dict[str, object]:
    return {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "media_type": item.media_type,
        "size": item.size,
        "sha256": item.sha256,
    }


# ---------------------------------------------------------------- victims


async def victim_upload(request: Request) -> Response:
    upload = UploadStream(request)
    item = await service.capture_file(
        request.state.session,
        services(request),
        case_id=request.state.principal.id,
        chunks=upload.chunks(),
        filename=lambda: upload.filename,
        captor=service.Captor("victim", "chat"),
    )
    _tell_staff(request, item)
    return JSONResponse(_summary(item), status_code=201)


def _tell_staff(request: Request, item: EvidenceItem) -> None:
    """The staff member in the chat sees new evidence without refreshing."""
    publish_after_commit(request, channel(item.case_id), {"type": "evidence", "id": item.id})


async def victim_url(request: Request) -> Response:
    body = await parse_body(request, UrlBody)
    item = await service.capture_url(
        request.state.session,
        services(request),
        case_id=request.state.principal.id,
        url=body.url,
        captor=service.Captor("victim", "chat"),
    )
    _tell_staff(request, item)
    return JSONResponse(_summary(item), status_code=201)


async def victim_list(request: Request) -> Response:
    items = await service.items_of(
        request.state.session, services(request), request.state.principal.id
    )
    shown = ("id", "kind", "status", "media_type", "size", "filename", "url", "captured_at")
    return JSONResponse({"items": [{k: i[k] for k in shown} for i in items]})


# ---------------------------------------------------------------- staff


def _captor(request: Request) -> service.Captor:
    return service.Captor(f"staff:{request.state.principal.id}", "console")


async def staff_list(request: Request) -> Response:
    case = await case_for_staff(request)
    found = services(request)
    await record(
        request.state.session,
        found.clock,
        actor=_captor(request).actor,
        action="case.open",
        target=f"case:{case.id}",
        details={"via": "evidence"},
    )
    return JSONResponse({"items": await service.items_of(request.state.session, found, case.id)})


async def staff_upload(request: Request) -> Response:
    case = await case_for_staff(request)
    upload = UploadStream(request)
    item = await service.capture_file(
        request.state.session,
        services(request),
        case_id=case.id,
        chunks=upload.chunks(),
        filename=lambda: upload.filename,
        captor=_captor(request),
    )
    return JSONResponse(_summary(item), status_code=201)


async def staff_url(request: Request) -> Response:
    case = await case_for_staff(request)
    body = await parse_body(request, UrlBody)
    item = await service.capture_url(
        request.state.session,
        services(request),
        case_id=case.id,
        url=body.url,
        captor=_captor(request),
    )
    return JSONResponse(_summary(item), status_code=201)


async def staff_hashes(request: Request) -> Response:
    case = await case_for_staff(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        sha256, pdq, quality = await service.hash_upload(
            services(request), UploadStream(request).chunks()
        )
    else:
        body = await parse_body(request, HashesBody)
        sha256, pdq, quality = body.sha256, body.pdq, body.pdq_quality
    if pdq is None or quality is None:
        raise NotFound("no PDQ hash could be made of this image")
    item = await service.record_hashes(
        request.state.session,
        services(request),
        case_id=case.id,
        sha256=sha256,
        pdq=pdq,
        pdq_quality=quality,
        captor=_captor(request),
    )
    return JSONResponse(
        {**_summary(item), "pdq": item.pdq, "pdq_quality": item.pdq_quality}, status_code=201
    )


async def staff_mark_minor(request: Request) -> Response:
    case = await case_for_staff(request)
    found = services(request)
    destroyed = await service.mark_possible_minor(
        request.state.session, found, case_id=case.id, actor=_captor(request).actor
    )
    await record(
        request.state.session,
        found.clock,
        actor=_captor(request).actor,
        action="case.possible_minor",
        target=f"case:{case.id}",
        details={"destroyed": destroyed},
    )
    return JSONResponse(
        {"possible_minor": True, "destroyed": destroyed, "referral": service.HOTLINE_REFERRAL}
    )


async def staff_preview(request: Request) -> Response:
    """A re-encoded, metadata-free preview, blurred unless `?reveal=1` (which is audited)."""
    found = services(request)
    session = request.state.session
    item = await session.get(EvidenceItem, request.path_params["item_id"])
    if item is None:
        raise NotFound("no such item")
    await case_for_staff(request, item.case_id)
    if item.status != ItemStatus.stored or not item.blob_name:
        raise NotFound("this item has no stored content")
    reveal = request.query_params.get("reveal") == "1"
    actor = _captor(request).actor
    await custody.append(
        session,
        found.signer,
        found.clock,
        item_id=item.id,
        actor=actor,
        event="revealed" if reveal else "previewed",
    )
    await record(
        session,
        found.clock,
        actor=actor,
        action="evidence.reveal" if reveal else "evidence.preview",
        target=f"evidence:{item.id}",
    )
    if not (item.media_type or "").startswith("image/"):
        return Response(video_placeholder(), media_type="image/png")
    cipher = await found.keyring.cipher(session, case_scope(item.case_id))
    data = await service.vault_for(found.settings).read_all(
        item.blob_name, cipher.derive("evidence"), max_bytes=service.MAX_IMAGE_FOR_HASHING
    )
    return Response(await render_preview(data, blur=not reveal), media_type="image/jpeg")


async def staff_export(request: Request) -> Response:
    case = await case_for_staff(request)
    found = services(request)
    folder = Path(tempfile.mkdtemp(prefix="helpline-export-"))
    out = folder / f"evidence-{case.reference}.zip"
    await export_case(
        request.state.session,
        found.keyring,
        service.vault_for(found.settings),
        found.signer,
        found.clock,
        case_id=case.id,
        out=out,
        actor=_captor(request).actor,
    )
    await record(
        request.state.session,
        found.clock,
        actor=_captor(request).actor,
        action="evidence.export",
        target=f"case:{case.id}",
    )

    def remove() -> None:
        out.unlink(missing_ok=True)
        folder.rmdir()

    return FileResponse(
        out, media_type="application/zip", filename=out.name, background=BackgroundTask(remove)
    )


def evidence_routes() -> list[BaseRoute]:
    case = "/api/staff/cases/{case_id}"
    return [
        route("/api/chat/evidence", victim_list, access=VICTIM),
        route("/api/chat/evidence/files", victim_upload, access=VICTIM, methods=["POST"]),
        route("/api/chat/evidence/urls", victim_url, access=VICTIM, methods=["POST"]),
        route(f"{case}/evidence", staff_list, access=AGENT),
        route(f"{case}/evidence/files", staff_upload, access=AGENT, methods=["POST"]),
        route(f"{case}/evidence/urls", staff_url, access=AGENT, methods=["POST"]),
        route(f"{case}/evidence/hashes", staff_hashes, access=AGENT, methods=["POST"]),
        route(f"{case}/possible-minor", staff_mark_minor, access=AGENT, methods=["POST"]),
        route(f"{case}/evidence/export", staff_export, access=SUPERVISOR),
        route("/api/staff/evidence/{item_id}/preview", staff_preview, access=AGENT),
    ]
