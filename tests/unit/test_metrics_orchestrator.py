"""The orchestrator's metrics: the contract's names, labels and buckets, counters as
counters, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import metrics


def _families() -> dict[str, Metric]:
    text = generate_latest(REGISTRY).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(name: str, labels: dict[str, str]) -> float:
    text = generate_latest(REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_contract_names_types_and_buckets() -> None:
    families = _families()
    tasks = families["orchestrator_tasks"]
    assert tasks.type == "counter"
    duration = families["orchestrator_task_duration_seconds"]
    assert duration.type == "histogram"
    bounds = {s.labels["le"] for s in duration.samples if s.name.endswith("_bucket")}
    assert {"10.0", "30.0", "+Inf"} <= bounds
    for name, kind in [
        ("orchestrator_queue_depth", "gauge"),
        ("orchestrator_running_tasks", "gauge"),
        ("orchestrator_lease_takeovers", "counter"),
        ("orchestrator_websocket_connections", "gauge"),
        ("orchestrator_webhook_deliveries", "counter"),
        ("orchestrator_audit_deliveries", "counter"),
    ]:
        assert families[name].type == kind, name


def test_values_move() -> None:
    before = _sample("orchestrator_tasks_total", {"status": "completed"})
    buckets_before = _sample("orchestrator_task_duration_seconds_bucket", {"le": "10.0"})
    metrics.record_task_final("Completed", 7.5)
    assert _sample("orchestrator_tasks_total", {"status": "completed"}) == before + 1
    assert (
        _sample("orchestrator_task_duration_seconds_bucket", {"le": "10.0"}) == buckets_before + 1
    )
    webhook = _sample("orchestrator_webhook_deliveries_total", {"outcome": "retrying"})
    metrics.WEBHOOK_DELIVERIES.labels("retrying").inc()
    assert _sample("orchestrator_webhook_deliveries_total", {"outcome": "retrying"}) == webhook + 1


def test_every_label_present_from_the_start() -> None:
    text = generate_latest(REGISTRY).decode()
    for status in ("completed", "failed", "cancelled"):
        assert f'orchestrator_tasks_total{{status="{status}"}}' in text
    for outcome in ("success", "retrying", "failed"):
        assert f'orchestrator_webhook_deliveries_total{{outcome="{outcome}"}}' in text
