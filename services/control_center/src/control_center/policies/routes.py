"""``/policies`` handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing
from provisioning_common.validation import load_body
from provisioning_common.webapp import client_ip

from ..auth.guard import authenticate, require, require_roles
from ..deps import container_of
from . import schemas

routes = web.RouteTableDef()
READERS = ("admin", "auditor", "service")
_POLICY = schemas.PolicyOut()
_POLICIES = schemas.PolicyOut(many=True)
_CREATED = schemas.PolicyCreatedOut()
_DECISION = schemas.DecisionOut()


@routes.get("/policies")
@api_doc(
    summary="List policies",
    tags=["policies"],
    query=schemas.PolicyQuery,
    response=schemas.PolicyOut,
    many=True,
)
async def list_policies(request: web.Request) -> web.Response:
    await require(request, *READERS, allow=("access", "service"))
    page, query = parse_listing(request, schemas.PolicyQuery())
    items, total = await container_of(request).policies.page(
        enabled=query.get("enabled"), limit=page.limit, offset=page.offset
    )
    return paginated(request, _POLICIES.dump(items), total, page)


@routes.post("/policies")
@api_doc(
    summary="Create a policy",
    tags=["policies"],
    body=schemas.PolicyCreateIn,
    response=schemas.PolicyCreatedOut,
    responses={201: "Policy created", 409: "Name taken", 422: "Invalid rule or condition"},
)
async def create_policy(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await load_body(request, schemas.PolicyCreateIn())
    doc = await container_of(request).policies.create(body, principal.sub)
    return ok(_CREATED.dump(doc), status=201)


@routes.post("/policies/evaluate")
@api_doc(
    summary="Explain a decision: which rules allow or deny",
    tags=["policies"],
    body=schemas.EvaluateIn,
    response=schemas.DecisionOut,
)
async def evaluate(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await load_body(request, schemas.EvaluateIn())
    subject: dict[str, Any]
    if body.get("user") is not None:
        # asking about someone else is for those who may read everything
        require_roles(principal, ("admin", "auditor"))
        subject = dict(body["user"])
    else:
        assert principal.user is not None
        subject = {
            "id": principal.sub,
            "username": principal.user["username"],
            "roles": list(principal.roles),
        }
    context = {"ip": client_ip(request), **body["context"]}
    decision = await container_of(request).policies.evaluate(
        user=subject, action=body["action"], resource=body["resource"], request=context
    )
    return ok(_DECISION.dump(decision))


@routes.get("/policies/{id}")
@api_doc(summary="Get a policy", tags=["policies"], response=schemas.PolicyOut)
async def get_policy(request: web.Request) -> web.Response:
    await require(request, *READERS, allow=("access", "service"))
    return ok(_POLICY.dump(await container_of(request).policies.get(request.match_info["id"])))


@routes.put("/policies/{id}")
@api_doc(
    summary="Update a policy",
    tags=["policies"],
    body=schemas.PolicyUpdateIn,
    responses={409: "Name taken", 422: "Invalid rule or condition"},
)
async def update_policy(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await load_body(request, schemas.PolicyUpdateIn())
    await container_of(request).policies.update(request.match_info["id"], body, principal.sub)
    return ok("Policy updated successfully")


@routes.delete("/policies/{id}")
@api_doc(summary="Delete a policy", tags=["policies"])
async def delete_policy(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    await container_of(request).policies.delete(request.match_info["id"], principal.sub)
    return ok("Policy deleted successfully")
