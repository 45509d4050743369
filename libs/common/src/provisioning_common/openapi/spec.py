"""The OpenAPI 3 document of an application, generated from its routes and their
marshmallow schemas: :func:`build_spec` walks ``app.router`` and turns every route
into an operation with apispec's MarshmallowPlugin, wrapping response schemas in the
contract's envelope and adding the error responses the shared middleware,
validation, auth and rate limiting can produce."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from marshmallow import Schema

from ..pagination import DEFAULT_LIMIT, MAX_LIMIT
from .metadata import ApiDoc, get_api_doc

OPENAPI_VERSION = "3.0.3"
SECURITY_SCHEME = "bearerAuth"
_SKIPPED_METHODS = {hdrs.METH_HEAD, hdrs.METH_OPTIONS}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

# The errors the shared stack can give; which apply is decided per operation.
_ERROR_TEXT: dict[int, str] = {
    400: "Malformed request (invalid JSON body or query parameters)",
    401: "Missing, invalid or expired bearer token",
    403: "The caller's role or policy does not allow this action",
    404: "Resource not found",
    406: "Unsupported API version in the Accept header",
    413: "Request body too large",
    422: "Validation error; `details` maps fields to messages",
    429: "Rate limit exceeded; see Retry-After",
    503: "A dependency (database, Redis, token verification) is unavailable; retry later",
}
_PAGE_HEADERS = {
    "X-Total-Count": ("Total number of items matching the filters", "integer"),
    "X-Limit": ("Page size used", "integer"),
    "X-Offset": ("Offset used", "integer"),
    "Link": ('Links with rel="next" / rel="prev" when more pages exist', "string"),
}


# Routes the shared scaffolding adds (webapp.add_operational_routes and .docs_page),
# documented here so that they need no decorator in the shared code.
_BUILTIN: dict[tuple[str, str], ApiDoc] = {
    ("GET", "/health"): ApiDoc(summary="Liveness check", tags=("operations",), auth=False),
    ("GET", "/ready"): ApiDoc(
        summary="Readiness check (every dependency checked)",
        tags=("operations",),
        auth=False,
        responses={503: "A dependency is unavailable"},
    ),
    ("GET", "/metrics"): ApiDoc(
        summary="Prometheus metrics (text format)", tags=("operations",), auth=False
    ),
    ("GET", "/openapi.json"): ApiDoc(
        summary="This OpenAPI document", tags=("operations",), auth=False
    ),
    ("GET", "/docs"): ApiDoc(
        summary="Human-readable API documentation (HTML)", tags=("operations",), auth=False
    ),
}
_RAW_CONTENT: dict[str, dict[str, Any]] = {
    "/.well-known/jwks.json": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            }
        }
    },
    "/metrics": {"text/plain": {"schema": {"type": "string"}}},
    "/openapi.json": {"application/json": {"schema": {"type": "object"}}},
    "/docs": {"text/html": {"schema": {"type": "string"}}},
    # the audit chain, streamed as NDJSON (head, checkpoint and record lines)
    "/audit/export": {"application/x-ndjson": {"schema": {"type": "string"}}},
}


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    handler: Any


def _iter_routes(app: web.Application, prefix: str = "") -> Iterator[_Route]:
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            yield from _iter_routes(resource._app, prefix + resource.canonical)
            continue
        if isinstance(resource, web.StaticResource):
            continue  # files (the /docs page's assets), not API operations
        path = prefix + resource.canonical
        for route in resource:
            method = route.method.upper()
            if method in _SKIPPED_METHODS:
                continue
            handler = route.handler
            if inspect.isclass(handler) and issubclass(handler, web.View):
                for meth in sorted(hdrs.METH_ALL - _SKIPPED_METHODS):
                    if method in (hdrs.METH_ANY, meth) and hasattr(handler, meth.lower()):
                        yield _Route(meth, path, getattr(handler, meth.lower()))
            elif method != hdrs.METH_ANY:
                yield _Route(method, path, handler)


def _name_resolver() -> Callable[[Any], str | None]:
    """Component names from class names; a clash between two classes of the
    same name gets a module-qualified name instead of apispec's warning."""
    taken: dict[str, type] = {}

    def resolve(schema: Any) -> str | None:
        if isinstance(schema, Schema) and (
            schema.only or schema.exclude or schema.partial or schema.many
        ):
            return None  # a modified instance is inlined, not a component
        cls: type = resolve_schema_cls(schema)  # type: ignore[assignment]
        base = cls.__name__.removesuffix("Schema") or cls.__name__
        for name in (base, f"{cls.__module__.replace('.', '_')}_{base}"):
            if taken.setdefault(name, cls) is cls:
                return name
        return f"{base}_{id(cls):x}"

    return resolve


def build_spec(app: web.Application, *, title: str, version: str) -> dict[str, Any]:
    """Return the OpenAPI 3 document of every route registered on ``app``."""
    resolver = cast(Callable[[type[Schema]], str], _name_resolver())  # None = inline
    plugin = MarshmallowPlugin(schema_name_resolver=resolver)
    spec = APISpec(title=title, version=version, openapi_version=OPENAPI_VERSION, plugins=[plugin])
    spec.components.security_scheme(
        SECURITY_SCHEME, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["success", "error"],
            "properties": {
                "success": {"type": "boolean", "enum": [False]},
                "error": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        },
    )
    used_ids: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    for route in _iter_routes(app):
        doc = get_api_doc(route.handler) or _BUILTIN.get((route.method, route.path))
        operation = _operation(plugin, route, doc, used_ids)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(
    plugin: MarshmallowPlugin, route: _Route, doc: ApiDoc | None, used_ids: set[str]
) -> dict[str, Any]:
    path_params = _PARAM.findall(route.path)
    op: dict[str, Any] = {"operationId": _operation_id(route, used_ids)}
    if doc is None:
        # Undocumented route: still listed, with a permissive contract.
        op["summary"] = _handler_name(route.handler)
        op["parameters"] = _path_parameters(path_params)
        op["responses"] = {
            "200": {"description": "Success", "content": _success_content(plugin, route, None)},
            "default": _error_ref("Error"),
        }
        return op

    op["summary"] = doc.summary
    if doc.description:
        op["description"] = doc.description
    if doc.tags:
        op["tags"] = list(doc.tags)
    parameters: list[dict[str, Any]] = _path_parameters(path_params)
    if doc.query is not None:
        parameters.append({"in": "query", "schema": doc.query})
    query_fields = set(doc.query().fields) if doc.query is not None else set()
    if doc.many:
        parameters.extend(_page_parameters(query_fields))
    if parameters:
        op["parameters"] = parameters
    if doc.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(plugin, doc.body)}},
        }
    op["security"] = [{SECURITY_SCHEME: []}] if doc.auth else []
    op["responses"] = _responses(plugin, route, doc, bool(path_params))
    return op


def _responses(
    plugin: MarshmallowPlugin, route: _Route, doc: ApiDoc, has_path_params: bool
) -> dict[str, Any]:
    success = min((c for c in doc.responses if 200 <= c < 300), default=200)
    responses: dict[str, Any] = {}
    if success == 204:
        responses["204"] = {"description": doc.responses.get(204, "No content")}
    else:
        ok: dict[str, Any] = {
            "description": doc.responses.get(success, "Success"),
            "content": _success_content(plugin, route, doc),
        }
        if doc.many:
            ok["headers"] = {
                name: {"description": text, "schema": {"type": kind}}
                for name, (text, kind) in _PAGE_HEADERS.items()
            }
        responses[str(success)] = ok

    errors: set[int] = {406, 429}
    if doc.body is not None:
        errors |= {400, 413, 422}
    if doc.query is not None or doc.many:
        errors.add(400)
    if doc.auth:
        errors |= {401, 403, 503}  # 503: token checks and the rate limiter fail closed
    if has_path_params:
        errors.add(404)
    if route.path == "/metrics":
        errors.add(401)  # when a scrape token is configured
    codes = (
        errors
        | {c for c in doc.responses if c >= 300}
        | {c for c in doc.responses if 200 <= c < 300 and c != success}
    )
    for code in sorted(codes):
        text = doc.responses.get(code) or _ERROR_TEXT.get(code, "Error")
        if code < 300:
            responses[str(code)] = {
                "description": text,
                "content": _success_content(plugin, route, doc),
            }
        else:
            responses[str(code)] = _error_ref("Error", text)
    return responses


def _success_content(
    plugin: MarshmallowPlugin, route: _Route, doc: ApiDoc | None
) -> dict[str, Any]:
    if route.path in _RAW_CONTENT:
        return _RAW_CONTENT[route.path]
    data: dict[str, Any] = {}
    if doc is not None and doc.response is not None:
        ref = _ref(plugin, doc.response)
        data = {"type": "array", "items": ref} if doc.many else ref
    elif doc is not None and doc.many:
        data = {"type": "array", "items": {}}
    envelope = {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"type": "boolean", "enum": [True]}, "data": data},
    }
    return {"application/json": {"schema": envelope}}


def _ref(plugin: MarshmallowPlugin, schema: type[Schema]) -> dict[str, Any]:
    assert plugin.converter is not None  # set by APISpec(plugins=[plugin])
    ref: dict[str, Any] = plugin.converter.resolve_nested_schema(schema)  # type: ignore[no-untyped-call]
    return ref


def _error_ref(name: str, description: str = "Error") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _path_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _page_parameters(already: set[str]) -> list[dict[str, Any]]:
    params = []
    if "limit" not in already:
        params.append(
            {
                "in": "query",
                "name": "limit",
                "required": False,
                "description": "Page size",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            }
        )
    if "offset" not in already:
        params.append(
            {
                "in": "query",
                "name": "offset",
                "required": False,
                "description": "Items to skip",
                "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0},
            }
        )
    return params


def _handler_name(handler: Any) -> str:
    return str(getattr(handler, "__qualname__", None) or getattr(handler, "__name__", "handler"))


def _operation_id(route: _Route, used: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"by_\1", route.path)).strip("_")
    base = f"{route.method.lower()}_{slug or 'root'}"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    used.add(candidate)
    return candidate
