"""Request body and query parsing: malformed input is a 400, invalid input a 422
with marshmallow's field errors, an oversized body a 413."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from marshmallow import RAISE, Schema, ValidationError

from .errors import BadRequest, PayloadTooLarge, UnprocessableEntity


async def read_json_body(request: web.Request) -> Any:
    """Return the decoded JSON body; 400 when it is not JSON, 413 when too large."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge() from exc
    except ConnectionResetError as exc:  # the client went away mid-body: not our error
        raise BadRequest("Request body could not be read") from exc
    if not raw:
        raise BadRequest("Request body must be a JSON object")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("Request body is not valid JSON") from exc


def validate(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate and deserialise with ``schema``; unknown fields are rejected."""
    if not isinstance(data, Mapping):
        raise UnprocessableEntity(
            "Validation error", details={"_schema": ["Expected a JSON object"]}
        )
    try:
        loaded: dict[str, Any] = schema.load(data, unknown=RAISE)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise UnprocessableEntity("Validation error", details=messages) from exc
    return loaded


async def load_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    return validate(schema, await read_json_body(request))


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    """Validate query parameters; bad query parameters are a 400, as DESIGN §6 says."""
    try:
        loaded: dict[str, Any] = schema.load(dict(request.query), unknown=RAISE)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise BadRequest("Invalid query parameters", details=messages) from exc
    return loaded
