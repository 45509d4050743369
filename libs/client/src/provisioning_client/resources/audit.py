"""``client.audit``: the control center's audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from ..models import AuditLog, Page
from ._base import Resource


def _iso(value: datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _filters(
    user_id: str | None,
    action: str | None,
    resource: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
) -> dict[str, Any]:
    """The query parameters; ``since``/``until`` are the contract's ``from``/``to``."""
    return {
        "user_id": user_id,
        "action": action,
        "resource": resource,
        "from": _iso(since),
        "to": _iso(until),
    }


class AuditAPI(Resource):
    async def logs(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[AuditLog]:
        """``GET /audit/logs``; ``since``/``until`` are the contract's ``from``/``to``."""
        params = {
            **_filters(user_id, action, resource, since, until),
            "limit": limit,
            "offset": offset,
        }
        return await self._transport.page("control_center", "/audit/logs", AuditLog, params)

    def iter_logs(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AuditLog]:
        params = _filters(user_id, action, resource, since, until)
        return self._transport.iterate("control_center", "/audit/logs", AuditLog, params, page_size)

    async def record_event(self, event: Mapping[str, Any]) -> Any:
        """``POST /audit/events`` (service token only)."""
        return await self._transport.data(
            "control_center", "POST", "/audit/events", body=dict(event)
        )
