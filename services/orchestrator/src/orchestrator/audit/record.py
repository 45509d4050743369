"""What handlers and background work call to audit an action (see the package
docstring): the record goes to the container's :class:`AuditService`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from provisioning_common.middleware import REQUEST_ID_KEY

from ..auth.core import PRINCIPAL
from ..deps import CONTAINER
from .service import AuditService

log = logging.getLogger(__name__)


async def record_audit(
    target: web.Request | web.Application,
    *,
    action: str,
    resource: str,
    user_id: str | None = None,
    result: str = "success",
    details: Mapping[str, Any] | None = None,
) -> str | None:
    """Queue one audit record for the control center; returns its id (None when
    auditing is not set up or the record could not be stored, which is logged)."""
    app = target.app if isinstance(target, web.Request) else target
    extra = dict(details or {})
    if isinstance(target, web.Request):
        if user_id is None:
            principal = target.get(PRINCIPAL)
            user_id = getattr(principal, "sub", None)
        request_id = target.get(REQUEST_ID_KEY)
        if request_id:
            extra.setdefault("request_id", request_id)
    # None without a container, or before it has started.
    service: AuditService | None = getattr(app.get(CONTAINER), "audit", None)
    if service is None:
        log.warning("audit not set up; dropped %s on %s", action, resource)
        return None
    try:
        return await service.record(
            action=action, resource=resource, user_id=user_id, result=result, details=extra
        )
    except Exception:
        log.exception("could not store audit record %s on %s", action, resource)
        return None


async def record_action(
    request: web.Request,
    verb: str,
    policy_resource: str,
    *,
    result: str = "success",
    details: Mapping[str, Any] | None = None,
) -> str | None:
    """Audit what a handler just authorized: ``verb`` on ``kind:name`` (the policy
    resource) becomes action ``<kind, singular>.<verb>`` on resource ``kind/name``
    (``create`` on ``servers:web-01`` → ``server.create`` on ``servers/web-01``)."""
    kind, _, name = policy_resource.partition(":")
    action = f"{kind[:-1] if kind.endswith('s') else kind}.{verb}"
    resource = f"{kind}/{name}" if name else kind
    return await record_audit(
        request, action=action, resource=resource, result=result, details=details
    )
