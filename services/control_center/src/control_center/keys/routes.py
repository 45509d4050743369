"""The public key set and key rotation."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.errors import Conflict
from provisioning_common.openapi import api_doc

from ..audit import service as audit
from ..auth.guard import require
from ..context import get_context
from .service import KeyRingError

routes = web.RouteTableDef()


@routes.get("/.well-known/jwks.json")
@api_doc(summary="Public signing keys (JWKS, not enveloped)", tags=["keys"], auth=False)
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(
        get_context(request).keyring.jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


@routes.post("/keys/rotate")
@api_doc(
    summary="Rotate the signing key (previous keys stay valid for verification)",
    tags=["keys"],
    responses={409: "Keys come from configuration"},
)
async def rotate(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    ctx = get_context(request)
    try:
        kid = await ctx.keyring.rotate(ctx.repos.keys)
    except KeyRingError as exc:
        raise Conflict(str(exc)) from exc
    await audit.record(
        ctx.repos.audit,
        action="keys.rotate",
        resource=f"keys/{kid}",
        result="success",
        user_id=principal.sub,
    )
    return ok({"kid": kid})
