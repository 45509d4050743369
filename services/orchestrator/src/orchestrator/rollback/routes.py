"""Thin handlers for ``/rollback/*``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from orchestrator.audit import record_action, record_audit
from orchestrator.auth import authorize, authorize_all
from orchestrator.deps import container_of
from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_page
from provisioning_common.validation import load_body

from . import service
from .schemas import (
    CheckpointDetailOut,
    CheckpointIn,
    CheckpointOut,
    LedgerEntryOut,
    RollbackIn,
    RollbackResultOut,
    RollbackStatisticsOut,
)

routes = web.RouteTableDef()
_CHECKPOINTS = CheckpointOut(many=True)
_CHECKPOINT = CheckpointDetailOut()
_LEDGER = LedgerEntryOut(many=True)
_RESULT = RollbackResultOut()
_STATISTICS = RollbackStatisticsOut()


@routes.post("/rollback/checkpoints")
@api_doc(
    summary="Create a checkpoint (ledger position + state snapshot)",
    tags=["rollback"],
    body=CheckpointIn,
    responses={201: "Checkpoint id"},
)
async def create_checkpoint(request: web.Request) -> web.Response:
    await authorize(request, "create", "checkpoints:*")
    body = await load_body(request, CheckpointIn())
    cid = await service.create_checkpoint(
        container_of(request).rollback, body["name"], body.get("description")
    )
    await record_action(request, "create", f"checkpoints:{cid}", details={"name": body["name"]})
    return ok(cid, status=201)


@routes.get("/rollback/checkpoints")
@api_doc(
    summary="List checkpoints, newest first", tags=["rollback"], response=CheckpointOut, many=True
)
async def list_checkpoints(request: web.Request) -> web.Response:
    await authorize(request, "read", "checkpoints:*")
    page = parse_page(request)
    docs, total = await service.list_checkpoints(
        container_of(request).rollback, page.offset, page.limit
    )
    return paginated(request, _CHECKPOINTS.dump(docs), total, page)


@routes.get("/rollback/checkpoints/{id}")
@api_doc(summary="Get a checkpoint", tags=["rollback"], response=CheckpointDetailOut)
async def get_checkpoint(request: web.Request) -> web.Response:
    cid = request.match_info["id"]
    await authorize(request, "read", f"checkpoints:{cid}")
    doc = await service.get_checkpoint(container_of(request).rollback, cid)
    return ok(_CHECKPOINT.dump(doc))


@routes.get("/rollback/operations")
@api_doc(
    summary="The ledger of applied operations and their compensations, newest first",
    tags=["rollback"],
    response=LedgerEntryOut,
    many=True,
)
async def list_operations(request: web.Request) -> web.Response:
    await authorize(request, "read", "rollback:*")
    page = parse_page(request)
    docs, total = await service.list_ledger(container_of(request).rollback, page.offset, page.limit)
    return paginated(request, _LEDGER.dump(docs), total, page)


@routes.post("/rollback/execute")
@api_doc(
    summary="Run compensations after a checkpoint, or of the listed operations",
    tags=["rollback"],
    body=RollbackIn,
    response=RollbackResultOut,
    responses={404: "Unknown checkpoint", 409: "A batch it touches is running"},
)
async def execute_rollback(request: web.Request) -> web.Response:
    principal = await authorize(request, "execute", "rollback:*")
    body = await load_body(request, RollbackIn())

    async def check(entries: Sequence[Mapping[str, Any]]) -> None:
        # Each compensation on the resource it deletes, before any is claimed or run.
        await authorize_all(request, service.compensation_checks(entries))

    result = await service.execute(
        container_of(request).rollback,
        checkpoint_id=body.get("checkpoint_id"),
        operation_ids=body.get("operation_ids"),
        check=check,
        owner=principal.sub,
    )
    await record_audit(
        request,
        action="rollback.execute",
        resource=f"checkpoints/{body.get('checkpoint_id') or '-'}",
        details=body,
    )
    return ok(_RESULT.dump(result))


@routes.post("/rollback/restore/{id}")
@api_doc(
    summary="Restore the orchestrator state recorded in a checkpoint",
    tags=["rollback"],
    responses={409: "A batch is running"},
)
async def restore(request: web.Request) -> web.Response:
    cid = request.match_info["id"]
    await authorize(request, "restore", f"checkpoints:{cid}")
    restored = await service.restore(container_of(request).rollback, cid)
    await record_audit(request, action="rollback.restore", resource=f"checkpoints/{cid}")
    return ok(restored)


@routes.get("/rollback/statistics")
@api_doc(summary="Rollback statistics", tags=["rollback"], response=RollbackStatisticsOut)
async def statistics(request: web.Request) -> web.Response:
    await authorize(request, "read", "rollback:*")
    return ok(_STATISTICS.dump(await service.statistics(container_of(request).rollback)))
