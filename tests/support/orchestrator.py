"""Starting the orchestrator as a process for e2e tests, and small helpers."""

from __future__ import annotations

from collections.abc import Mapping

from .processes import ServiceProcess, service_env
from .stack import ROOT

SIMULATOR = ROOT / "deploy/local/provisioning_simulator.py"


def start_orchestrator(stack_env: Mapping[str, str], **env: str) -> ServiceProcess:
    """An orchestrator process with fast engine timings and the simulator as CLI;
    ``env`` overrides anything (``CONTROL_CENTER_URL``, ``SERVICE_CLIENT_SECRET``...)."""
    defaults = {
        "PROVISIONING_CLI": str(SIMULATOR),
        "PROVISIONING_SIM_DURATION": "0.2",
        "ENGINE_POLL_SECONDS": "0.1",
        "ENGINE_LEASE_SECONDS": "10",
        "ENGINE_HEARTBEAT_SECONDS": "1",
        "TASK_KILL_GRACE_SECONDS": "1",
        "ENGINE_SHUTDOWN_GRACE_SECONDS": "1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "WS_HEARTBEAT_SECONDS": "2",
    }
    return ServiceProcess("orchestrator", service_env(stack_env, **{**defaults, **env})).start()
