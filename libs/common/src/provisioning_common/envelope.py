"""The contract's response envelope: ``{"success": true, "data": ...}`` or
``{"success": false, "error": "..."}`` (plus ``details`` for validation errors)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, as the contract's examples show."""
    text = value.isoformat(timespec="seconds" if value.microsecond == 0 else "milliseconds")
    return text.replace("+00:00", "Z") if text.endswith("+00:00") else text + "Z"


def dumps(payload: Any) -> str:
    return json.dumps(payload, default=_default, separators=(",", ":"))


def ok(
    data: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        {"success": True, "data": data}, status=status, headers=headers, dumps=dumps
    )


def error_response(
    status: int,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"success": False, "error": message}
    if details:
        body["details"] = dict(details)
    return web.json_response(body, status=status, headers=headers, dumps=dumps)
