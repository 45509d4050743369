"""Prometheus metrics shared by both services, and the ``/metrics`` handler.

Metric objects live at module level, as prometheus_client expects; the
``service`` label keeps two services in one process (tests) apart."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by route template and status",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMIT_REJECTIONS = Counter(
    "rate_limit_rejections_total", "Requests rejected by the rate limiter", ["service", "tier"]
)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/tasks/{id}``), never the raw path: raw
    paths would give every task id a time series of its own."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is not None and getattr(resource, "canonical", None):
        return str(resource.canonical)
    return "unmatched"


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    resp = web.Response(body=body)
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp
