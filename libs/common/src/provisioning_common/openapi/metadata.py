"""Documentation metadata that handlers carry: :func:`api_doc` attaches an
:class:`ApiDoc` to a handler (metadata only, no behaviour change), which
:func:`provisioning_common.openapi.build_spec` turns into an operation.

Usage::

    @api_doc(summary="Create a server", tags=["servers"], body=ServerIn,
             response=ServerOut, responses={201: "Server created", 409: "Exists"})
    async def create_server(request: web.Request) -> web.Response: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from marshmallow import Schema

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__api_doc__"


@dataclass(frozen=True, slots=True)
class ApiDoc:
    summary: str
    tags: tuple[str, ...] = ()
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    response: type[Schema] | None = None
    many: bool = False
    responses: Mapping[int, str] = field(default_factory=dict)
    auth: bool = True
    description: str | None = None


def api_doc(
    *,
    summary: str,
    tags: Sequence[str] = (),
    body: type[Schema] | None = None,
    query: type[Schema] | None = None,
    response: type[Schema] | None = None,
    many: bool = False,
    responses: Mapping[int, str] | None = None,
    auth: bool = True,
) -> Callable[[F], F]:
    """Attach OpenAPI metadata to a handler; the handler itself is returned unchanged.

    ``responses`` adds or overrides status descriptions; its lowest 2xx code (if
    any) is the success status (``204`` means no body), otherwise ``200``.
    ``many=True`` documents a paginated list (``limit``/``offset`` and the
    pagination headers)."""
    doc = ApiDoc(
        summary=summary,
        tags=tuple(tags),
        body=body,
        query=query,
        response=response,
        many=many,
        responses=dict(responses or {}),
        auth=auth,
    )

    def decorate(handler: F) -> F:
        target = handler.__func__ if inspect.ismethod(handler) else handler
        setattr(target, _ATTR, doc)
        return handler

    return decorate


def get_api_doc(handler: Any) -> ApiDoc | None:
    doc = getattr(handler, _ATTR, None)
    return doc if isinstance(doc, ApiDoc) else None
