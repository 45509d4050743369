"""``/audit`` handlers."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing
from provisioning_common.validation import load_body

from ..auth.guard import require
from ..context import get_context
from . import schemas, service

routes = web.RouteTableDef()


@routes.get("/audit/logs")
@api_doc(
    summary="Search the audit log (newest first)",
    tags=["audit"],
    query=schemas.AuditQuery,
    response=schemas.AuditOut,
    many=True,
)
async def logs(request: web.Request) -> web.Response:
    await require(request, "admin", "auditor")
    page, query = parse_listing(request, schemas.AuditQuery())
    items, total = await service.search(
        get_context(request).repos.audit,
        user_id=query.get("user_id"),
        action=query.get("action"),
        resource=query.get("resource"),
        since=query.get("from_"),
        until=query.get("to"),
        limit=page.limit,
        offset=page.offset,
    )
    return paginated(request, items, total, page)


@routes.post("/audit/events")
@api_doc(
    summary="Ingest another service's audit event (idempotent by id)",
    tags=["audit"],
    body=schemas.AuditEventIn,
    response=schemas.AuditIngestOut,
    responses={200: "Already stored (same id)", 201: "Stored"},
)
async def ingest(request: web.Request) -> web.Response:
    await require(request, "service", allow=("service",))
    body = await load_body(request, schemas.AuditEventIn())
    stored = await service.ingest(get_context(request).repos.audit, body)
    return ok({"id": body["id"], "duplicate": not stored}, status=201 if stored else 200)
