"""``POST /workflows/{servers,taskserv,cluster}/create``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from marshmallow import Schema

from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc
from provisioning_common.validation import load_body

from ..audit import record_action
from ..auth import authorize
from ..engine import TaskSpec
from ..tasks import ENGINE
from .keys import IDEMPOTENCY
from .model import cluster_spec, servers_spec, taskserv_spec
from .schemas import ClusterCreate, ServersCreate, TaskservCreate
from .service import check_key, submit

routes = web.RouteTableDef()


async def _submit(
    request: web.Request,
    schema: Schema,
    action: Callable[[Mapping[str, Any]], tuple[str, str]],
    build: Callable[[Mapping[str, Any]], TaskSpec],
) -> web.Response:
    key = check_key(request.headers.get("Idempotency-Key"))
    body = await load_body(request, schema)
    verb, resource = action(body)
    principal = await authorize(request, verb, resource)
    task_id = await submit(
        request.app[ENGINE],
        request.app[IDEMPOTENCY],
        build(body),
        path=request.path,
        body=body,
        user=principal.sub,
        idempotency_key=key,
    )
    await record_action(request, verb, resource, details={"task_id": task_id})
    return ok(task_id)


@routes.post("/workflows/servers/create")
@api_doc(
    summary="Submit a server creation workflow; data is the task id",
    tags=["workflows"],
    body=ServersCreate,
    responses={409: "Idempotency-Key reused with a different body"},
)
async def servers_create(request: web.Request) -> web.Response:
    return await _submit(
        request, ServersCreate(), lambda b: ("create", f"servers:{b['infra']}"), servers_spec
    )


@routes.post("/workflows/taskserv/create")
@api_doc(
    summary="Submit a task service workflow; data is the task id",
    tags=["workflows"],
    body=TaskservCreate,
    responses={409: "Idempotency-Key reused with a different body"},
)
async def taskserv_create(request: web.Request) -> web.Response:
    return await _submit(
        request,
        TaskservCreate(),
        lambda b: (b["operation"], f"taskservs:{b['taskserv']}"),
        taskserv_spec,
    )


@routes.post("/workflows/cluster/create")
@api_doc(
    summary="Submit a cluster workflow; data is the task id",
    tags=["workflows"],
    body=ClusterCreate,
    responses={409: "Idempotency-Key reused with a different body"},
)
async def cluster_create(request: web.Request) -> web.Response:
    return await _submit(
        request,
        ClusterCreate(),
        lambda b: (b["operation"], f"clusters:{b['cluster_type']}"),
        cluster_spec,
    )
