"""Policies, their rules and decisions, and building them from the API / MongoDB
document shape."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EFFECTS = ("Allow", "Deny")


@dataclass(frozen=True)
class Rule:
    effect: str
    resource: str
    actions: tuple[str, ...]
    condition: str | None = None

    def matches(self, action: str, resource: str) -> bool:
        return fnmatch.fnmatchcase(resource, self.resource) and any(
            fnmatch.fnmatchcase(action, pattern) for pattern in self.actions
        )

    def explain(self, policy: Policy, index: int) -> dict[str, Any]:
        return {
            "policy_id": policy.id,
            "policy_name": policy.name,
            "rule_index": index,
            "effect": self.effect,
            "resource": self.resource,
            "action": list(self.actions),
            "condition": self.condition,
        }


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    version: str
    rules: tuple[Rule, ...]
    enabled: bool = True


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    matched: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "decision": "Allow" if self.allowed else "Deny",
            "reason": self.reason,
            "matched_rules": list(self.matched),
            "errors": list(self.errors),
        }


def rule_from_document(doc: Mapping[str, Any]) -> Rule:
    effect = doc.get("effect")
    if effect not in EFFECTS:
        raise ValueError(f"rule effect must be one of {', '.join(EFFECTS)}")
    resource = doc.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ValueError("rule resource must be a non-empty string")
    raw_actions = doc.get("action", doc.get("actions"))
    if isinstance(raw_actions, str):
        raw_actions = [raw_actions]
    if (
        not isinstance(raw_actions, list | tuple)
        or not raw_actions
        or not all(isinstance(a, str) and a for a in raw_actions)
    ):
        raise ValueError("rule action must be a non-empty list of strings")
    condition = doc.get("condition")
    if condition is not None and not isinstance(condition, str):
        raise ValueError("rule condition must be a string")
    return Rule(
        effect=str(effect),
        resource=resource,
        actions=tuple(raw_actions),
        condition=condition.strip() or None if condition else None,
    )


def policy_from_document(doc: Mapping[str, Any]) -> Policy:
    """Build a :class:`Policy` from the API / MongoDB document shape
    ``{id, name, version, rules: [{effect, resource, action: [...], condition}], enabled}``."""
    rules = doc.get("rules") or []
    if not isinstance(rules, list | tuple):
        raise ValueError("policy rules must be a list")
    return Policy(
        id=str(doc.get("id") or doc.get("_id") or ""),
        name=str(doc.get("name") or ""),
        version=str(doc.get("version") or ""),
        rules=tuple(rule_from_document(r) for r in rules),
        enabled=bool(doc.get("enabled", True)),
    )
