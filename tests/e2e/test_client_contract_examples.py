"""The contract's SDK examples, unchanged, against the live services: the Python one
(requests) and the JavaScript one (axios from the npm registry, run with node), each
with a token obtained by login; a task id must come back and its status be readable."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.e2e.contract_examples import harness

pytestmark = pytest.mark.e2e

TASK_STATUSES = {"Pending", "Running", "Completed", "Failed", "Cancelled"}


@pytest.fixture(scope="module")
def live(services: Any) -> harness.LiveServices:
    return harness.from_services(services)


@pytest.fixture(scope="module")
def token(live: harness.LiveServices) -> str:
    resp = requests.post(
        f"{live.control_center_url}/auth/login",
        timeout=30,
        json={"username": live.admin_username, "password": live.admin_password},
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]["token"])


def _check(result: dict[str, Any]) -> None:
    submitted, status = result["result"], result["status"]
    assert submitted["success"] is True
    task_id = submitted["data"]
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id)
    assert f"Task ID: {task_id}" in result["stdout"]
    assert status["success"] is True
    assert status["data"]["id"] == task_id
    assert status["data"]["status"] in TASK_STATUSES
    assert status["data"]["name"] == "create_servers"


def test_python_example_against_live_services(live: harness.LiveServices, token: str) -> None:
    _check(harness.run_python_example(live.orchestrator_url, token))


def test_javascript_example_against_live_services(live: harness.LiveServices, token: str) -> None:
    _check(harness.run_javascript_example(live.orchestrator_url, token))


@pytest.mark.skipif(not harness.CONTRACT.exists(), reason="contract not beside the repository")
@pytest.mark.parametrize(
    ("file", "start", "end"),
    [
        ("python_sdk_example.py", "Python SDK Example\n", "JavaScript/Node.js SDK Example"),
        ("javascript_sdk_example.js", "JavaScript/Node.js SDK Example\n", "Webhook Integration"),
    ],
)
def test_examples_are_the_contracts_text(file: str, start: str, end: str) -> None:
    """Same lines as the contract, which prints them without indentation."""
    ours = (harness.HERE / file).read_text().splitlines()
    assert [line.strip() for line in ours] == harness.contract_section(start, end).splitlines()
