"""Policy documents and the default policies seeded at first start."""

from __future__ import annotations

from typing import Any

from provisioning_common.errors import UnprocessableEntity
from provisioning_common.policy import PolicyConditionError, compile_condition

OPERATED = (
    "servers",
    "taskservs",
    "clusters",
    "tasks",
    "batches",
    "state",
    "checkpoints",
    "rollback",
)


def _rule(effect: str, resource: str, actions: list[str], condition: str) -> dict[str, Any]:
    return {"effect": effect, "resource": resource, "action": actions, "condition": condition}


DEFAULT_POLICIES: tuple[dict[str, Any], ...] = (
    {
        "_id": "default-admin",
        "name": "admin_access_policy",
        "version": "1.0.0",
        "description": "Administrators may do anything",
        "rules": [_rule("Allow", "*", ["*"], "'admin' in user.roles")],
    },
    {
        "_id": "default-operator",
        "name": "operator_access_policy",
        "version": "1.0.0",
        "description": "Operators run and manage provisioning work",
        "rules": [_rule("Allow", f"{r}:*", ["*"], "'operator' in user.roles") for r in OPERATED],
    },
    {
        "_id": "default-viewer",
        "name": "viewer_access_policy",
        "version": "1.0.0",
        "description": "Viewers read provisioning state",
        "rules": [_rule("Allow", f"{r}:*", ["read"], "'viewer' in user.roles") for r in OPERATED],
    },
    {
        "_id": "default-auditor",
        "name": "auditor_access_policy",
        "version": "1.0.0",
        "description": "Auditors read everything, the audit log included",
        "rules": [_rule("Allow", "*", ["read"], "'auditor' in user.roles")],
    },
)


def normalise_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Compile every condition (a 422 carries the CEL compiler's message) and return
    the rules in their stored shape."""
    out: list[dict[str, Any]] = []
    for index, rule in enumerate(rules):
        condition = rule.get("condition")
        condition = condition.strip() if isinstance(condition, str) else None
        if condition:
            try:
                compile_condition(condition)
            except PolicyConditionError as exc:
                raise UnprocessableEntity(
                    f"Rule {index}: {exc}",
                    details={"rules": {str(index): {"condition": [str(exc)]}}},
                ) from exc
        out.append(
            {
                "effect": rule["effect"],
                "resource": rule["resource"],
                "action": list(rule["action"]),
                "condition": condition or None,
            }
        )
    return out
