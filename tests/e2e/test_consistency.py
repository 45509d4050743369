"""Cross-cutting behaviour that must be the same on both services, over HTTP against
the running processes: CORS from configuration, version negotiation, and one
request id across the orchestrator's calls to the control center."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import requests

from tests.e2e.conftest import Services
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    start_control_center,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e
ORIGIN = "https://console.example.com"


def _preflight(url: str, origin: str) -> requests.Response:
    return requests.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
        timeout=10,
    )


def test_cors_follows_configuration_on_both_services(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    cc = start_control_center(services.stack_env, CORS_ORIGINS=ORIGIN)
    try:
        orch = start_orchestrator_process(CORS_ORIGINS=ORIGIN, CONTROL_CENTER_URL=cc.url)
        token = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        for url in (f"{cc.url}/users", f"{orch.url}/tasks"):
            pre = _preflight(url, ORIGIN)
            assert pre.status_code == 200, (url, pre.status_code, pre.text)
            assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "AUTHORIZATION" in pre.headers["Access-Control-Allow-Headers"].upper()

            resp = requests.get(
                url, headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"}, timeout=10
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            exposed = resp.headers["Access-Control-Expose-Headers"]
            assert "X-Total-Count" in exposed
            assert "X-Request-ID" in exposed

            other = requests.get(
                url,
                headers={"Origin": "https://evil.example", "Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        cc.stop()

    # Not configured (the default): no CORS headers at all.
    resp = requests.get(
        f"{services.orch_url}/tasks", headers={**services.headers(), "Origin": ORIGIN}, timeout=10
    )
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_version_negotiation_is_the_same_on_both(services: Services) -> None:
    for url in (f"{services.cc_url}/auth/me", f"{services.orch_url}/tasks"):
        ok = requests.get(
            url,
            headers={**services.headers(), "Accept": "application/vnd.provisioning.v1+json"},
            timeout=10,
        )
        assert ok.status_code == 200, ok.text
        bad = requests.get(
            url,
            headers={**services.headers(), "Accept": "application/vnd.provisioning.v2+json"},
            timeout=10,
        )
        assert bad.status_code == 406
        assert bad.json()["success"] is False


def test_request_id_flows_to_the_control_center(
    services: Services, start_orchestrator_process: Callable[..., ServiceProcess]
) -> None:
    # A control center that logs its access lines, and a fresh orchestrator replica
    # (empty introspection cache): the request must ask the control center, and that
    # call carries the caller's request id.
    cc = start_control_center(services.stack_env, LOG_LEVEL="INFO")
    try:
        orch = start_orchestrator_process(CONTROL_CENTER_URL=cc.url)
        token = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"]
        request_id = f"trace-{uuid.uuid4().hex}"
        resp = requests.get(
            f"{orch.url}/tasks",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-Request-ID"] == request_id
        assert cc.log_path is not None
        lines: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not lines:
            lines = [
                line
                for line in cc.log_path.read_text().splitlines()
                if request_id in line and "/auth/introspect" in line
            ]
            time.sleep(0.1)
        assert lines, "the control center never logged the orchestrator's request id"
    finally:
        cc.stop()
