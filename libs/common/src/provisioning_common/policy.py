"""Policy engine shared by both services (DESIGN §4, docs/interfaces.md).

A policy is a list of rules ``{effect, resource, action[], condition}``; ``resource``
and each action are glob patterns, ``condition`` is a CEL expression over ``user``,
``resource`` and ``request``. Deny overrides allow; no match denies; a condition that
fails at evaluation is reported in ``errors``, never as a match: an erroring Allow
does not allow, and an erroring Deny denies the request (fail closed; otherwise a
caller who can make a Deny condition fail, e.g. by omitting a field, escapes it).

Conditions are compiled once when the engine is built (compiling is the slow part of
cel-python), so an engine is meant to live until the policy set changes."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

log = logging.getLogger(__name__)

EFFECTS = ("Allow", "Deny")
MAX_CONDITION_LENGTH = 4096


class PolicyConditionError(Exception):
    """A condition does not compile; the message is the CEL compiler's."""


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


# One environment for compiling: it holds no per-request state.
_ENV = celpy.Environment()


def _compile(expr: str) -> celpy.Runner:
    if len(expr) > MAX_CONDITION_LENGTH:
        raise PolicyConditionError(f"condition longer than {MAX_CONDITION_LENGTH} characters")
    try:
        return _ENV.program(_ENV.compile(expr))
    except CELParseError as exc:
        raise PolicyConditionError(f"invalid condition: {str(exc).strip()}") from exc
    except Exception as exc:  # cel-python raises assorted errors for odd input
        raise PolicyConditionError(f"invalid condition: {exc}") from exc


def compile_condition(expr: str) -> None:
    """Check that ``expr`` compiles; raise :class:`PolicyConditionError` otherwise."""
    _compile(expr)


def _plain(value: Any) -> Any:
    """JSON-like data CEL can take; anything else becomes its string form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def resource_context(resource: str) -> dict[str, str]:
    """``"servers:web-01"`` → ``{"type": "servers", "id": "web-01", "name": "servers:web-01"}``."""
    rtype, sep, rid = resource.partition(":")
    return {"type": rtype, "id": rid if sep else "", "name": resource}


def user_context(user: Mapping[str, Any]) -> dict[str, Any]:
    ctx = dict(user)
    roles = ctx.get("roles") or []
    ctx["roles"] = list(roles)
    ctx.setdefault("role", roles[0] if roles else "")
    ctx.setdefault("id", "")
    ctx.setdefault("username", "")
    return ctx


@dataclass
class _CompiledRule:
    policy: Policy
    index: int
    rule: Rule
    program: celpy.Runner | None = field(default=None)


class PolicyEngine:
    """Evaluate requests against a fixed set of policies (disabled ones are ignored)."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = tuple(policies)
        self._rules: list[_CompiledRule] = []
        for policy in self.policies:
            if not policy.enabled:
                continue
            for index, rule in enumerate(policy.rules):
                program = _compile(rule.condition) if rule.condition else None
                self._rules.append(_CompiledRule(policy, index, rule, program))

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(
        self,
        *,
        user: Mapping[str, Any],
        action: str,
        resource: str,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        candidates = [c for c in self._rules if c.rule.matches(action, resource)]
        if not candidates:
            return Decision(False, f"no policy rule allows '{action}' on '{resource}'")
        activation: dict[str, Any] | None = None
        allows: list[dict[str, Any]] = []
        denies: list[dict[str, Any]] = []
        errors: list[str] = []
        deny_errored = False
        for cand in candidates:
            if cand.program is not None:
                if activation is None:
                    req = {"action": action, **dict(request or {})}
                    activation = {
                        "user": json_to_cel(_plain(user_context(user))),
                        "resource": json_to_cel(resource_context(resource)),
                        "request": json_to_cel(_plain(req)),
                    }
                outcome = _run(cand.program, activation)
                if isinstance(outcome, str):
                    label = f"{cand.policy.name or cand.policy.id}#{cand.index}"
                    errors.append(f"{label}: {outcome}")
                    deny_errored = deny_errored or cand.rule.effect == "Deny"
                    continue
                if not outcome:
                    continue
            explained = cand.rule.explain(cand.policy, cand.index)
            (denies if cand.rule.effect == "Deny" else allows).append(explained)
        if denies:
            first = denies[0]
            return Decision(
                False,
                f"denied by policy '{first['policy_name']}' rule {first['rule_index']}",
                tuple(denies),
                tuple(errors),
            )
        if deny_errored:
            # a Deny that could not be evaluated might have applied: deny, not allow
            return Decision(
                False, "denied: a Deny rule's condition failed to evaluate", (), tuple(errors)
            )
        if allows:
            first = allows[0]
            return Decision(
                True,
                f"allowed by policy '{first['policy_name']}' rule {first['rule_index']}",
                tuple(allows),
                tuple(errors),
            )
        reason = f"no policy rule allows '{action}' on '{resource}'"
        if errors:
            reason += " (condition errors)"
        return Decision(False, reason, (), tuple(errors))


def _run(program: celpy.Runner, activation: Mapping[str, Any]) -> bool | str:
    """True/False, or the error message when the condition fails or is not boolean."""
    try:
        value = program.evaluate(dict(activation))
    except CELEvalError as exc:
        return f"evaluation error: {exc.args[0] if exc.args else exc}"
    except Exception as exc:  # a broken condition must deny, never crash the caller
        return f"evaluation error: {type(exc).__name__}"
    if isinstance(value, CELEvalError):
        return f"evaluation error: {value.args[0] if value.args else value}"
    if not isinstance(value, celtypes.BoolType):
        return f"condition returned {type(value).__name__}, not a boolean"
    return bool(value)
