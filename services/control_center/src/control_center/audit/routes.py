"""``/audit`` handlers."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing
from provisioning_common.validation import read_json_body, validate

from ..auth.guard import require
from ..deps import container_of
from . import schemas

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
    items, total = await container_of(request).audit.search(
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
    summary=(
        "Ingest another service's audit event (idempotent by id); a body "
        '{"events": [event, ...]} (1-500 events) ingests a batch and answers '
        "{stored, duplicates, results: [{id, duplicate}]}"
    ),
    tags=["audit"],
    body=schemas.AuditEventIn,
    response=schemas.AuditIngestOut,
    responses={200: "Already stored (same id; every id for a batch)", 201: "Stored"},
)
async def ingest(request: web.Request) -> web.Response:
    await require(request, "service", allow=("service",))
    raw = await read_json_body(request)
    audit = container_of(request).audit
    if isinstance(raw, Mapping) and "events" in raw:
        events = validate(schemas.AuditBatchIn(), raw)["events"]
        stored = await audit.ingest_many(events)
        results = [
            {"id": event["id"], "duplicate": not new}
            for event, new in zip(events, stored, strict=True)
        ]
        count = sum(stored)
        data = {"stored": count, "duplicates": len(events) - count, "results": results}
        return ok(data, status=201 if count else 200)
    body = validate(schemas.AuditEventIn(), raw)
    new = await audit.ingest(body)
    return ok({"id": body["id"], "duplicate": not new}, status=201 if new else 200)
