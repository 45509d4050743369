"""OpenAPI generation: decorator metadata, every route, parameters, bodies, the
envelope, security and error responses; the document is valid OpenAPI 3.0."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marshmallow import Schema, fields, validate
from schemathesis.specs.openapi.definitions import OPENAPI_30

from provisioning_common.envelope import ok
from provisioning_common.middleware import make_middlewares
from provisioning_common.openapi import DOCS_CSP, add_openapi_routes, api_doc, build_spec


class ServerIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=63))
    cpu = fields.Integer(load_default=1)


class ServerOut(Schema):
    name = fields.String(required=True)
    tags = fields.List(fields.String())


class ServerFilter(Schema):
    status = fields.String(validate=validate.OneOf(["running", "stopped"]))


@api_doc(
    summary="List servers", tags=["servers"], query=ServerFilter, response=ServerOut, many=True
)
async def list_servers(request: web.Request) -> web.Response:
    return ok([])


@api_doc(
    summary="Create a server",
    tags=["servers"],
    body=ServerIn,
    response=ServerOut,
    responses={201: "Created", 409: "Already exists"},
)
async def create_server(request: web.Request) -> web.Response:
    return ok({"name": "x"}, status=201)


@api_doc(summary="Get a server", tags=["servers"], response=ServerOut)
async def get_server(request: web.Request) -> web.Response:
    return ok({"name": request.match_info["name"]})


@api_doc(summary="Delete a server", tags=["servers"], responses={204: "Deleted"})
async def delete_server(request: web.Request) -> web.Response:
    return web.Response(status=204)


@api_doc(summary="Log in", tags=["auth"], body=ServerIn, auth=False)
async def login(request: web.Request) -> web.Response:
    return ok({})


async def undocumented(request: web.Request) -> web.Response:
    return ok({})


class ItemView(web.View):
    @api_doc(summary="View get", response=ServerOut)
    async def get(self) -> web.Response:
        return ok({"name": "v"})


def make_app() -> web.Application:
    app = web.Application(middlewares=make_middlewares("test"))
    app.router.add_get("/servers", list_servers)
    app.router.add_post("/servers", create_server)
    app.router.add_get("/servers/{name}", get_server)
    app.router.add_delete(r"/servers/{name:[a-z0-9-]+}", delete_server)
    app.router.add_post("/auth/login", login)
    app.router.add_get("/misc", undocumented)
    app.router.add_view("/items/{id}", ItemView)
    add_openapi_routes(app, "Test API", "1.2.3")
    return app


@pytest.fixture
def spec() -> dict[str, Any]:
    return build_spec(make_app(), title="Test API", version="1.2.3")


def test_decorator_keeps_handler() -> None:
    assert list_servers.__name__ == "list_servers"
    assert callable(list_servers)


def test_spec_is_valid_openapi_30(spec: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(OPENAPI_30).validate(spec)
    assert spec["openapi"].startswith("3.0")
    assert spec["info"] == {"title": "Test API", "version": "1.2.3"}


def test_every_route_listed(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert set(paths) == {
        "/servers",
        "/servers/{name}",
        "/auth/login",
        "/misc",
        "/items/{id}",
        "/openapi.json",
        "/docs",
    }
    assert set(paths["/servers"]) == {"get", "post"}
    assert set(paths["/servers/{name}"]) == {"get", "delete"}  # regex stripped, one path
    assert "head" not in paths["/servers"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_list_operation(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/servers"]["get"]
    assert op["summary"] == "List servers"
    assert op["tags"] == ["servers"]
    names = {p["name"]: p for p in op["parameters"]}
    assert set(names) == {"status", "limit", "offset"}
    assert names["status"]["in"] == "query"
    assert names["status"]["schema"]["enum"] == ["running", "stopped"]
    assert names["limit"]["schema"]["maximum"] == 1000
    ok_schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok_schema["required"] == ["success", "data"]
    assert ok_schema["properties"]["data"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ServerOut"},
    }
    assert set(op["responses"]["200"]["headers"]) >= {"X-Total-Count", "Link"}
    assert set(op["responses"]) == {"200", "400", "401", "403", "406", "429", "503"}
    assert op["security"] == [{"bearerAuth": []}]


def test_body_operation(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/servers"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ServerIn"}
    component = spec["components"]["schemas"]["ServerIn"]
    assert component["required"] == ["name"]
    assert component["properties"]["name"]["maxLength"] == 63
    assert set(op["responses"]) == {
        "201",
        "400",
        "401",
        "403",
        "406",
        "409",
        "413",
        "422",
        "429",
        "503",
    }
    assert op["responses"]["201"]["description"] == "Created"
    assert op["responses"]["409"]["description"] == "Already exists"
    err = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert err == {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["success", "error"]


def test_path_parameters_and_no_content(spec: dict[str, Any]) -> None:
    get = spec["paths"]["/servers/{name}"]["get"]
    assert get["parameters"] == [
        {"in": "path", "name": "name", "required": True, "schema": {"type": "string"}}
    ]
    assert "404" in get["responses"]
    delete = spec["paths"]["/servers/{name}"]["delete"]
    assert "content" not in delete["responses"]["204"]
    assert "200" not in delete["responses"]


def test_security(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    login_op = spec["paths"]["/auth/login"]["post"]
    assert login_op["security"] == []
    assert "401" not in login_op["responses"]


def test_undocumented_and_view_routes(spec: dict[str, Any]) -> None:
    misc = spec["paths"]["/misc"]["get"]
    assert set(misc["responses"]) == {"200", "default"}
    view = spec["paths"]["/items/{id}"]["get"]
    assert view["summary"] == "View get"
    assert spec["paths"]["/docs"]["get"]["security"] == []


def test_name_clash_is_qualified() -> None:
    first = type("Thing", (Schema,), {"a": fields.String()})
    second = type("Thing", (Schema,), {"b": fields.Integer()})
    second.__module__ = "other.module"

    @api_doc(summary="one", response=first)
    async def one(request: web.Request) -> web.Response:
        return ok({})

    @api_doc(summary="two", response=second)
    async def two(request: web.Request) -> web.Response:
        return ok({})

    app = web.Application()
    app.router.add_get("/one", one)
    app.router.add_get("/two", two)
    spec = build_spec(app, title="t", version="1")
    assert {"Thing", "other_module_Thing"} <= set(spec["components"]["schemas"])


async def test_served_routes() -> None:
    async with TestClient(TestServer(make_app())) as client:
        response = await client.get("/openapi.json")
        assert response.status == 200
        document = await response.json()
        assert "/servers" in document["paths"]
        jsonschema.Draft4Validator(OPENAPI_30).validate(document)
        page = await client.get("/docs")
        assert page.status == 200
        assert page.content_type == "text/html"
        assert page.headers["Content-Security-Policy"] == DOCS_CSP
        html = await page.text()
        assert "openapi.json" in html
        assert "http://" not in html
        assert "https://" not in html


def test_raw_routes_are_not_enveloped() -> None:
    @api_doc(summary="JWKS", auth=False)
    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/metrics", undocumented)
    spec = build_spec(app, title="t", version="1")
    jwks_schema = spec["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    assert jwks_schema["required"] == ["keys"]
    metrics_op = spec["paths"]["/metrics"]["get"]
    assert "text/plain" in metrics_op["responses"]["200"]["content"]
    assert "401" in metrics_op["responses"]  # when a scrape token is configured
