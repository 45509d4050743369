"""Both services as real processes: liveness, readiness that really checks the
database (503 while it is down, back to 200 when it returns), the envelope on
unknown routes, and `devstack.py run` (what `make run` calls) stopping cleanly."""

from __future__ import annotations

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

from tests.support.processes import ServiceProcess, service_env
from tests.support.stack import ROOT, devstack

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Any]:
    env_backup = {k: os.environ.pop(k) for k in ("MONGODB_URL", "REDIS_URL") if k in os.environ}
    servers = devstack.start_servers(tmp_path / "stack")
    try:
        yield servers
    finally:
        servers.stop()
        os.environ.update(env_backup)


def test_health_ready_and_recovery(own_stack: Any) -> None:
    env = service_env(
        own_stack.env(), BCRYPT_ROUNDS="4", BOOTSTRAP_ADMIN_PASSWORD="Bootstrap-Pass-1"
    )
    cc = ServiceProcess("control_center", env).start()
    orch = ServiceProcess(
        "orchestrator", service_env(own_stack.env(), CONTROL_CENTER_URL=cc.url)
    ).start()
    try:
        assert requests.get(f"{orch.url}/health", timeout=5).json() == {
            "success": True,
            "data": "Orchestrator is healthy",
        }
        assert requests.get(f"{cc.url}/health", timeout=5).json() == {
            "success": True,
            "data": "Control center is healthy",
        }
        for svc in (cc, orch):
            resp = requests.get(f"{svc.url}/ready", timeout=10)
            assert resp.status_code == 200, resp.text
        resp = requests.get(f"{cc.url}/no/such/route", timeout=5)
        assert resp.status_code == 404
        assert resp.json() == {"success": False, "error": "Not found"}
        assert resp.headers["X-Request-ID"]
        # The orchestrator authenticates before routing: an anonymous caller learns
        # nothing about which routes exist.
        resp = requests.get(f"{orch.url}/no/such/route", timeout=5)
        assert resp.status_code == 401
        assert resp.json()["success"] is False

        own_stack.stop_mongo()
        for svc in (cc, orch):
            resp = requests.get(f"{svc.url}/ready", timeout=15)
            assert resp.status_code == 503
            body = resp.json()
            assert body["success"] is False
            assert "storage" in body["error"]
            # Liveness does not depend on the database.
            assert requests.get(f"{svc.url}/health", timeout=5).status_code == 200

        own_stack.start_mongo()
        for svc in (cc, orch):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if requests.get(f"{svc.url}/ready", timeout=15).status_code == 200:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"{svc.module} did not become ready again")
    finally:
        assert orch.stop() == 0, orch.log_tail()
        assert cc.stop() == 0, cc.log_tail()


def _children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            child = int(entry.name)
            found |= {child} | _children_of(child)
    return found


def test_make_run_serves_and_stops_without_orphans(tmp_path: Path) -> None:
    cc_port, orch_port = devstack.free_port(), devstack.free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URL", "REDIS_URL", "PORT"}}
    env.update(
        CONTROL_CENTER_PORT=str(cc_port),
        ORCHESTRATOR_PORT=str(orch_port),
        BCRYPT_ROUNDS="4",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy/local/devstack.py"), "run", "--dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        healthy: set[int] = set()
        while time.monotonic() < deadline and len(healthy) < 2:
            for port in (cc_port, orch_port):
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                        healthy.add(port)
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        assert healthy == {cc_port, orch_port}
        # The operator console, built by the setup, is served with its CSP.
        console = requests.get(f"http://127.0.0.1:{orch_port}/ui/", timeout=5)
        assert console.status_code == 200, console.text[:500]
        assert "script-src 'self'" in console.headers["Content-Security-Policy"]
        descendants = _children_of(proc.pid)
        assert len(descendants) >= 4  # redis, database, two services
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert f"http://localhost:{orch_port}/ui/" in out.decode(errors="replace")  # its URL
    time.sleep(0.5)
    alive = [pid for pid in descendants if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"left behind: {alive}"
