"""The control center as a real process for tests of every team.

Constants (test-only values, never used outside tests):

- ``ADMIN_USERNAME`` / ``ADMIN_PASSWORD``: the bootstrap admin the helper creates
  (``BOOTSTRAP_ADMIN_PASSWORD``).
- ``ORCHESTRATOR_CLIENT_ID`` / ``ORCHESTRATOR_CLIENT_SECRET``: the orchestrator's
  service client (``SERVICE_CLIENTS`` on the control center; give the orchestrator
  ``SERVICE_CLIENT_ID`` / ``SERVICE_CLIENT_SECRET`` / ``CONTROL_CENTER_URL``, see
  :func:`orchestrator_env`).
- ``TEST_ENV``: the defaults — bcrypt cost 4, a fresh database per start, generous
  rate limits (tests that exercise the limits pass their own).

Usage::

    cc = start_control_center(stack.env())
    try:
        data = login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)
        token = data["token"]
        svc = service_token(cc.url, ORCHESTRATOR_CLIENT_ID, ORCHESTRATOR_CLIENT_SECRET)
    finally:
        cc.stop()
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import requests

from .processes import ServiceProcess, service_env

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "Admin-Test-Password-1"
ORCHESTRATOR_CLIENT_ID = "orchestrator"
ORCHESTRATOR_CLIENT_SECRET = "orchestrator-test-secret-0123456789"
TEST_ENV: dict[str, str] = {
    "BCRYPT_ROUNDS": "4",
    "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "SERVICE_CLIENTS": f"{ORCHESTRATOR_CLIENT_ID}:{ORCHESTRATOR_CLIENT_SECRET}",
    "RATE_LIMIT_AUTH_PER_MINUTE": "100000",
    "RATE_LIMIT_GENERAL_PER_MINUTE": "10000",
    "LOG_LEVEL": "WARNING",
}
TIMEOUT = 10


def start_control_center(stack_env: Mapping[str, str], **env_overrides: str) -> ServiceProcess:
    """Start ``python -m control_center`` on a free port with :data:`TEST_ENV` and a
    fresh database (unless ``MONGODB_DATABASE`` is overridden); returns once healthy.
    The caller stops it (``.stop()``)."""
    overrides = {**TEST_ENV, "MONGODB_DATABASE": f"cc_{uuid.uuid4().hex[:12]}", **env_overrides}
    return ServiceProcess("control_center", service_env(stack_env, **overrides)).start()


def orchestrator_env(cc_url: str) -> dict[str, str]:
    """What the orchestrator needs to talk to a control center started here."""
    return {
        "CONTROL_CENTER_URL": cc_url,
        "SERVICE_CLIENT_ID": ORCHESTRATOR_CLIENT_ID,
        "SERVICE_CLIENT_SECRET": ORCHESTRATOR_CLIENT_SECRET,
    }


def _data(resp: requests.Response) -> Any:
    if resp.status_code >= 400:
        raise AssertionError(
            f"{resp.request.method} {resp.url} -> {resp.status_code}: {resp.text[:500]}"
        )
    return resp.json()["data"]


def login(
    base_url: str, username: str, password: str, mfa_code: str | None = None
) -> dict[str, Any]:
    """``data`` of ``POST /auth/login``: token, expires_at, user, refresh_token, ..."""
    body: dict[str, Any] = {"username": username, "password": password}
    if mfa_code is not None:
        body["mfa_code"] = mfa_code
    result: dict[str, Any] = _data(
        requests.post(f"{base_url}/auth/login", json=body, timeout=TIMEOUT)
    )
    return result


def service_token(
    base_url: str, client_id: str = ORCHESTRATOR_CLIENT_ID, secret: str = ORCHESTRATOR_CLIENT_SECRET
) -> str:
    """A ``typ=service`` token from ``POST /auth/token``."""
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    data = _data(requests.post(f"{base_url}/auth/token", json=body, timeout=TIMEOUT))
    return str(data["access_token"])


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_user(
    base_url: str,
    admin_token: str,
    username: str,
    roles: list[str],
    password: str = "User-Test-Password-1",
    email: str | None = None,
) -> dict[str, Any]:
    """Create a user as admin; returns the created user's data (with ``id``)."""
    body = {
        "username": username,
        "email": email or f"{username}@example.com",
        "password": password,
        "roles": roles,
        "enabled": True,
    }
    result: dict[str, Any] = _data(
        requests.post(
            f"{base_url}/users", json=body, headers=auth_header(admin_token), timeout=TIMEOUT
        )
    )
    return result


def user_token(
    base_url: str, admin_token: str, role: str, password: str = "User-Test-Password-1"
) -> str:
    """Create a fresh user with ``role`` and return an access token for it."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    create_user(base_url, admin_token, name, [role], password)
    return str(login(base_url, name, password)["token"])
