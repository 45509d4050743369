"""Security review: with MongoDB down the control center answers 503 (never a 500,
never a token): login, an authenticated call and logout all fail closed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.control_center import ADMIN_PASSWORD, ADMIN_USERNAME, TEST_ENV, auth_header
from tests.support.processes import ServiceProcess, service_env
from tests.support.stack import devstack

T = 30


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Any]:
    env_backup = {k: os.environ.pop(k) for k in ("MONGODB_URL", "REDIS_URL") if k in os.environ}
    servers = devstack.start_servers(tmp_path / "stack")
    try:
        yield servers
    finally:
        servers.stop()
        os.environ.update(env_backup)


def test_mongodb_down_fails_closed_with_503(own_stack: Any) -> None:
    cc = ServiceProcess("control_center", service_env(own_stack.env(), **TEST_ENV)).start()
    try:
        creds = {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
        resp = requests.post(f"{cc.url}/auth/login", json=creds, timeout=T)
        assert resp.status_code == 200, resp.text
        token = resp.json()["data"]["token"]
        own_stack.stop_mongo()
        for method, path, body in (
            ("POST", "/auth/login", creds),
            ("GET", "/auth/me", None),
            ("POST", "/auth/logout", None),
        ):
            resp = requests.request(
                method, f"{cc.url}{path}", json=body, headers=auth_header(token), timeout=T
            )
            assert resp.status_code == 503, (path, resp.text)
            assert resp.json() == {"success": False, "error": "Service temporarily unavailable"}
            assert resp.headers["Retry-After"]
            assert "token" not in resp.text
    finally:
        own_stack.start_mongo()
        assert cc.stop() == 0, cc.log_tail()
