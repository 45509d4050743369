"""``/users`` handlers."""

from __future__ import annotations

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
_USER = schemas.UserOut()
_USERS = schemas.UserOut(many=True)
_CREATED = schemas.UserCreatedOut()


@routes.get("/users")
@api_doc(
    summary="List users",
    tags=["users"],
    query=schemas.UserQuery,
    response=schemas.UserOut,
    many=True,
)
async def list_users(request: web.Request) -> web.Response:
    await require(request, "admin", "auditor")
    page, query = parse_listing(request, schemas.UserQuery())
    items, total = await container_of(request).users.page(
        role=query.get("role"),
        enabled=query.get("enabled"),
        limit=page.limit,
        offset=page.offset,
    )
    return paginated(request, _USERS.dump(items), total, page)


@routes.post("/users")
@api_doc(
    summary="Create a user",
    tags=["users"],
    body=schemas.UserCreateIn,
    response=schemas.UserCreatedOut,
    responses={201: "User created", 409: "Username taken"},
)
async def create_user(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    body = await load_body(request, schemas.UserCreateIn())
    doc = await container_of(request).users.create(body, principal.sub)
    return ok(_CREATED.dump(doc), status=201)


@routes.get("/users/{id}")
@api_doc(
    summary="Get a user (admins, auditors, or the user themself)",
    tags=["users"],
    response=schemas.UserOut,
)
async def get_user(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    user_id = request.match_info["id"]
    if principal.sub != user_id:
        require_roles(principal, ("admin", "auditor"))
    return ok(_USER.dump(await container_of(request).users.get(user_id)))


@routes.put("/users/{id}")
@api_doc(
    summary="Update a user (admins; users may change their own email and password)",
    tags=["users"],
    body=schemas.UserUpdateIn,
    responses={409: "Last enabled admin", 422: "Validation error or forbidden field"},
)
async def update_user(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await load_body(request, schemas.UserUpdateIn())
    assert principal.user is not None
    await container_of(request).users.update(
        request.match_info["id"],
        body,
        actor=principal.user,
        actor_is_admin=principal.has_role("admin"),
        ip=client_ip(request),
    )
    return ok("User updated successfully")


@routes.delete("/users/{id}")
@api_doc(summary="Delete a user", tags=["users"], responses={409: "Last enabled admin"})
async def delete_user(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    await container_of(request).users.delete(request.match_info["id"], principal.sub)
    return ok("User deleted successfully")


@routes.delete("/users/{id}/mfa")
@api_doc(summary="Reset a user's MFA enrolment", tags=["users"])
async def reset_mfa(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    await container_of(request).users.reset_mfa(request.match_info["id"], principal.sub)
    return ok("MFA reset successfully")


@routes.post("/users/{id}/unlock")
@api_doc(summary="Lift a login lockout", tags=["users"])
async def unlock_user(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    await container_of(request).users.unlock(request.match_info["id"], principal.sub)
    return ok("User unlocked successfully")
