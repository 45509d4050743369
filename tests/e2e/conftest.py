"""E2E fixtures: the stack (Redis + MongoDB-compatible server), the control center
and the orchestrator as real processes, the simulator as ``PROVISIONING_CLI``.

Use in any e2e test (batches, webhooks, clients...)::

    def test_something(services: Services) -> None:
        r = requests.post(f"{services.orch_url}/workflows/servers/create",
                          json={...}, headers=services.headers())
        task = services.wait_task(r.json()["data"])          # polls until final
        viewer = services.user_token("viewer")               # a fresh viewer user

- ``services`` (session scope, shared by every e2e test of a worker): ``cc_url``,
  ``orch_url``, ``ws_url`` (``ws://.../ws``), ``admin_token``, ``headers(token=None)``,
  ``user_token(role)``, ``wait_task(id)``, ``stack_env``, ``orch_env`` (what the
  orchestrator was started with), ``cc`` / ``orch`` (:class:`ServiceProcess`).
- ``start_orchestrator_process(**env)`` (function scope): start another orchestrator
  replica (same database and control center by default; env overrides anything);
  stopped at the end of the test. Use it for tests that kill or restart a replica.

Test-friendly settings: fast engine timings, simulator duration 0.2 s, rate limits
raised to 10000/min (tests of the limits pass their own env to a fresh replica)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    orchestrator_env,
    start_control_center,
    user_token,
)
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess

FINAL = ("Completed", "Failed", "Cancelled")


@dataclass
class Services:
    cc: ServiceProcess
    orch: ServiceProcess
    admin_token: str
    stack_env: dict[str, str]
    orch_env: dict[str, str]
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def cc_url(self) -> str:
        return self.cc.url

    @property
    def orch_url(self) -> str:
        return self.orch.url

    @property
    def ws_url(self) -> str:
        return self.orch.url.replace("http://", "ws://") + "/ws"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def user_token(self, role: str) -> str:
        """An access token of a fresh user with ``role`` (viewer, operator, auditor, admin)."""
        return user_token(self.cc_url, self.admin_token, role)

    def wait_task(
        self, task_id: str, *, url: str | None = None, timeout: float = 30, token: str | None = None
    ) -> dict[str, Any]:
        """Poll ``GET /tasks/{id}`` until the task is final; returns its document."""
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = requests.get(
                f"{url or self.orch_url}/tasks/{task_id}", headers=self.headers(token), timeout=10
            )
            if resp.status_code == 200:
                doc = resp.json()["data"]
                if doc["status"] in FINAL:
                    return doc
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} not final after {timeout}s: {doc}")


E2E_ORCH_ENV = {
    "RATE_LIMIT_GENERAL_PER_MINUTE": "10000",
    "RATE_LIMIT_BATCH_PER_MINUTE": "10000",
    "AUTH_FAILURES_PER_MINUTE": "10000",
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def services(stack: Any) -> Iterator[Services]:
    stack_env = stack.env()
    cc = start_control_center(stack_env)
    orch: ServiceProcess | None = None
    try:
        orch_env = {
            **orchestrator_env(cc.url),
            **E2E_ORCH_ENV,
            "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
        }
        orch = start_orchestrator(stack_env, **orch_env)
        token = str(login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
        yield Services(cc=cc, orch=orch, admin_token=token, stack_env=stack_env, orch_env=orch_env)
    finally:
        if orch is not None:
            orch.stop()
        cc.stop()


@pytest.fixture
def start_orchestrator_process(services: Services) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        proc = start_orchestrator(services.stack_env, **{**services.orch_env, **env})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
