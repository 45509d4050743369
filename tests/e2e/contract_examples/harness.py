"""Harness of the client e2e tests: runs the contract's SDK examples (Python with
requests, JavaScript with axios from the npm registry) against the live services of
the shared e2e fixture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    ORCHESTRATOR_CLIENT_ID,
    ORCHESTRATOR_CLIENT_SECRET,
)
from tests.support.stack import ROOT

HERE = Path(__file__).resolve().parent
CONTRACT = ROOT.parent / "shared" / "seed" / "REST_API_REFERENCE.txt"
_NPM_LOCK = threading.Lock()


def ensure_axios() -> None:
    """``npm ci`` from the committed lockfile when ``node_modules`` is missing."""
    with _NPM_LOCK:
        if (HERE / "node_modules" / "axios" / "package.json").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required for the JavaScript contract example")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=300,
        )


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if proc.returncode != 0:
        raise AssertionError(f"example failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["stdout"] = proc.stdout
    return result


def run_python_example(base_url: str, token: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "run_python_example.py"), base_url, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return _result(proc)


def run_javascript_example(base_url: str, token: str) -> dict[str, Any]:
    ensure_axios()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required for the JavaScript contract example")
    proc = subprocess.run(
        [node, str(HERE / "run_javascript_example.js"), base_url, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return _result(proc)


def contract_section(start: str, end: str) -> str:
    """The contract's text between two headings (indentation is lost in the contract)."""
    text = CONTRACT.read_text()
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


@dataclass
class LiveServices:
    orchestrator_url: str
    control_center_url: str
    admin_username: str
    admin_password: str
    service_client_id: str
    service_client_secret: str


def from_services(services: Any) -> LiveServices:
    """The shared e2e ``services`` fixture (tests/e2e/conftest.py) seen as URLs and
    the credentials the clients log in with."""
    return LiveServices(
        orchestrator_url=services.orch_url,
        control_center_url=services.cc_url,
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        service_client_id=ORCHESTRATOR_CLIENT_ID,
        service_client_secret=ORCHESTRATOR_CLIENT_SECRET,
    )
