"""The one error middleware, request ids, version negotiation and HTTP metrics.

Every response leaves in the contract's envelope: our own :class:`ApiError`, aiohttp's
HTTP exceptions (404 unknown route, 405, 413) and anything unexpected (500 with the
details only in the log, tied to the request id)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from pymongo.errors import ConnectionFailure, PyMongoError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .envelope import error_response
from .errors import ApiError
from .logging import request_id_var
from .metrics import HTTP_LATENCY, HTTP_REQUESTS, route_template
from .versioning import negotiate_version

log = logging.getLogger(__name__)
access_log = logging.getLogger("provisioning.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A store that is busy rather than broken: FerretDB's SQLite backend reports a writer
# that waited out its busy timeout this way. The request may be retried.
_BUSY_STORE = ("database is locked", "SQLITE_BUSY")


def _store_unavailable(exc: PyMongoError) -> bool:
    return (
        isinstance(exc, ConnectionFailure)
        or exc.timeout
        or any(marker in str(exc) for marker in _BUSY_STORE)
    )


_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_MESSAGES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
}
REQUEST_ID_KEY = web.RequestKey("request_id", str)


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex


def make_middlewares(service: str) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    @web.middleware
    async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = _request_id(request)
        request[REQUEST_ID_KEY] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        try:
            response = await _enveloped(request, handler)
            response.headers["X-Request-ID"] = rid
            elapsed = time.perf_counter() - started
            route = route_template(request)
            HTTP_LATENCY.labels(service, request.method, route).observe(elapsed)
            HTTP_REQUESTS.labels(service, request.method, route, str(response.status)).inc()
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                },
            )
            return response
        finally:
            request_id_var.reset(token)

    return [envelope_middleware]


async def _enveloped(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        negotiate_version(request.headers.get("Accept"))
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, details=exc.details, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_MESSAGES.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, message, headers=headers)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        return _unavailable(request, exc)
    except PyMongoError as exc:
        if not _store_unavailable(exc):
            log.exception("unhandled error", extra={"path": request.path})
            return error_response(500, "Internal server error")
        return _unavailable(request, exc)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "Internal server error")


def _unavailable(request: web.Request, exc: Exception) -> web.Response:
    """A dependency is down or busy: the client may retry, so say so instead of a 500."""
    log.warning("dependency unavailable: %s", type(exc).__name__, extra={"path": request.path})
    return error_response(503, "Service temporarily unavailable", headers={"Retry-After": "5"})
