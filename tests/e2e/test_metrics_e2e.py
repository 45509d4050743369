"""``GET /metrics`` of both running services, parsed with prometheus_client's own
parser: after a workflow the contract's task metrics have moved by exactly what
happened; HTTP metrics use route templates; scraping can be restricted by config."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Services
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[Samples, dict[str, str]]:
    resp = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(resp.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_orchestrator_metrics_after_a_workflow(services: Services) -> None:
    before, _ = scrape(services.orch_url)
    body = {"infra": "production", "settings": "config.k", "check_mode": False, "wait": True}
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json=body,
        headers=services.headers(),
        timeout=10,
    )
    assert resp.status_code in (200, 201, 202), resp.text
    task = services.wait_task(resp.json()["data"])
    assert task["status"] == "Completed"
    after, types = scrape(services.orch_url)

    assert types["orchestrator_tasks"] == "counter"
    assert types["orchestrator_task_duration_seconds"] == "histogram"
    completed = value(after, "orchestrator_tasks_total", status="completed")
    assert completed >= value(before, "orchestrator_tasks_total", status="completed") + 1
    count = value(after, "orchestrator_task_duration_seconds_count")
    assert count >= value(before, "orchestrator_task_duration_seconds_count") + 1
    # The contract's buckets exist, cumulative, and the short task fell into le=10.
    le10 = value(after, "orchestrator_task_duration_seconds_bucket", le="10.0")
    le30 = value(after, "orchestrator_task_duration_seconds_bucket", le="30.0")
    inf = value(after, "orchestrator_task_duration_seconds_bucket", le="+Inf")
    assert le10 >= value(before, "orchestrator_task_duration_seconds_bucket", le="10.0") + 1
    assert le10 <= le30 <= inf == count
    for name in (
        "orchestrator_queue_depth",
        "orchestrator_running_tasks",
        "orchestrator_lease_takeovers",
        "orchestrator_websocket_connections",
        "orchestrator_webhook_deliveries",
        "orchestrator_audit_deliveries",
    ):
        assert name in types, name
    # HTTP metrics by route template, never by raw path (a task id is not a label).
    route = value(
        after,
        "http_requests_total",
        service="orchestrator",
        method="GET",
        route="/tasks/{id}",
        status="200",
    )
    assert route >= 1
    assert not any(task["id"] in str(labels) for (_, labels) in after)


def test_control_center_metrics(services: Services) -> None:
    samples, types = scrape(services.cc_url)
    assert types["control_center_login_attempts"] == "counter"
    assert value(samples, "control_center_login_attempts_total", result="success") >= 1
    assert types["http_requests"] == "counter"
    assert types["http_request_duration_seconds"] == "histogram"


def test_scrape_can_require_a_token(
    start_orchestrator_process: Callable[..., ServiceProcess],
) -> None:
    orch = start_orchestrator_process(METRICS_TOKEN="scrape-token-123")
    denied = requests.get(f"{orch.url}/metrics", timeout=10)
    assert denied.status_code == 401
    assert denied.json()["success"] is False
    wrong = requests.get(
        f"{orch.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 401
    scrape(orch.url, {"Authorization": "Bearer scrape-token-123"})
