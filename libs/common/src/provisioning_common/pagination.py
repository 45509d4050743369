"""Limit/offset pagination with the contract's headers (``X-Total-Count``,
``X-Limit``, ``X-Offset``, ``Link: <...>; rel="next"``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .envelope import ok
from .errors import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"Query parameter '{name}' must be an integer") from exc
    if not low <= value <= high:
        raise BadRequest(f"Query parameter '{name}' must be between {low} and {high}")
    return value


def parse_page(request: web.Request) -> Page:
    return Page(
        limit=_int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_int_param(request, "offset", 0, 0, 10**9),
    )


def page_headers(request: web.Request, page: Page, total: int) -> dict[str, str]:
    headers = {
        "X-Total-Count": str(total),
        "X-Limit": str(page.limit),
        "X-Offset": str(page.offset),
    }
    links = []
    if page.offset + page.limit < total:
        nxt = request.rel_url.update_query(offset=page.offset + page.limit, limit=page.limit)
        links.append(f'<{nxt}>; rel="next"')
    if page.offset > 0:
        prev = request.rel_url.update_query(
            offset=max(0, page.offset - page.limit), limit=page.limit
        )
        links.append(f'<{prev}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return headers


def paginated(request: web.Request, items: Sequence[Any], total: int, page: Page) -> web.Response:
    return ok(list(items), headers=page_headers(request, page, total))
