"""schemathesis against the control center's own /openapi.json (tests/support/fuzz.py),
on a control center of its own: the random policies and users it creates affect no
other test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    login,
    service_token,
    start_control_center,
)
from tests.support.fuzz import assert_clean, run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def control_center(stack: Any) -> Iterator[ServiceProcess]:
    cc = start_control_center(stack.env())
    try:
        yield cc
    finally:
        cc.stop()


def test_schemathesis_control_center(control_center: ServiceProcess) -> None:
    token = str(login(control_center.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
    assert_clean(
        run_schemathesis(
            "control_center", control_center.url, token, service_token(control_center.url)
        )
    )
