"""OpenAPI 3 documents generated from the routes and their marshmallow schemas.

Handlers carry their documentation with :func:`api_doc` (:mod:`.metadata`);
:func:`build_spec` (:mod:`.spec`) turns every route of an application into an
operation; :func:`add_openapi_routes` (:mod:`.docs_page`) serves ``/openapi.json``
and the ``/docs`` page (packaged assets, no CDN at run time)."""

from __future__ import annotations

from .docs_page import DOCS_ASSETS_PREFIX, DOCS_CSP, DOCS_PATH, add_openapi_routes
from .metadata import ApiDoc, api_doc, get_api_doc
from .spec import build_spec

__all__ = [
    "DOCS_ASSETS_PREFIX",
    "DOCS_CSP",
    "DOCS_PATH",
    "ApiDoc",
    "add_openapi_routes",
    "api_doc",
    "build_spec",
    "get_api_doc",
]
