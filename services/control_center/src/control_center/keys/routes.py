"""The public key set and key rotation."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.openapi import api_doc

from ..auth.guard import require
from ..deps import container_of

routes = web.RouteTableDef()


@routes.get("/.well-known/jwks.json")
@api_doc(summary="Public signing keys (JWKS, not enveloped)", tags=["keys"], auth=False)
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(
        container_of(request).keys.jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


@routes.post("/keys/rotate")
@api_doc(
    summary="Rotate the signing key (previous keys stay valid for verification)",
    tags=["keys"],
    responses={409: "Keys come from configuration"},
)
async def rotate(request: web.Request) -> web.Response:
    principal = await require(request, "admin")
    return ok({"kid": await container_of(request).keys.rotate(principal.sub)})
