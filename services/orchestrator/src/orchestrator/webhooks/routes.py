"""``GET /webhooks/deliveries[/{id}]`` and ``POST /webhooks/deliveries/{id}/redeliver``."""

from __future__ import annotations

from aiohttp import web

from provisioning_common.envelope import ok
from provisioning_common.errors import Conflict, NotFound
from provisioning_common.openapi import api_doc
from provisioning_common.pagination import paginated, parse_listing

from ..audit import record_audit
from ..auth import authorize
from ..deps import container_of
from .schemas import DeliveryQuery, DeliveryView, delivery_query

routes = web.RouteTableDef()
_DELIVERY = DeliveryView()
_DELIVERIES = DeliveryView(many=True)
_TAGS = ["webhooks"]
_MAX_ID = 200


@routes.get("/webhooks/deliveries")
@api_doc(
    summary="List webhook deliveries (newest first) with their attempts",
    tags=_TAGS,
    query=DeliveryQuery,
    response=DeliveryView,
    many=True,
)
async def list_deliveries(request: web.Request) -> web.Response:
    await authorize(request, "read", "webhooks:*")
    page, params = parse_listing(request, DeliveryQuery())
    docs, total = await container_of(request).webhooks.deliveries(
        delivery_query(params), limit=page.limit, offset=page.offset
    )
    return paginated(request, _DELIVERIES.dump(docs), total, page)


@routes.get("/webhooks/deliveries/{id}")
@api_doc(summary="Get one webhook delivery", tags=_TAGS, response=DeliveryView)
async def get_delivery(request: web.Request) -> web.Response:
    await authorize(request, "read", "webhooks:*")
    delivery_id = request.match_info["id"]
    webhooks = container_of(request).webhooks
    doc = await webhooks.delivery(delivery_id) if len(delivery_id) <= _MAX_ID else None
    if doc is None:
        raise NotFound("Delivery not found")
    return ok(_DELIVERY.dump(doc))


@routes.post("/webhooks/deliveries/{id}/redeliver")
@api_doc(
    summary="Deliver again (a fresh series of attempts)",
    tags=_TAGS,
    response=DeliveryView,
    responses={202: "Delivery re-queued", 409: "The delivery is still in progress"},
)
async def redeliver(request: web.Request) -> web.Response:
    await authorize(request, "redeliver", "webhooks:*")
    delivery_id = request.match_info["id"]
    webhooks = container_of(request).webhooks
    doc = await webhooks.delivery(delivery_id) if len(delivery_id) <= _MAX_ID else None
    if doc is None:
        raise NotFound("Delivery not found")
    if not await webhooks.redeliver(delivery_id):
        raise Conflict("Delivery is still in progress")
    await record_audit(
        request, action="webhook.redeliver", resource=f"webhooks/deliveries/{delivery_id}"
    )
    return ok(_DELIVERY.dump(await webhooks.delivery(delivery_id) or doc), status=202)
