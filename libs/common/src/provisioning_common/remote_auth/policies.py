"""The whole policy set from ``GET /policies`` (every page, all or nothing), as a
:class:`PolicyEngine`; reloaded when invalidated or older than ``max_age``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..policy import PolicyEngine, policy_from_document
from .control_center import CC_ERRORS, ControlCenterUnavailable, ServiceTokenClient

log = logging.getLogger(__name__)


class PolicyCache:
    def __init__(
        self, service: ServiceTokenClient, *, max_age: float = 300.0, max_pages: int = 100
    ) -> None:
        self.service = service
        self.max_age = max_age
        self.engine: PolicyEngine | None = None
        self.page_size = 1000  # the control center's largest page
        self.max_pages = max_pages
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def reload(self) -> PolicyEngine:
        """Load every policy, page by page. All or nothing: a page that fails, or more
        than ``max_pages`` pages, keeps the previous set (or none: fail closed)."""
        async with self._lock:
            docs: list[Any] = []
            for page in range(self.max_pages + 1):
                status, body = await self.service.call(
                    "GET", f"/policies?limit={self.page_size}&offset={page * self.page_size}"
                )
                if (
                    status != 200
                    or not isinstance(body, dict)
                    or not isinstance(body.get("data"), list)
                ):
                    raise ValueError(f"policies answered {status}")
                docs.extend(body["data"])
                if len(body["data"]) < self.page_size:
                    break
            else:
                raise ValueError(
                    f"more than {self.max_pages * self.page_size} policies: refusing a partial set"
                )
            policies = []
            for doc in docs:
                try:
                    policies.append(policy_from_document(doc))
                except Exception as exc:  # one broken policy must not disable the rest
                    log.warning("skipping unreadable policy %s: %s", doc.get("id"), exc)
            self.engine = PolicyEngine(policies)
            self._loaded_at = time.monotonic()
            return self.engine

    async def get(self) -> PolicyEngine:
        if self.engine is not None and time.monotonic() - self._loaded_at < self.max_age:
            return self.engine
        try:
            return await self.reload()
        except CC_ERRORS as exc:
            if self.engine is not None:  # stale but known: better than failing everyone
                log.warning("policy reload failed, keeping the cached set: %s", exc)
                return self.engine
            raise ControlCenterUnavailable() from exc
