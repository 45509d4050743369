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
from ..auth import PRINCIPAL, authorize
from ..auth.resources import command_action, command_resource
from ..deps import container_of
from ..engine import TaskSpec
from .bounds import check_pending, owned
from .model import cluster_spec, servers_spec, taskserv_spec
from .schemas import ClusterCreate, ServersCreate, TaskservCreate
from .service import check_key, submit

routes = web.RouteTableDef()


async def _submit(
    request: web.Request,
    schema: Schema,
    build: Callable[[Mapping[str, Any]], TaskSpec],
) -> web.Response:
    key = check_key(request.headers.get("Idempotency-Key"))
    body = await load_body(request, schema)
    spec = build(body)
    # The resource is named from the command the task will run (auth/resources.py).
    verb, resource = command_action(spec.subcommand), command_resource(spec.subcommand, spec.args)
    principal = request.get(PRINCIPAL)
    principal = await authorize(request, verb, resource, owner=principal.sub if principal else None)
    await check_pending(request, principal.sub, 1)
    task_id = await submit(
        container_of(request).engine,
        container_of(request).tasks,
        container_of(request).idempotency,
        owned(spec, principal.sub),
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
    return await _submit(request, ServersCreate(), servers_spec)


@routes.post("/workflows/taskserv/create")
@api_doc(
    summary="Submit a task service workflow; data is the task id",
    tags=["workflows"],
    body=TaskservCreate,
    responses={409: "Idempotency-Key reused with a different body"},
)
async def taskserv_create(request: web.Request) -> web.Response:
    return await _submit(request, TaskservCreate(), taskserv_spec)


@routes.post("/workflows/cluster/create")
@api_doc(
    summary="Submit a cluster workflow; data is the task id",
    tags=["workflows"],
    body=ClusterCreate,
    responses={409: "Idempotency-Key reused with a different body"},
)
async def cluster_create(request: web.Request) -> web.Response:
    return await _submit(request, ClusterCreate(), cluster_spec)
