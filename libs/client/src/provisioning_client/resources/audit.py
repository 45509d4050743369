"""``client.audit``: the control center's audit log and its tamper-evident chain
(``verify`` on the server, ``export``/``export_lines`` as NDJSON, and
``verify_export`` offline against the control center's public keys)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from .._convert import from_dict
from ..audit_offline import AuditVerification, verify_export
from ..errors import TransportError, error_for_status
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

    async def verify(
        self, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> AuditVerification:
        """``GET /audit/verify``: the control center walks its chain (``first_error``
        is ``{seq, kind, detail}`` or None)."""
        data = await self._transport.data(
            "control_center",
            "GET",
            "/audit/verify",
            params={"from_seq": from_seq, "to_seq": to_seq},
        )
        return from_dict(AuditVerification, data)

    async def export_lines(
        self, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> AsyncIterator[bytes]:
        """``GET /audit/export``: the NDJSON lines as sent (each ends with a newline),
        read as they stream in; nothing is held beyond one line."""
        transport = self._transport
        await transport.ensure_fresh_token()
        url = transport.urls["control_center"] + "/audit/export"
        params = {k: str(v) for k, v in (("from_seq", from_seq), ("to_seq", to_seq)) if v}
        headers = transport.headers(auth=True, extra={"Accept": "application/x-ndjson"})
        # no total timeout: an export takes as long as the chain is long
        timeout = aiohttp.ClientTimeout(total=None, sock_read=transport.timeout)
        try:
            async with transport.http.get(
                url, params=params, headers=headers, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    text = await resp.text()
                    try:
                        message = str(json.loads(text).get("error") or text)
                    except (ValueError, AttributeError):
                        message = text.strip()[:500] or f"HTTP {resp.status}"
                    raise error_for_status(
                        resp.status, message, headers=dict(resp.headers), method="GET", url=url
                    )
                while line := await resp.content.readline():
                    yield line
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"GET {url} failed: {exc or type(exc).__name__}") from exc

    async def export(
        self, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``GET /audit/export``, one parsed line at a time (``type``: ``head``,
        ``checkpoint`` or ``record``)."""
        async for line in self.export_lines(from_seq=from_seq, to_seq=to_seq):
            if line.strip():
                yield json.loads(line)

    async def verify_export(
        self, lines: Iterable[str | bytes], *, jwks: Mapping[str, Any] | None = None
    ) -> AuditVerification:
        """Check an export offline; the signatures against ``jwks`` or, by default,
        the control center's ``/.well-known/jwks.json``."""
        if jwks is None:
            reply = await self._transport.request(
                "control_center", "GET", "/.well-known/jwks.json", auth=False, envelope=False
            )
            jwks = dict(reply.data)
        return from_dict(AuditVerification, verify_export(lines, jwks))
