"""Load tests reuse the e2e fixtures: the services run as real processes."""

from tests.e2e.conftest import services, start_orchestrator_process

__all__ = ["services", "start_orchestrator_process"]
