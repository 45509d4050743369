"""The e2e fixtures (``services``, ``start_orchestrator_process``) for the security
tests that run against the real stack."""

from tests.e2e.conftest import services, start_orchestrator_process

__all__ = ["services", "start_orchestrator_process"]
