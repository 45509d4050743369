"""``/audit`` handlers."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.errors import ServiceUnavailable
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing
from provisioning_common.validation import load_query, read_json_body, validate

from ..auth.guard import require
from ..deps import container_of
from . import schemas
from .chain_service import AuditChain

routes = web.RouteTableDef()


def _chain(request: web.Request) -> AuditChain:
    chain = container_of(request).audit.chain
    if chain is None:
        raise ServiceUnavailable("The audit chain is not enabled")
    return chain


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


@routes.get("/audit/verify")
@api_doc(
    summary=(
        "Verify the tamper-evident audit chain in seq order (optionally from_seq..to_seq): "
        "record hashes, links and signed checkpoints; reports the first broken sequence "
        "number and its kind (modified, missing, reordered, truncated)"
    ),
    tags=["audit"],
    query=schemas.ChainRangeQuery,
    response=schemas.ChainVerifyOut,
)
async def verify(request: web.Request) -> web.Response:
    await require(request, "admin", "auditor")
    query = load_query(request, schemas.ChainRangeQuery())
    report = await _chain(request).verify(query["from_seq"], query["to_seq"])
    return ok(report)


@routes.get("/audit/export")
@api_doc(
    summary=(
        "Export the audit chain as NDJSON (application/x-ndjson, streamed, not enveloped): "
        'a {"type": "head"} line, every {"type": "checkpoint", seq, hash, signed_at, kid, '
        'signature}, then {"type": "record", seq, prev_hash, hash, record} in seq order; '
        "`provctl audit verify FILE` checks it offline against /.well-known/jwks.json"
    ),
    tags=["audit"],
    query=schemas.ChainRangeQuery,
)
async def export(request: web.Request) -> web.StreamResponse:
    await require(request, "admin", "auditor")
    query = load_query(request, schemas.ChainRangeQuery())
    chain = _chain(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="audit-chain.ndjson"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in chain.export(query["from_seq"], query["to_seq"]):
        await response.write(chunk)
    await response.write_eof()
    return response
