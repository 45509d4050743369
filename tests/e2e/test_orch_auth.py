"""Orchestrator authentication and authorization against a real control center."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import urljoin

import aiohttp
import pytest
import requests

from tests.e2e.conftest import Services
from tests.support.control_center import (
    auth_header,
    create_user,
    login,
    service_token,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e

BODY = {"infra": "production", "settings": "config.k"}


def get_tasks(services: Services, token: str | None, url: str | None = None) -> requests.Response:
    headers = auth_header(token) if token is not None else {}
    return requests.get(f"{url or services.orch_url}/tasks", headers=headers, timeout=10)


def test_health_is_public_and_everything_else_needs_a_token(services: Services) -> None:
    assert requests.get(f"{services.orch_url}/health", timeout=10).json() == {
        "success": True,
        "data": "Orchestrator is healthy",
    }
    for method, path in [
        ("GET", "/tasks"),
        ("GET", f"/tasks/{uuid.uuid4()}"),
        ("POST", f"/tasks/{uuid.uuid4()}/cancel"),
        ("GET", f"/tasks/{uuid.uuid4()}/attempts"),
        ("POST", "/workflows/servers/create"),
        ("POST", "/workflows/taskserv/create"),
        ("POST", "/workflows/cluster/create"),
    ]:
        resp = requests.request(method, services.orch_url + path, json=BODY, timeout=10)
        assert resp.status_code == 401, (method, path)
        assert resp.json() == {"success": False, "error": "Authentication required"}
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    for bad in ["garbage", "a.b.c", services.admin_token + "x", "Basic abc"]:
        resp = requests.get(
            f"{services.orch_url}/tasks", timeout=10, headers={"Authorization": f"Bearer {bad}"}
        )
        assert resp.status_code == 401
        assert resp.json()["success"] is False


def test_docs_page_and_its_assets_are_public(services: Services) -> None:
    """The /docs page loads its Swagger UI files from /docs/... without a token; the
    API behind it still needs one."""
    for url in (services.orch_url, services.cc_url):
        page = requests.get(f"{url}/docs", timeout=10)
        assert page.status_code == 200, page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets
        for asset in assets:
            resp = requests.get(urljoin(f"{url}/docs", asset), timeout=10)
            assert resp.status_code == 200, (url, asset, resp.status_code)
    resp = requests.get(f"{services.orch_url}/docs/../tasks", timeout=10)
    assert resp.status_code in (401, 404)


def test_service_and_refresh_tokens_are_not_access_tokens(services: Services) -> None:
    assert get_tasks(services, service_token(services.cc_url)).status_code == 401
    refresh = login(services.cc_url, "admin", "Admin-Test-Password-1").get("refresh_token")
    if refresh:
        assert get_tasks(services, refresh).status_code == 401


def test_viewer_reads_but_cannot_submit_or_cancel(services: Services) -> None:
    viewer = services.user_token("viewer")
    assert get_tasks(services, viewer).status_code == 200
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json=BODY,
        headers=auth_header(viewer),
        timeout=10,
    )
    assert resp.status_code == 403
    assert resp.json() == {
        "success": False,
        "error": "Permission denied: 'create' on 'servers:production'",
    }
    before = int(get_tasks(services, services.admin_token).headers["X-Total-Count"])
    resp = requests.post(
        f"{services.orch_url}/tasks/{uuid.uuid4()}/cancel", headers=auth_header(viewer), timeout=10
    )
    assert resp.status_code == 403
    assert int(get_tasks(services, services.admin_token).headers["X-Total-Count"]) == before
    operator = services.user_token("operator")
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json=BODY,
        headers=auth_header(operator),
        timeout=10,
    )
    assert resp.status_code == 200


def _rejected_within(services: Services, token: str, bound: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < bound + 5:
        resp = get_tasks(services, token)
        if resp.status_code == 401:
            return time.monotonic() - started
        assert resp.status_code == 200
        time.sleep(0.2)
    raise AssertionError("token still accepted after the cache bound")


def test_revoked_token_is_rejected_within_the_cache_bound(services: Services) -> None:
    token = services.user_token("operator")
    assert get_tasks(services, token).status_code == 200  # now cached as active
    resp = requests.post(f"{services.cc_url}/auth/logout", headers=auth_header(token), timeout=10)
    assert resp.status_code == 200
    assert _rejected_within(services, token, 30) <= 30


def test_disabled_user_is_rejected_within_the_cache_bound(services: Services) -> None:
    name = f"op-{uuid.uuid4().hex[:8]}"
    user = create_user(services.cc_url, services.admin_token, name, ["operator"])
    token = str(login(services.cc_url, name, "User-Test-Password-1")["token"])
    assert get_tasks(services, token).status_code == 200
    resp = requests.put(
        f"{services.cc_url}/users/{user['id']}",
        json={"enabled": False},
        headers=services.headers(),
        timeout=10,
    )
    assert resp.status_code == 200
    assert _rejected_within(services, token, 30) <= 30


def test_rate_limit_headers_and_429(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    orch = start_orchestrator_process(RATE_LIMIT_GENERAL_PER_MINUTE="3")
    token = services.user_token("viewer")
    statuses = []
    for _ in range(4):
        resp = get_tasks(services, token, url=orch.url)
        statuses.append(resp.status_code)
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert "X-RateLimit-Remaining" in resp.headers
        assert "X-RateLimit-Reset" in resp.headers
    assert statuses == [200, 200, 200, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["success"] is False


def test_unreachable_control_center_is_503(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    orch = start_orchestrator_process(CONTROL_CENTER_URL="http://127.0.0.1:9")
    resp = get_tasks(services, services.admin_token, url=orch.url)
    assert resp.status_code == 503
    assert resp.json() == {"success": False, "error": "Control center unavailable, try again later"}


def test_ws_bad_token_closes_with_1008(services: Services) -> None:
    async def run(url: str) -> int | None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return ws.close_code

    assert asyncio.run(run(f"{services.ws_url}?token=garbage")) == 1008
    assert asyncio.run(run(services.ws_url)) == 1008


def test_rotated_signing_key_is_fetched_on_unknown_kid(services: Services) -> None:
    assert get_tasks(services, services.admin_token).status_code == 200  # JWKS now cached
    resp = requests.post(f"{services.cc_url}/keys/rotate", headers=services.headers(), timeout=10)
    assert resp.status_code == 200
    fresh = str(login(services.cc_url, "admin", "Admin-Test-Password-1")["token"])
    assert fresh.split(".")[0] != services.admin_token.split(".")[0]  # another kid
    assert get_tasks(services, fresh).status_code == 200
    assert get_tasks(services, services.admin_token).status_code == 200
