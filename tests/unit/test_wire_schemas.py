"""One wire definition: the response schema a route declares (``@api_doc(response=...)``)
both feeds the served OpenAPI document and produces the response (the route answers
its dump). For every such route of the slices below, the properties the served
document gives the envelope's ``data`` are exactly the keys the schema's dump of a
representative document has, nested objects included, so the two cannot drift."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from marshmallow import Schema

from control_center.app import create_app as create_control_center
from control_center.policies.model import DEFAULT_POLICIES
from control_center.settings import Settings as CCSettings
from orchestrator.app import create_app as create_orchestrator
from orchestrator.batches.model import Operation
from orchestrator.batches.planning import new_batch, plan
from orchestrator.batches.schemas import BatchSubmissionSchema
from orchestrator.rollback.ledger import ledger_entry
from orchestrator.settings import Settings as OrchSettings
from orchestrator.state import model as state_model
from orchestrator.webhooks.service import _with_attempt_log
from provisioning_common.envelope import dumps
from provisioning_common.openapi import get_api_doc
from provisioning_common.policy import PolicyEngine, policy_from_document
from provisioning_common.validation import validate
from tests.support.contract import CONTRACT_BATCH

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)

# The slices whose responses are dumps of their declared schemas.
SLICES = (
    "orchestrator.tasks.",
    "orchestrator.workflows.",
    "orchestrator.batches.",
    "orchestrator.rollback.",
    "orchestrator.state.",
    "orchestrator.webhooks.",
    "control_center.users.",
    "control_center.policies.",
)


def _task() -> dict[str, Any]:
    return {
        "_id": "5f0c5c4e-9a0b-4a8e-8a57-1b2c3d4e5f60",
        "name": "create_servers",
        "command": "/usr/local/provisioning servers create",
        "args": ["--infra", "production", "--wait"],
        "dependencies": [],
        "status": "Completed",
        "created_at": EARLIER,
        "started_at": EARLIER,
        "completed_at": NOW,
        "output": "Successfully created 3 servers",
        "error": None,
        "progress": 100.0,
        "current_step": None,
        "attempts": 1,
        "batch_id": "b-1",
        "operation_id": "upcloud_servers",
        "kind": "servers.create",
        "compensation": {"subcommand": ["servers", "delete"], "args": ["--name", "web-01"]},
        "metadata": {"purpose": "run", "owner": "alice"},  # stored, never shown
    }


def _attempt() -> dict[str, Any]:
    return {
        "_id": "5f0c5c4e-9a0b-4a8e-8a57-1b2c3d4e5f60:1",
        "task_id": "5f0c5c4e-9a0b-4a8e-8a57-1b2c3d4e5f60",
        "attempt": 1,
        "worker_id": "w-1",
        "status": "Failed",
        "started_at": EARLIER,
        "ended_at": NOW,
        "lease_expires_at": NOW,
        "exit_code": 1,
        "error": "boom",
    }


def _batch() -> dict[str, Any]:
    data = validate(BatchSubmissionSchema(), dict(CONTRACT_BATCH))
    ops = [Operation.from_dict(o) for o in data["operations"]]
    batch, _ = new_batch(data, ops, "b-1", "alice", EARLIER)
    batch["operations"][0]["results"] = {"summary": "2/2 tasks completed"}
    return {**batch, "status": "Running", "started_at": NOW}


def _plan() -> dict[str, Any]:
    return plan(validate(BatchSubmissionSchema(), dict(CONTRACT_BATCH)), "/bin/prov")


def _checkpoint() -> dict[str, Any]:
    return {
        "_id": "cp-1",
        "name": "before_major_update",
        "description": "Checkpoint before deploying v2.0.0",
        "created_at": EARLIER,
        "position": EARLIER,
        "operations_count": 25,
        "batches_count": 2,
        "size_bytes": 150 * 1024 * 1024,
        "last_restored_at": NOW,
    }


def _delivery() -> dict[str, Any]:
    item = {
        "_id": "evt-1:ep-1",
        "kind": "task.completed",
        "event_id": "evt-1",
        "endpoint_id": "ep-1",
        "url": "https://hooks.example.com/x",
        "status": "pending",
        "attempts": 1,
        "max_attempts": 8,
        "created_at": EARLIER,
        "updated_at": NOW,
        "next_attempt_at": NOW,
        "delivered_at": None,
        "last_status_code": 500,
        "last_error": "HTTP 500",
        "payload": {"body": "{}"},
        "seq": 1,
    }
    attempts = [
        {
            "_id": "evt-1:ep-1:0",
            "attempt": 1,
            "status": "failed",
            "started_at": EARLIER,
            "ended_at": NOW,
            "duration_ms": 12.5,
            "status_code": 500,
            "error": "HTTP 500",
        }
    ]
    return _with_attempt_log(item, attempts)


def _user() -> dict[str, Any]:
    return {
        "_id": "u-1",
        "username": "admin",
        "username_key": "admin",
        "email": "admin@example.com",
        "password_hash": "$2b$12$secret",
        "mfa_secret": "sealed",
        "roles": ["admin"],
        "enabled": True,
        "mfa_enabled": False,
        "created_at": EARLIER,
        "updated_at": NOW,
        "last_login": None,
        "revoked_before": 0,
    }


def _policy() -> dict[str, Any]:
    return {**DEFAULT_POLICIES[1], "enabled": True, "created_at": EARLIER, "updated_at": NOW}


def _decision() -> dict[str, Any]:
    doc = DEFAULT_POLICIES[0]
    engine = PolicyEngine([policy_from_document({**doc, "id": doc["_id"]})])
    user = {"id": "u-1", "username": "admin", "roles": ["admin"]}
    decision = engine.evaluate(user=user, action="read", resource="tasks:*", request={})
    return {**decision.to_dict(), "user": user}


# A representative document for each declared response schema (by class name).
SAMPLES: dict[str, Callable[[], Any]] = {
    "TaskView": _task,
    "AttemptView": _attempt,
    "BatchSubmittedOut": _batch,
    "BatchOut": _batch,
    "PlanOut": _plan,
    "ProgressOut": lambda: state_model.task_progress(
        {**_task(), "status": "Running", "current_step": "Installing"}, 60.0, NOW
    ),
    "SnapshotOut": lambda: state_model.task_snapshots(_task(), [_attempt()])[0],
    "MetricsOut": lambda: {
        "total_workflows": 150,
        "active_workflows": 5,
        "completed_workflows": 140,
        "failed_workflows": 4,
        "cancelled_workflows": 1,
        "system_load": {
            "cpu_usage": 45.2,
            "memory_usage": 2048.0,
            "memory_percent": 50.0,
            "disk_usage": 75.5,
        },
    },
    "HealthOut": lambda: {
        "overall_status": state_model.HEALTHY,
        "components": {"storage": state_model.HEALTHY},
        "last_check": NOW,
    },
    "StatisticsOut": lambda: {
        "total_workflows": 150,
        "active_snapshots": 25,
        "storage_usage": state_model.format_size(245 * 1024 * 1024),
        "storage_usage_bytes": 245 * 1024 * 1024,
        "average_workflow_duration": 300.0,
    },
    "CheckpointOut": _checkpoint,
    "CheckpointDetailOut": _checkpoint,
    "LedgerEntryOut": lambda: ledger_entry(_task(), "/bin/prov"),
    "RollbackResultOut": lambda: {
        "rollback_id": "rb-1",
        "success": True,
        "operations_executed": 25,
        "operations_failed": 0,
        "duration": 45.5,
    },
    "RollbackStatisticsOut": lambda: {
        "total_checkpoints": 10,
        "total_rollbacks": 3,
        "success_rate": 100.0,
        "average_rollback_time": 30.5,
    },
    "DeliveryView": _delivery,
    "UserOut": _user,
    "UserCreatedOut": _user,
    "PolicyOut": _policy,
    "PolicyCreatedOut": _policy,
    "DecisionOut": _decision,
}

Route = tuple[str, str, str, type[Schema], bool]  # service, method, path, schema, many


def _apps() -> dict[str, web.Application]:
    return {
        "orchestrator": create_orchestrator(OrchSettings.from_env({})),
        "control_center": create_control_center(CCSettings.from_env({})),
    }


async def _served_spec(app: web.Application) -> dict[str, Any]:
    """``GET /openapi.json`` through the app's own handler (nothing is started)."""
    request = make_mocked_request("GET", "/openapi.json", app=app)
    match = await app.router.resolve(request)
    response = await match.handler(request)
    assert isinstance(response, web.Response)
    assert response.text is not None
    spec: dict[str, Any] = json.loads(response.text)
    return spec


def _declared(apps: dict[str, web.Application]) -> Iterator[Route]:
    for service, app in apps.items():
        for route in app.router.routes():
            doc = get_api_doc(route.handler)
            module = getattr(route.handler, "__module__", "")
            if route.method == "HEAD" or doc is None or doc.response is None:
                continue  # HEAD: aiohttp's companion of each GET
            if not module.startswith(SLICES):
                continue
            path = route.resource.canonical if route.resource is not None else ""
            yield service, route.method, path, doc.response, doc.many


ROUTES = sorted(_declared(_apps()), key=lambda r: (r[0], r[2], r[1]))


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and single-entry ``allOf``/``anyOf``/``oneOf`` wrappers."""
    while True:
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            continue
        for key in ("allOf", "anyOf", "oneOf"):
            options = [s for s in schema.get(key) or [] if "$ref" in s or "properties" in s]
            if len(options) == 1:
                schema = options[0]
                break
        else:
            return schema


def _data_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = spec["paths"][path][method.lower()]
    status = min(code for code in operation["responses"] if code.startswith("2"))
    envelope = operation["responses"][status]["content"]["application/json"]["schema"]
    return _resolve(spec, envelope["properties"]["data"])


def _compare(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Where the documented properties and the dumped keys differ (recursively)."""
    schema = _resolve(spec, schema)
    if schema.get("type") == "array" and isinstance(value, list):
        items = schema.get("items") or {}
        return [p for i, v in enumerate(value) for p in _compare(spec, items, v, f"{where}[{i}]")]
    properties = schema.get("properties")
    if not properties or not isinstance(value, dict):
        return []
    problems = []
    if set(properties) != set(value):
        problems.append(
            f"{where}: documented {sorted(properties)}, dumped {sorted(value)}"
            f" (only documented: {sorted(set(properties) - set(value))},"
            f" only dumped: {sorted(set(value) - set(properties))})"
        )
    for key in set(properties) & set(value):
        problems.extend(_compare(spec, properties[key], value[key], f"{where}.{key}"))
    return problems


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    return {service: asyncio.run(_served_spec(app)) for service, app in _apps().items()}


def test_every_slice_route_with_a_response_schema_is_covered() -> None:
    assert len(ROUTES) >= 20
    missing = sorted({schema.__name__ for *_, schema, _ in ROUTES} - set(SAMPLES))
    assert missing == [], f"add a representative document for {missing}"


@pytest.mark.parametrize(
    ("service", "method", "path", "schema", "many"),
    ROUTES,
    ids=[f"{m} {p}" for _, m, p, *_ in ROUTES],
)
def test_documented_properties_are_the_dumped_keys(
    specs: dict[str, dict[str, Any]],
    service: str,
    method: str,
    path: str,
    schema: type[Schema],
    many: bool,
) -> None:
    spec = specs[service]
    sample = SAMPLES[schema.__name__]()
    data = schema(many=many).dump([sample] if many else sample)
    # What goes on the wire: the envelope's encoding of the dump, read back.
    wire = json.loads(dumps(data))
    documented = _data_schema(spec, method, path)
    assert _compare(spec, documented, wire, f"{method} {path}") == []
    items = wire if many else [wire]
    assert all(isinstance(item, dict) and item for item in items)


def test_timestamps_keep_the_contracts_format() -> None:
    """Datetimes dump as the view functions emitted them (ISO 8601, ``Z``)."""
    from orchestrator.tasks.schemas import TaskView

    out = TaskView().dump({**_task(), "created_at": datetime(2025, 9, 26, 10, 0, tzinfo=UTC)})
    assert out["created_at"] == "2025-09-26T10:00:00Z"
    assert out["completed_at"] == "2026-01-02T03:04:05.678Z"
    naive = TaskView().dump({**_task(), "started_at": datetime(2025, 9, 26, 10, 0, 5)})
    assert naive["started_at"] == "2025-09-26T10:00:05Z"
    assert TaskView().dump({"_id": "t"})["started_at"] is None
