"""``client.webhooks``: webhook deliveries and redelivery."""

from __future__ import annotations

from typing import Any

from .._convert import from_dict
from ..models import Page, WebhookDelivery
from ._base import Resource


class WebhooksAPI(Resource):
    async def list_deliveries(
        self, /, *, limit: int | None = None, offset: int | None = None, **filters: Any
    ) -> Page[WebhookDelivery]:
        params = {**filters, "limit": limit, "offset": offset}
        return await self._transport.page(
            "orchestrator", "/webhooks/deliveries", WebhookDelivery, params
        )

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery:
        path = f"/webhooks/deliveries/{delivery_id}"
        return from_dict(WebhookDelivery, await self._transport.data("orchestrator", "GET", path))

    async def redeliver(self, delivery_id: str) -> Any:
        path = f"/webhooks/deliveries/{delivery_id}/redeliver"
        return await self._transport.data("orchestrator", "POST", path)
