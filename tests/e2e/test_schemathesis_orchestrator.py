"""schemathesis against the orchestrator's own /openapi.json (tests/support/fuzz.py),
with a control center and an orchestrator of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import E2E_ORCH_ENV
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    orchestrator_env,
    start_control_center,
)
from tests.support.fuzz import assert_clean, run_schemathesis
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def services(stack: Any) -> Iterator[dict[str, ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        cc = start_control_center(stack.env())
        started.append(cc)
        orch = start_orchestrator(
            stack.env(),
            **orchestrator_env(cc.url),
            **E2E_ORCH_ENV,
            MONGODB_DATABASE=f"orch_{uuid.uuid4().hex[:12]}",
        )
        started.append(orch)
        yield {"cc": cc, "orch": orch}
    finally:
        for proc in reversed(started):
            proc.stop()


def test_schemathesis_orchestrator(services: dict[str, ServiceProcess]) -> None:
    token = str(login(services["cc"].url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
    assert_clean(run_schemathesis("orchestrator", services["orch"].url, token))
