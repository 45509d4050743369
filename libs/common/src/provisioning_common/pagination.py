"""Limit/offset pagination with the contract's headers (``X-Total-Count``,
``X-Limit``, ``X-Offset``, ``Link: <...>; rel="next"``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from .envelope import ok
from .validation import load_query

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


class PageQuery(Schema):
    """``limit``/``offset`` of every list endpoint. A list's filter schema
    subclasses this, so that unknown query parameters are rejected (400) in one place."""

    limit = fields.Integer(validate=validate.Range(1, MAX_LIMIT), load_default=DEFAULT_LIMIT)
    offset = fields.Integer(validate=validate.Range(0, 10**9), load_default=0)


def parse_listing(
    request: web.Request, schema: PageQuery | None = None
) -> tuple[Page, dict[str, Any]]:
    """Validate a list request's query: the page, and the remaining filters."""
    loaded = load_query(request, schema or PageQuery())
    page = Page(limit=loaded.pop("limit"), offset=loaded.pop("offset"))
    return page, loaded


def parse_page(request: web.Request) -> Page:
    """The page of a list endpoint that takes no filters."""
    return parse_listing(request)[0]


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
