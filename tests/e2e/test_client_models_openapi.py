"""The SDK's model dataclasses against the OpenAPI documents the running services
serve (``GET /openapi.json``, fetched through the sync client): every field of a
model exists in the response schema of the endpoint it is parsed from, with a
compatible type (a nullable property needs an optional field), nested models
included. Properties a model does not name are allowed: they land in ``extra``.

Endpoints that answer with a smaller document (a creation returning the new id and
a few fields) are checked the other way round: what they document and the model
names must agree in type."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from typing import Any, Union

import pytest

from provisioning_client import SyncProvisioningClient, models
from tests.e2e.contract_examples import harness

pytestmark = pytest.mark.e2e

Endpoint = tuple[str, str, str]  # service, method, path

# The endpoint whose full document each model mirrors.
PRIMARY: dict[type[Any], Endpoint] = {
    models.Task: ("orchestrator", "GET", "/tasks/{id}"),
    models.TaskAttempt: ("orchestrator", "GET", "/tasks/{id}/attempts"),
    models.Batch: ("orchestrator", "GET", "/batch/operations/{id}"),
    models.BatchPlan: ("orchestrator", "POST", "/batch/plan"),
    models.WorkflowProgress: ("orchestrator", "GET", "/state/workflows/{id}/progress"),
    models.Snapshot: ("orchestrator", "GET", "/state/workflows/{id}/snapshots"),
    models.SystemMetrics: ("orchestrator", "GET", "/state/system/metrics"),
    models.SystemHealth: ("orchestrator", "GET", "/state/system/health"),
    models.StateStatistics: ("orchestrator", "GET", "/state/statistics"),
    models.Checkpoint: ("orchestrator", "GET", "/rollback/checkpoints/{id}"),
    models.RollbackResult: ("orchestrator", "POST", "/rollback/execute"),
    models.RollbackStatistics: ("orchestrator", "GET", "/rollback/statistics"),
    models.LedgerOperation: ("orchestrator", "GET", "/rollback/operations"),
    models.WebhookDelivery: ("orchestrator", "GET", "/webhooks/deliveries/{id}"),
    models.User: ("control_center", "GET", "/users/{id}"),
    models.Session: ("control_center", "POST", "/auth/login"),
    models.ServiceToken: ("control_center", "POST", "/auth/token"),
    models.Introspection: ("control_center", "POST", "/auth/introspect"),
    models.MfaEnrollment: ("control_center", "POST", "/auth/mfa/enroll"),
    models.Policy: ("control_center", "GET", "/policies/{id}"),
    models.PolicyDecision: ("control_center", "POST", "/policies/evaluate"),
    models.AuditLog: ("control_center", "GET", "/audit/logs"),
}

# Other endpoints the client parses into the same model (lists and smaller answers).
ALSO: list[tuple[type[Any], Endpoint]] = [
    (models.Task, ("orchestrator", "GET", "/tasks")),
    (models.Batch, ("orchestrator", "POST", "/batch/execute")),
    (models.Batch, ("orchestrator", "GET", "/batch/operations")),
    (models.Checkpoint, ("orchestrator", "GET", "/rollback/checkpoints")),
    (models.WebhookDelivery, ("orchestrator", "GET", "/webhooks/deliveries")),
    (models.User, ("control_center", "GET", "/users")),
    (models.User, ("control_center", "POST", "/users")),
    (models.User, ("control_center", "GET", "/auth/me")),
    (models.Session, ("control_center", "POST", "/auth/refresh")),
    (models.Policy, ("control_center", "GET", "/policies")),
    (models.Policy, ("control_center", "POST", "/policies")),
]

# Models checked as a property of another model.
NESTED = {models.BatchOperation, models.WebhookDeliveryAttempt, models.PolicyRule}

NOT_IN_OPENAPI = {
    models.Event: "/ws messages are not described by the OpenAPI document",
    models.Page: "the pagination wrapper, built from headers",
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and single-entry ``allOf``/``oneOf``/``anyOf`` wrappers, keeping
    ``nullable`` from any level."""
    nullable = bool(schema.get("nullable"))
    while True:
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        elif any(len(schema.get(key) or []) == 1 for key in ("allOf", "oneOf", "anyOf")):
            key = next(k for k in ("allOf", "oneOf", "anyOf") if len(schema.get(k) or []) == 1)
            schema = schema[key][0]
        else:
            break
        nullable = nullable or bool(schema.get("nullable"))
    return {**schema, "nullable": True} if nullable else schema


def _data_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The schema of the envelope's ``data`` (an array's item) of the 2xx answer."""
    operation = spec["paths"][path][method.lower()]
    status = min(code for code in operation["responses"] if code.startswith("2"))
    body = operation["responses"][status]["content"]["application/json"]["schema"]
    data = _resolve(spec, body["properties"]["data"])
    return _resolve(spec, data["items"]) if data.get("type") == "array" else data


def _split_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return tp, tp is Any


_TYPES: dict[str, tuple[Any, ...]] = {
    "string": (str, datetime),
    "integer": (int, float),
    "number": (float,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class Checker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.problems: list[str] = []
        self.nested_seen: set[type[Any]] = set()

    def model(self, cls: type[Any], schema: dict[str, Any], where: str, *, full: bool) -> None:
        """``full``: every field must be documented; else only documented ones are compared."""
        properties = schema.get("properties") or {}
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            if f.name not in properties:
                if full:
                    self.problems.append(f"{where}: {f.name} is not in {sorted(properties)}")
                continue
            schema_of = _resolve(self.spec, properties[f.name])
            self.field(hints[f.name], schema_of, f"{where}.{f.name}", full=full)

    def field(self, tp: Any, schema: dict[str, Any], where: str, *, full: bool) -> None:
        base, optional = _split_optional(tp)
        if schema.get("nullable") and not optional:
            self.problems.append(f"{where}: nullable in the document, {tp} in the model")
        kind = schema.get("type")
        if base is Any or kind is None:
            return
        origin = typing.get_origin(base) or base
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            if kind != "object":
                self.problems.append(f"{where}: {kind} in the document, {base.__name__} model")
            elif schema.get("properties"):
                self.nested_seen.add(base)
                # A model with an endpoint of its own is complete there; nested it may be smaller.
                self.model(base, schema, where, full=full and base not in PRIMARY)
            return
        if not (isinstance(origin, type) and issubclass(origin, _TYPES[kind])):
            self.problems.append(f"{where}: {kind} in the document, {tp} in the model")
            return
        if kind == "array" and schema.get("items"):
            (item_tp,) = typing.get_args(base) or (Any,)
            self.field(item_tp, _resolve(self.spec, schema["items"]), f"{where}[]", full=full)


@pytest.fixture(scope="module")
def specs(services: Any) -> dict[str, dict[str, Any]]:
    live = harness.from_services(services)
    with SyncProvisioningClient(live.orchestrator_url, live.control_center_url) as client:
        return {
            "orchestrator": client.system.openapi("orchestrator"),
            "control_center": client.system.openapi("control_center"),
        }


@pytest.mark.parametrize("cls", list(PRIMARY), ids=lambda c: c.__name__)
def test_model_fields_are_in_the_served_schema(
    cls: type[Any], specs: dict[str, dict[str, Any]]
) -> None:
    service, method, path = PRIMARY[cls]
    checker = Checker(specs[service])
    schema = _data_schema(specs[service], method, path)
    checker.model(cls, schema, f"{cls.__name__} ({method} {path})", full=True)
    assert checker.problems == []


@pytest.mark.parametrize(
    ("cls", "endpoint"), ALSO, ids=lambda v: v.__name__ if isinstance(v, type) else " ".join(v[1:])
)
def test_smaller_answers_agree_with_the_model(
    cls: type[Any], endpoint: Endpoint, specs: dict[str, dict[str, Any]]
) -> None:
    service, method, path = endpoint
    checker = Checker(specs[service])
    schema = _data_schema(specs[service], method, path)
    assert schema.get("properties"), f"{method} {path} documents no fields"
    checker.model(cls, schema, f"{cls.__name__} ({method} {path})", full=False)
    assert checker.problems == []


def test_every_model_is_checked(specs: dict[str, dict[str, Any]]) -> None:
    nested: set[type[Any]] = set()
    for cls, (service, method, path) in PRIMARY.items():
        checker = Checker(specs[service])
        checker.model(cls, _data_schema(specs[service], method, path), cls.__name__, full=True)
        nested |= checker.nested_seen
    assert nested >= NESTED
    every = {
        obj
        for obj in vars(models).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == models.__name__
    }
    assert every == set(PRIMARY) | NESTED | set(NOT_IN_OPENAPI)
