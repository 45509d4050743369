"""One HTTP exchange with a service: headers, the envelope, error mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .errors import ApiError, TransportError, error_for_status

API_VERSION_ACCEPT = "application/vnd.provisioning.v{version}+json"


@dataclass(slots=True)
class Reply:
    """The ``data`` of a successful envelope plus what the headers said."""

    data: Any
    status: int
    headers: Mapping[str, str]
    next_url: str | None = None

    def header_int(self, name: str) -> int | None:
        raw = self.headers.get(name)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Drop ``None`` values and render booleans as the servers parse them."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    envelope: bool = True,
    is_login: bool = False,
) -> Reply:
    """Send one request; return the envelope's ``data`` or raise the typed error."""
    kwargs: dict[str, Any] = {"headers": dict(headers), "params": _clean_params(params)}
    if body is not None:
        kwargs["data"] = json.dumps(body)
        kwargs["headers"]["Content-Type"] = "application/json"
    try:
        async with session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            next_link = resp.links.get("next")
            next_url = str(next_link.get("url")) if next_link else None
            status, resp_headers = resp.status, dict(resp.headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"{method} {url} failed: {exc or type(exc).__name__}") from exc
    payload: Any = None
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if status >= 400 or (isinstance(payload, dict) and payload.get("success") is False):
        message = text.strip()[:500] or f"HTTP {status}"
        details = None
        if isinstance(payload, dict):
            message = str(payload.get("error") or message)
            raw_details = payload.get("details")
            details = raw_details if isinstance(raw_details, dict) else None
        raise error_for_status(
            status if status >= 400 else 500,
            message,
            details=details,
            headers=resp_headers,
            method=method,
            url=url,
            is_login=is_login,
        )
    if not envelope:
        return Reply(
            data=payload if payload is not None else text,
            status=status,
            headers=resp_headers,
            next_url=next_url,
        )
    if not isinstance(payload, dict) or payload.get("success") is not True:
        raise ApiError(
            f"{method} {url}: response is not the API envelope",
            status=status,
            headers=resp_headers,
            method=method,
            url=url,
        )
    return Reply(data=payload.get("data"), status=status, headers=resp_headers, next_url=next_url)
