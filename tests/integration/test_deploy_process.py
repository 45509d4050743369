"""The services as the images run them: under the gateway's path prefix, probed by the
images' own HEALTHCHECK command, and stopped by SIGTERM within the grace period."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import LOG_DIR, service_env
from tests.support.stack import ROOT, devstack

pytestmark = pytest.mark.e2e

SERVICES = {
    "control_center": ("/api/control-center", ROOT / "deploy/docker/control-center.Dockerfile"),
    "orchestrator": ("/api/orchestrator", ROOT / "deploy/docker/orchestrator.Dockerfile"),
}
GRACE_SECONDS = 5
SECRET = "deploy-test-service-secret-0123456789"


def healthcheck_argv(dockerfile: Path) -> list[str]:
    """The exec-form HEALTHCHECK of the image, with this interpreter for ``python``."""
    line = next(ln for ln in dockerfile.read_text().splitlines() if ln.strip().startswith("CMD ["))
    argv: list[str] = json.loads(line.strip()[len("CMD ") :])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


class Prefixed:
    """A service process started with ``PATH_PREFIX`` (``ServiceProcess`` polls /health)."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.port = devstack.free_port()
        self.env = {**env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = LOG_DIR / f"deploy-{module}-{self.port}-{os.getpid()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, prefix: str, timeout: float = 30.0) -> None:
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}{prefix}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} did not become healthy:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def started(stack: Any) -> Iterator[list[Prefixed]]:
    processes: list[Prefixed] = []
    yield processes
    for proc in processes:
        proc.stop()


def env_for(stack: Any, module: str, prefix: str) -> dict[str, str]:
    db = f"deploy_{module}_{os.getpid()}_{time.monotonic_ns()}"
    return service_env(
        stack.env(),
        PATH_PREFIX=prefix,
        MONGODB_DATABASE=db,
        SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        BCRYPT_ROUNDS="4",
        SERVICE_CLIENTS=f"orchestrator:{SECRET}",
        SERVICE_CLIENT_SECRET=SECRET,
        CONTROL_CENTER_URL="http://127.0.0.1:9",
        BOOTSTRAP_ADMIN_PASSWORD="deploy-test-admin-password",
        # The per-IP login budget lives in the Redis other tests of this worker share.
        RATE_LIMIT_AUTH_PER_MINUTE="1000",
    )


@pytest.mark.parametrize("module", sorted(SERVICES))
def test_service_under_the_prefix_healthchecked_and_drained_by_sigterm(
    stack: Any, started: list[Prefixed], module: str
) -> None:
    prefix, dockerfile = SERVICES[module]
    service = Prefixed(module, env_for(stack, module, prefix))
    started.append(service)
    service.start(prefix)

    resp = requests.get(f"{service.url}{prefix}/health", timeout=5)
    assert resp.status_code == 200
    assert resp.json()["success"] is True
    resp = requests.get(f"{service.url}/health", timeout=5)
    assert resp.status_code == 404
    assert resp.json() == {"success": False, "error": "Not found"}

    # The image's HEALTHCHECK, run as Docker would (env of the container).
    check = subprocess.run(
        healthcheck_argv(dockerfile), env=service.env, capture_output=True, timeout=10, check=False
    )
    assert check.returncode == 0, check.stderr
    broken = {**service.env, "PATH_PREFIX": "/elsewhere"}
    check = subprocess.run(
        healthcheck_argv(dockerfile), env=broken, capture_output=True, timeout=10, check=False
    )
    assert check.returncode != 0, "the healthcheck fails when the service does not answer"

    assert service.proc is not None
    started_at = time.monotonic()
    os.killpg(service.proc.pid, signal.SIGTERM)
    code = service.proc.wait(GRACE_SECONDS + 10)
    assert code == 0, service.tail()
    assert time.monotonic() - started_at < GRACE_SECONDS + 5


def test_the_gateway_layout_end_to_end(stack: Any, started: list[Prefixed]) -> None:
    """Both services under their Ingress prefixes; the orchestrator reaches the control
    center through a CONTROL_CENTER_URL with a path, as in deploy/k8s."""
    cc_prefix, orch_prefix = SERVICES["control_center"][0], SERVICES["orchestrator"][0]
    cc = Prefixed("control_center", env_for(stack, "control_center", cc_prefix))
    started.append(cc)
    cc.start(cc_prefix)
    orch_env = {
        **env_for(stack, "orchestrator", orch_prefix),
        "CONTROL_CENTER_URL": f"{cc.url}{cc_prefix}",
        "PROVISIONING_CLI": str(ROOT / "deploy/local/provisioning_simulator.py"),
        "PROVISIONING_SIM_DURATION": "0",
        "ENGINE_POLL_SECONDS": "0.1",
    }
    orch = Prefixed("orchestrator", orch_env)
    started.append(orch)
    orch.start(orch_prefix)

    login = requests.post(
        f"{cc.url}{cc_prefix}/auth/login",
        json={"username": "admin", "password": "deploy-test-admin-password"},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    submitted = requests.post(
        f"{orch.url}{orch_prefix}/workflows/servers/create",
        json={"infra": "gateway", "settings": "c.k"},
        headers=headers,
        timeout=10,
    )
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["data"]
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline and status != "Completed":
        resp = requests.get(f"{orch.url}{orch_prefix}/tasks/{task_id}", headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
        status = resp.json()["data"]["status"]
        time.sleep(0.1)
    assert status == "Completed"
    requests.post(
        f"{orch.url}{orch_prefix}/workflows/servers/create",
        json={"infra": "gateway-2", "settings": "c.k"},
        headers=headers,
        timeout=10,
    ).raise_for_status()
    listed = requests.get(
        f"{orch.url}{orch_prefix}/tasks", params={"limit": "1"}, headers=headers, timeout=10
    )
    assert listed.status_code == 200
    # Links point at the public path; rate-limit headers survive the prefix mount.
    assert listed.headers["Link"].startswith(f"<{orch_prefix}/tasks?")
    assert "X-RateLimit-Limit" in listed.headers
    # Unprefixed paths are not served: nothing bypasses the gateway's routing.
    assert requests.get(f"{orch.url}/tasks", headers=headers, timeout=10).status_code == 404
